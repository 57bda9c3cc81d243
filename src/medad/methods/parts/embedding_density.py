"""Image embeddings from a torchvision ResNet, scored by a Gaussian density (shared pipeline).

Used by the two-stage self-supervised methods (``cutpaste-2stage``, ``anatpaste``: the ResNet is
trained first on a synthetic-anomaly task) and by the frozen ImageNet reference
(``resnet18-imagenet``: no training). Both end the same way (Li et al. 2021, Sec. 3.3): the
embeddings of the normal training images are fitted by a `GaussianDensity` in `fit`, and a test
image's score is the Mahalanobis distance of its embedding; there is no anomaly map.

The embedding is the ResNet's global-average-pooled last feature map (512 values for ResNet18),
the input of its classification layer, which is removed. Images stay 1-channel in the cache and
the method; `BackboneInput` replicates grayscale to 3 channels at the backbone's door (STYLE.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from medad.data.loading import Preprocess
from medad.methods.base import Method, MethodConfig, ScoreOutput
from medad.methods.parts.backbone import BackboneFeatures
from medad.methods.parts.density import GaussianDensity

#: value range of the images these methods get (PAPER.md, two-stage SSL: ToTensor, [0, 1])
UNIT_RANGE = (0.0, 1.0)


class BackboneInput(nn.Module):
    """At a 3-channel backbone's door: replicate grayscale, then (x − mean) / std per channel."""

    def __init__(self, mean: tuple[float, float, float], std: tuple[float, float, float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std


class ResNetEmbedding(BackboneFeatures):
    """`door` then a torchvision ResNet up to its global average pool: [B, C, H, W] → [B, dim].

    The trainable embedding of the two-stage methods (`BackboneFeatures` on the ``flatten`` node,
    the input of the classification layer, which is dropped); the frozen reference uses a
    `FrozenBackbone` on the same node.
    """

    def __init__(self, door: nn.Module, arch: str = "resnet18", weights: str = "random") -> None:
        super().__init__(arch, "flatten", weights, door)
        #: embedding size: the input width of the classification layer that is dropped
        self.dim: int = self.channels


class EmbeddingDensityMethod(Method):
    """Base of methods scored by a Gaussian density of `self.embedding` outputs.

    Subclasses build ``self.embedding`` (a `ResNetEmbedding`, or a `FrozenBackbone` on the same
    node) and ``self.density`` (a `GaussianDensity` of the same dimension) in ``__init__``;
    training, if any, is theirs.
    """

    embedding: nn.Module
    density: GaussianDensity

    @classmethod
    def preprocess(cls, config: MethodConfig, channels: int) -> Preprocess:
        """Square `image_size` images in [0, 1], dataset channels (PAPER.md, two-stage SSL: 224)."""
        return Preprocess(size=config.image_size, channels=channels, value_range=UNIT_RANGE)

    def fit(self, batches: Callable[[], Iterator[torch.Tensor]]) -> None:
        """Fit the density to the embeddings of all training images (eval mode, no gradients)."""
        self.density.fit(torch.cat([self.embedding(x).cpu() for x in batches()]))

    def score(self, x: torch.Tensor) -> ScoreOutput:
        return ScoreOutput(self.density(self.embedding(x)))
