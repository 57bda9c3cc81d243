"""AE: the plain convolutional autoencoder of MedIAnomaly (PAPER.md, method table, row "AE").

Trained with the mean squared error; the anomaly map is the per-pixel squared error (summed over
channels) and the image score is the mean of the map.
"""

from __future__ import annotations

from pydantic import Field

from medad.methods.base import MethodConfig, register
from medad.methods.parts.recon import ReconstructionAE
from medad.methods.parts.scoring import MapScoreConfig


class AEConfig(MethodConfig, MapScoreConfig):
    latent_size: int = Field(16, ge=1)
    """Size of the FC bottleneck (PAPER.md: 16; the latent-size study varies it 1…128)."""
    base_width: int = Field(16, ge=1)
    """Channels of the first encoder block; the others are 2×, 4×, 4× (PAPER.md)."""
    mid_size: int = Field(1024, ge=1)
    """Width of the hidden FC layer of the bottleneck (PAPER.md: 1024)."""


@register("ae")
class AE(ReconstructionAE):
    """`ReconstructionAE` with all its defaults: the squared error is the AE's loss and map."""

    description = "Convolutional autoencoder, MSE loss, score = mean squared reconstruction error"
    Config = AEConfig
