"""AE-U: the paper's AE that also predicts its own per-pixel uncertainty (PAPER.md, row "AE-U").

Mao et al. 2020, "Abnormality detection in chest X-ray images using uncertainty prediction
autoencoders" (MICCAI). The decoder outputs 2C channels: the reconstruction x̂ (first C) and a
log-variance map log σ² (last C, one per image channel, as in the MedIAnomaly code). Training
minimises the heteroscedastic Gaussian negative log-likelihood (up to constants and a factor 2)
mean(e^{−log σ²} (x − x̂)² + log σ²), so pixels that are hard to reconstruct even when normal get
a large σ² and are down-weighted. Map = e^{−log σ²} (x − x̂)² summed over channels; image score =
mean of the map.
"""

from __future__ import annotations

import torch
from torch import nn

from medad.methods.ae import AEConfig
from medad.methods.base import register
from medad.methods.parts.autoencoder import AutoEncoder
from medad.methods.parts.recon import ReconstructionAE


class AEUConfig(AEConfig):
    """The AE's hyper-parameters; the log-variance head adds none."""


@register("ae-u")
class AEU(ReconstructionAE):
    description = "Autoencoder predicting x̂ and log σ²; score = mean of e^(−log σ²)·(x − x̂)²"
    Config = AEUConfig

    def build_network(self, config: AEUConfig, channels: int) -> nn.Module:
        return AutoEncoder.from_config(config, channels, out_channels=2 * channels)

    def reconstruct_with_log_var(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x̂, log σ²), each [B, C, H, W]."""
        x_hat, log_var = self.net(x).chunk(2, dim=1)
        return x_hat, log_var

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruct_with_log_var(x)[0]

    def training_loss(self, x: torch.Tensor, stage: str, phase: str) -> dict[str, torch.Tensor]:
        x_hat, log_var = self.reconstruct_with_log_var(x)
        sq = (x - x_hat) ** 2
        loss = torch.mean(torch.exp(-log_var) * sq + log_var)
        return {"loss": loss, "recon": sq.mean().detach(), "log_var": log_var.mean().detach()}

    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        x_hat, log_var = self.reconstruct_with_log_var(x)
        return (torch.exp(-log_var) * (x - x_hat) ** 2).sum(dim=1)
