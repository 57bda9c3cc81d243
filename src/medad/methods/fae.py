"""FAE: the structural feature autoencoder (PAPER.md, method table, row "FAE").

Meissen, Paetzold, Kaissis, Rueckert, "Unsupervised Anomaly Localization with Structural
Feature-Autoencoders", BrainLes 2022 (arXiv 2208.10992); official code FeliMe/feature-autoencoder
(``fae/models/models.py``: ``FeatureReconstructor``, ``vanilla_feature_encoder/decoder``;
``fae/models/feature_extractor.py``: ``Extractor``).

A frozen ImageNet ResNet18 gives the features of its layers 1-3; each is resized bilinearly (corners
aligned) to a quarter of the input size and the three are concatenated (448 channels). A small
convolutional autoencoder rebuilds them: 4 encoder layers (5×5 conv, stride 2, no bias, BN,
LeakyReLU, channel dropout) of `hidden` channels, 4 mirrored decoder layers (6×6 transposed conv,
stride 2, padding 2) and a 1×1 conv back to the feature channels. Loss and map are 1 − SSIM
between features and rebuilt features, computed per channel and averaged over channels (the paper
argues SSIM compares the local structure of the features, not their exact values); the map is
upsampled to the input size. The image score is the mean of the map's values above its 90th
percentile inside the object (pixels with x > 0, the code's ``predict_anomaly``).

Optimisation: Adam lr 2e-4, batch 32, 10 000 steps (here 100 epochs of 100 steps, so the same
number of updates on every dataset), 128 px (paper, Sec. 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from medad.data.loading import Preprocess
from medad.methods.base import Method, MethodConfig, ScoreOutput, register
from medad.methods.optimisation import OptimiserConfig
from medad.methods.parts.backbone import FrozenBackbone
from medad.methods.parts.ssim import ssim_map

#: FAE's images are in [0, 1] (the code's ``x > 0`` is the object; background is 0)
UNIT_RANGE = (0.0, 1.0)
FEATURE_LAYERS = ["layer1", "layer2", "layer3"]


class FAEConfig(MethodConfig, OptimiserConfig):
    epochs: int = Field(100, ge=0)
    """Epochs of `steps_per_epoch` steps: 100 × 100 = the paper's 10 000 steps."""
    steps_per_epoch: int | None = Field(100, ge=1)
    """Optimiser steps per epoch (None: one pass over the data)."""
    batch_size: int = Field(32, ge=2)
    """Mini-batch size (Meissen et al. 2022, Sec. 3: 32)."""
    lr: float = Field(2e-4, gt=0)
    """Adam learning rate (Meissen et al.; code ``base_config.py``: 2e-4)."""
    image_size: int = Field(128, ge=64, multiple_of=64)
    """Side of the square input (paper and code: 128); features are a quarter of it."""
    hidden: tuple[int, int, int, int] = (100, 150, 200, 300)
    """Channels of the 4 encoder layers (Meissen et al. 2022, Sec. 3: 100, 150, 200, 300)."""
    dropout: float = Field(0.1, ge=0, lt=1)
    """Channel dropout after every AE layer (code ``base_config.py``: 0.1)."""
    ssim_window: int = Field(5, ge=3)
    """SSIM window of loss and map (Meissen et al. 2022: 5; Gaussian σ 1.5)."""
    backbone: str = "resnet18"
    """Feature extractor (the paper: ImageNet ResNet18, layers 1-3)."""
    weights: str = "imagenet"
    """Backbone weights: ``imagenet`` (torch hub cache, the paper), a file, or ``random``."""
    top_fraction: float = Field(0.1, gt=0, le=1)
    """Image score: mean of the top fraction of the object's map values (code: above the 0.9
    quantile)."""


class FeatureAE(nn.Module):
    """FAE's convolutional autoencoder over feature maps [B, C, h, w] → [B, C, h, w]."""

    def __init__(self, channels: int, hidden: tuple[int, ...], dropout: float) -> None:
        super().__init__()

        def block(conv: nn.Module, width: int) -> list[nn.Module]:
            return [conv, nn.BatchNorm2d(width), nn.LeakyReLU(), nn.Dropout2d(dropout)]

        enc: list[nn.Module] = []
        cin = channels
        for width in hidden:
            enc += block(nn.Conv2d(cin, width, 5, 2, 2, bias=False), width)
            cin = width
        dec: list[nn.Module] = []
        for width in [*hidden[-2::-1], channels]:
            dec += block(nn.ConvTranspose2d(cin, width, 6, 2, 2, bias=False), width)
            cin = width
        dec.append(nn.Conv2d(channels, channels, 1, bias=False))
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(f))


def object_top_mean(maps: torch.Tensor, x: torch.Tensor, fraction: float) -> torch.Tensor:
    """Per image: mean of the map values above the (1 − fraction) quantile inside the object
    (x > 0 in any channel; the whole image where it has no such pixel)."""
    scores = []
    inside = (x > 0).any(dim=1)
    for m, keep in zip(maps, inside, strict=True):
        roi = m[keep] if keep.any() else m.flatten()
        top = roi[roi > torch.quantile(roi, 1 - fraction)]
        scores.append(top.mean() if top.numel() else roi.max())
    return torch.stack(scores)


@register("fae")
class FAE(Method):
    family = "feature-reconstruction"
    description = (
        "Feature autoencoder: a conv AE rebuilds frozen ResNet18 layer 1-3 features; "
        "loss and map = 1 − SSIM over feature channels"
    )
    Config = FAEConfig
    config: FAEConfig
    budget = "own"

    def __init__(self, config: FAEConfig, channels: int) -> None:
        super().__init__(config, channels)
        self.extractor = FrozenBackbone(config.backbone, FEATURE_LAYERS, config.weights, UNIT_RANGE)
        self.ae = FeatureAE(sum(self.extractor.channels), config.hidden, config.dropout)

    @classmethod
    def preprocess(cls, config: MethodConfig, channels: int) -> Preprocess:
        """Square `image_size` images in [0, 1] (the code's ``x > 0`` is the object)."""
        return Preprocess(size=config.image_size, channels=channels, value_range=UNIT_RANGE)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Layer 1-3 features resized to a quarter of the input and concatenated."""
        size = (x.shape[-2] // 4, x.shape[-1] // 4)
        with torch.no_grad():
            feats = self.extractor(x)
        return torch.cat(
            [F.interpolate(f, size=size, mode="bilinear", align_corners=True) for f in feats], 1
        )

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """1 − SSIM between features and rebuilt features, averaged over channels: [B, h, w]."""
        f = self.features(x)
        return 1 - ssim_map(self.ae(f), f, window_size=self.config.ssim_window)

    def training_loss(self, x: torch.Tensor, stage: str, phase: str) -> torch.Tensor:
        return self.distance(x).mean()

    def score(self, x: torch.Tensor) -> ScoreOutput:
        d = self.distance(x)[:, None]
        maps = F.interpolate(d, size=x.shape[-2:], mode="bilinear", align_corners=True)[:, 0]
        return ScoreOutput(object_top_mean(maps, x, self.config.top_fraction), maps)
