"""AE: the plain convolutional autoencoder of MedIAnomaly (PAPER.md, method table, row "AE").

Trained with the mean squared error; the anomaly map is the per-pixel squared error (summed over
channels) and the image score is the mean of the map.
"""

from __future__ import annotations

import torch

from medad.methods.base import Method, MethodConfig, ScoreOutput, register
from medad.methods.parts.autoencoder import AutoEncoder


class AEConfig(MethodConfig):
    latent_size: int = 16
    """Size of the FC bottleneck (PAPER.md: 16; the latent-size study varies it 1…128)."""
    base_width: int = 16
    """Channels of the first encoder block; the others are 2×, 4×, 4× (PAPER.md)."""
    mid_size: int = 1024
    """Width of the hidden FC layer of the bottleneck (PAPER.md: 1024)."""


@register("ae")
class AE(Method):
    family = "reconstruction"
    description = "Convolutional autoencoder, MSE loss, score = mean squared reconstruction error"
    Config = AEConfig

    def __init__(self, config: AEConfig, channels: int) -> None:
        super().__init__(config, channels)
        self.net = AutoEncoder(
            channels, config.image_size, config.latent_size, config.base_width, config.mid_size
        )

    def training_loss(self, x: torch.Tensor, stage: str, phase: str) -> torch.Tensor:
        return torch.mean((self.net(x) - x) ** 2)

    def score(self, x: torch.Tensor) -> ScoreOutput:
        maps = ((self.net(x) - x) ** 2).sum(dim=1)
        return ScoreOutput(maps.flatten(1).mean(dim=1), maps)
