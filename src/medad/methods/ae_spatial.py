"""AE-Spatial: the paper's AE with a spatial bottleneck (PAPER.md, row "AE-Spatial").

Baur et al. 2021, "Autoencoders for unsupervised anomaly segmentation in brain MR images: a
comparative study" (Medical Image Analysis 69), compare dense (fully connected) bottlenecks with
spatial ones that keep a small feature map. Here the FC bottleneck of the paper's AE is replaced by
1 × 1 convolutions on the encoder's S/16 × S/16 map: 1 × 1 conv → hidden channels → BN → ReLU →
1 × 1 conv → `latent_channels`, and the mirror back to the encoder's width (the layout of the
MedIAnomaly code, with its hidden width). Trained and scored with the squared error like the AE.

Latent size: as in the MedIAnomaly code (whose figures PAPER.md reports), the latent map has 16
channels, a 4 × 4 × 16 = 256-number latent at 64 px. `--set latent_channels=1` gives a
4 × 4 × 1 = 16-number latent, the capacity of the AE's FC latent, for a dense-vs-spatial comparison
at equal size.
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from medad.methods.base import register
from medad.methods.parts.autoencoder import AutoEncoder
from medad.methods.parts.recon import ReconstructionAE, ReconstructionConfig


class AESpatialConfig(ReconstructionConfig):
    latent_channels: int = Field(16, ge=1)
    """Channels of the S/16 × S/16 latent map (MedIAnomaly code: 16; 1 matches the AE's size)."""
    base_width: int = Field(16, ge=1)
    """Channels of the first encoder block; the others are 2×, 4×, 4× (PAPER.md)."""
    mid_size: int = Field(1024, ge=1)
    """Hidden channels of the 1 × 1 convolutions (MedIAnomaly code: the FC hidden width, 1024)."""


def conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, bias=False)


class SpatialBottleneck(nn.Module):
    """1 × 1 conv → BN → ReLU → 1 × 1 conv to the latent map; the mirror on the way back."""

    def __init__(self, channels: int, latent_channels: int, mid: int) -> None:
        super().__init__()
        self.encode = nn.Sequential(
            conv1x1(channels, mid),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            conv1x1(mid, latent_channels),
        )
        self.decode = nn.Sequential(
            conv1x1(latent_channels, mid),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            conv1x1(mid, channels),
        )


@register("ae-spatial")
class AESpatial(ReconstructionAE):
    description = (
        "Autoencoder with a spatial 1×1-conv bottleneck, MSE loss, score = mean squared error"
    )
    Config = AESpatialConfig

    def build_network(self, config: AESpatialConfig, channels: int) -> nn.Module:  # type: ignore[override]
        return AutoEncoder(
            channels,
            config.image_size,
            base_width=config.base_width,
            bottleneck=lambda c, _side: SpatialBottleneck(
                c, config.latent_channels, config.mid_size
            ),
        )
