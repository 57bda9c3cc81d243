"""GAN parts shared by GANomaly and f-AnoGAN: a discriminator, an image encoder, the losses.

Both networks are built from the paper's backbone blocks (PAPER.md, "Shared reconstruction
backbone": conv k4 s2 p1 → norm → ReLU with widths w, 2w, 4w, 4w), so a GAN here has the same
capacity as the plain AE it is compared with.

- `Discriminator`: the four encoder blocks, flattened, optionally a hidden FC → ReLU (`hidden`),
  then one linear logit. As in GANomaly (Akçay et al. 2018, Sec. 3) and f-AnoGAN (Schlegl et al.
  2019, Sec. 2.2) the *features* used for feature matching are the input of the last layer: the
  flattened blocks, or the hidden FC layer's output where there is one (MedIAnomaly's GANomaly
  discriminator: FC(1024) → ReLU, ``reconstruction/networks/ganomaly.py``). The norm is a choice:
  BatchNorm for GANomaly's BCE discriminator; per-sample layer norm (or none) for a WGAN-GP critic,
  whose gradient penalty is defined per sample and is wrong under BatchNorm (Gulrajani et al. 2017,
  Sec. 4).
- `LatentEncoder`: the encoding half of the paper's AE (encoder blocks → FC(1024) → [BN] → ReLU →
  FC(latent)), for networks that need an encoder without a decoder (GANomaly's second encoder).
- Losses: the non-saturating BCE discriminator loss, feature matching, the Wasserstein critic and
  generator losses and the gradient penalty.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from medad.methods.parts.autoencoder import ConvEncoder, down_block, fc_layers, widths

Norm = Literal["batch", "layer", "none"]


def critic_block(cin: int, cout: int, norm: Norm) -> nn.Sequential:
    """conv k4 s2 p1 → norm → ReLU; ``"batch"`` is the paper's `down_block` itself.

    ``"layer"`` normalises each sample over (C, H, W) with a per-channel affine, the layer norm of
    the WGAN-GP critic (Gulrajani et al. 2017; f-AnoGAN's code); ``"none"`` keeps a conv bias.
    """
    if norm == "batch":
        return down_block(cin, cout)
    if norm == "layer":
        return nn.Sequential(
            nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.GroupNorm(1, cout), nn.ReLU(inplace=True)
        )
    if norm == "none":
        return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1), nn.ReLU(inplace=True))
    raise ValueError(f"unknown norm {norm!r}; use 'batch', 'layer' or 'none'")


class Discriminator(nn.Module):
    """Four critic blocks → flatten → [FC(hidden) → ReLU] (the features) → linear logit [B]."""

    def __init__(
        self,
        in_channels: int,
        image_size: int = 64,
        base_width: int = 16,
        norm: Norm = "batch",
        hidden: int | None = None,
    ) -> None:
        super().__init__()
        w = widths(base_width)
        chans = [in_channels, *w]
        self.blocks = nn.Sequential(*(critic_block(chans[i], chans[i + 1], norm) for i in range(4)))
        flat = w[-1] * (image_size // 16) ** 2
        self.hidden = (
            nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(inplace=True)) if hidden else None
        )
        self.head = nn.Linear(hidden or flat, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the last layer [B, F]: what feature matching compares."""
        h = self.blocks(x).flatten(1)
        return self.hidden(h) if self.hidden is not None else h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B] (no sigmoid: the BCE loss takes logits, a WGAN critic is unbounded)."""
        return self.head(self.features(x)).squeeze(1)

    def reset(self) -> None:
        """Draw fresh weights (and running statistics) in place; GANomaly restarts a collapsed D."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()


class LatentEncoder(nn.Module):
    """Image → latent with the encoding half of the paper's AE: [B, C, S, S] → [B, latent]."""

    def __init__(
        self,
        in_channels: int,
        image_size: int = 64,
        latent_size: int = 16,
        base_width: int = 16,
        mid: int = 1024,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.conv = ConvEncoder(in_channels, base_width)
        flat = self.conv.out_channels * (image_size // 16) ** 2
        self.fc = nn.Sequential(nn.Flatten(), *fc_layers(flat, mid, latent_size, batch_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x))


def discriminator_bce(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Real → 1, fake → 0, averaged over the two halves (GANomaly's discriminator loss)."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return 0.5 * (real + fake)


def feature_matching(real_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of discriminator features (GANomaly's adversarial loss)."""
    return torch.mean((real_features - fake_features) ** 2)


def wasserstein_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """The critic minimises E[D(fake)] − E[D(real)] (Arjovsky et al. 2017)."""
    return fake_scores.mean() - real_scores.mean()


def wasserstein_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """The generator minimises −E[D(fake)]."""
    return -fake_scores.mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    alpha: torch.Tensor | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty E[(‖∇D(x̃)‖₂ − 1)²] at x̃ = α·real + (1 − α)·fake (Gulrajani et al. 2017).

    α is drawn uniformly per sample unless given (shape [B, 1, …, 1]). The graph is kept
    (``create_graph``), so the penalty trains the critic.
    """
    if alpha is None:
        shape = (real.shape[0],) + (1,) * (real.dim() - 1)
        alpha = torch.rand(shape, device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
