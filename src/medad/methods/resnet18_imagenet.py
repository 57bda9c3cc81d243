"""ResNet18-ImageNet: frozen ImageNet features + Gaussian density (PAPER.md, method table).

The reference of the self-supervised family: the same embedding and second stage as the two-stage
methods (`medad.methods.ssl_twostage`), with no first stage. A torchvision ResNet18 with ImageNet
weights embeds each image (global-average-pooled last feature map, 512 values); `fit` fits a
Ledoit–Wolf Gaussian to the L2-normalised embeddings of the training images; the score is the
Mahalanobis distance; no map. The ResNet is never trained: its parameters do not require
gradients, it runs in eval mode (BatchNorm statistics stay ImageNet's) and it is not saved in
the checkpoint (`medad.methods.parts.backbone.FrozenBackbone`).

Input: 224 × 224 in [0, 1] (PAPER.md, two-stage SSL), grayscale replicated to 3 channels and
normalised with ImageNet's channel statistics, the ones the weights were trained with (MedIAnomaly
does not say how it normalised this reference; the two-stage methods use mean = std = 0.5).

Weights come from the torch hub cache or a file (`medad.methods.parts.pretrained`); without them,
construction stops with the file name and where to put it. ``weights="random"`` gives the same
pipeline on random features (tests, ablation).
"""

from __future__ import annotations

from pydantic import Field

from medad.methods.base import FittedConfig, Stage, register
from medad.methods.parts.backbone import FrozenBackbone
from medad.methods.parts.density import GaussianDensity
from medad.methods.parts.embedding_density import UNIT_RANGE, EmbeddingDensityMethod


class ResNet18ImageNetConfig(FittedConfig):
    image_size: int = Field(224, ge=32, multiple_of=16)
    """Side of the square input (PAPER.md, two-stage SSL: 224)."""
    weights: str = "imagenet"
    """ResNet18 weights: ``imagenet`` (torch hub cache), a weights file, or ``random``."""


@register("resnet18-imagenet")
class ResNet18ImageNet(EmbeddingDensityMethod):
    backbones = ("resnet18",)
    family = "feature-reference"
    description = "Frozen ImageNet ResNet18 embedding, score = Mahalanobis distance to the normals"
    Config = ResNet18ImageNetConfig
    config: ResNet18ImageNetConfig

    def __init__(self, config: ResNet18ImageNetConfig, channels: int) -> None:
        super().__init__(config, channels)
        self.embedding = FrozenBackbone("resnet18", "flatten", config.weights, UNIT_RANGE)
        self.density = GaussianDensity(self.embedding.channels)

    def stages(self) -> list[Stage]:
        return []
