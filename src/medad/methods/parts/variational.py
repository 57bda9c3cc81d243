"""The variational version of the MedIAnomaly backbone (PAPER.md, method table, row "VAE").

The FC bottleneck of `medad.methods.parts.autoencoder` with its last encoder layer made twice as
wide: its two halves are the heads μ and log σ² of a diagonal Gaussian posterior q(z | x) (one
linear layer of width 2·latent is the same function as two heads of width latent). The decoder
half is unchanged. In training z is drawn with the reparameterisation trick; for scoring it is μ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from medad.methods.parts.autoencoder import AutoEncoder, FCBottleneck


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) per image [B], averaged (not summed) over the latent dimensions.

    The mean follows MedIAnomaly's code (`VAELoss`: mean over dim 1), for which its KL weight of
    0.005 was chosen; a sum would make the same weight 16× stronger at latent size 16.
    """
    return 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).mean(dim=1)


class VariationalBottleneck(FCBottleneck):
    """flatten → FC(mid) → BN → ReLU → FC(2·latent) = [μ | log σ²]; decode as `FCBottleneck`."""

    def __init__(self, channels: int, side: int, latent_size: int = 16, mid: int = 1024) -> None:
        super().__init__(channels, side, latent_size, mid)
        self.encode[-1] = nn.Linear(mid, 2 * latent_size)

    def posterior(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feature map [B, C, s, s] → (μ, log σ²), each [B, latent]."""
        mu, log_var = self.encode(h).chunk(2, dim=1)
        return mu, log_var


@dataclass
class VariationalOutput:
    """A forward pass: the reconstruction and the posterior it was decoded from."""

    x_hat: torch.Tensor
    mu: torch.Tensor
    log_var: torch.Tensor


class VariationalAutoEncoder(AutoEncoder):
    """`ConvEncoder` → `VariationalBottleneck` → `ConvDecoder`."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 64,
        latent_size: int = 16,
        base_width: int = 16,
        mid: int = 1024,
    ) -> None:
        super().__init__(in_channels, image_size, latent_size, base_width, mid)
        self.bottleneck = VariationalBottleneck(
            self.encoder.out_channels, image_size // 16, latent_size, mid
        )

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.bottleneck.posterior(self.encoder(x))

    def forward(self, x: torch.Tensor, sample: bool = False) -> VariationalOutput:  # type: ignore[override]
        """Reconstruct `x` from a posterior sample (`sample=True`, training) or from μ."""
        mu, log_var = self.posterior(x)
        z = mu + torch.randn_like(mu) * (0.5 * log_var).exp() if sample else mu
        return VariationalOutput(self.decode(z), mu, log_var)
