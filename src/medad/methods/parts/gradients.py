"""Input gradients of per-image losses, for gradient-based anomaly maps (AE-Grad, VAE-Grad).

The engine scores under `torch.no_grad()`; these helpers switch gradients back on locally and return
detached tensors, so a score rule stays a plain function of its batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def input_gradient(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """∂ fn(x) / ∂x for a per-image loss `fn` ([B, ...] → [B]), detached, shaped like `x`.

    The per-image losses are summed before differentiating, so each image gets the gradient of its
    own loss, independent of the batch it is scored in, as long as the network treats images
    independently (BatchNorm in eval mode). Parameter gradients are neither computed into `.grad`
    nor disturbed.
    """
    with torch.enable_grad():
        inp = x.detach().requires_grad_(True)
        losses = fn(inp)
        if losses.shape != (x.shape[0],):
            raise ValueError(
                f"input_gradient: fn must return one loss per image, shape {(x.shape[0],)}, "
                f"got {tuple(losses.shape)}"
            )
        (grad,) = torch.autograd.grad(losses.sum(), inp)
    return grad.detach()


def gradient_map(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """|∂ fn(x) / ∂x| summed over channels: [B, C, H, W] → [B, H, W]."""
    return input_gradient(fn, x).abs().sum(dim=1)
