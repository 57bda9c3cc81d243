"""AE-PL: the paper's AE trained with a perceptual loss (PAPER.md, method table, row "AE-PL").

Shvetsova et al. 2021, "Anomaly detection in medical imaging with deep perceptual autoencoders",
as run by MedIAnomaly (``ae-perceptual``): the shared AE backbone
(`medad.methods.parts.autoencoder`) is trained to minimise the relative perceptual L1 distance
between x and x̂ on frozen VGG19 relu4_2 features (`medad.methods.parts.perceptual`). The anomaly
map is that distance per feature position (relu4_2 has stride 8: an 8×8 map at 64 px), upsampled
bilinearly to the input size; the image score is the mean of the map, as in MedIAnomaly's
evaluation.

Where medad differs: the per-channel feature normalisation (``feature_stats``). MedIAnomaly and
Shvetsova et al. subtract a mean and divide by the ``var`` entry of ImageNet statistics of VGG19
relu4_2 features, from a file neither medad nor torchvision ships.

- ``feature_stats=train`` (default): μ and σ of every channel over the whole training split,
  estimated in one pass before training (`prepare`); the normal data's own scale, not ImageNet's;
- ``feature_stats=FILE``: the original ``.pt`` (its ``r42`` entry, used exactly as the study does)
  or a ``.pt``/``.npz`` with ``mean`` and ``std``: with ``weights=imagenet`` this is the study's
  row exactly;
- ``feature_stats=none``: no normalisation.

VGG19 stays frozen and outside the optimiser and the checkpoint; ``weights`` picks ImageNet (the
paper), random (tests) or a file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from pydantic import field_validator

from medad.methods.ae import AEConfig
from medad.methods.base import Method, ScoreOutput, register
from medad.methods.parts.autoencoder import AutoEncoder
from medad.methods.parts.perceptual import VGG19_LAYERS, RelativePerceptualL1
from medad.methods.parts.scoring import map_scores


class AEPLConfig(AEConfig):
    weights: str = "imagenet"
    """VGG19 weights: imagenet (torch hub cache, the paper), random, or a .pth file."""
    layer: str = "relu4_2"
    """VGG19 layer of the perceptual loss (Shvetsova et al. and MedIAnomaly: relu4_2)."""
    feature_stats: str = "train"
    """Per-channel feature normalisation: train (statistics of the whole training split), none,
    or a file: Shvetsova et al.'s vgg19_ILSVRC2012_object_detection_mean_var.pt (the study's
    ImageNet statistics) or a .pt/.npz with mean and std."""

    @field_validator("layer")
    @classmethod
    def _known_layer(cls, v: str) -> str:
        if v not in VGG19_LAYERS:
            raise ValueError(f"unknown VGG19 layer {v!r}; use one of {', '.join(VGG19_LAYERS)}")
        return v


@register("ae-pl")
class AEPL(Method):
    backbones = ("vgg19",)
    family = "reconstruction"
    description = "Autoencoder trained with a relative perceptual L1 loss on VGG19 features"
    Config = AEPLConfig

    def __init__(self, config: AEPLConfig, channels: int) -> None:
        super().__init__(config, channels)
        self.net = AutoEncoder.from_config(config, channels)
        value_range = type(self).preprocess(config, channels).value_range
        self.perceptual = RelativePerceptualL1(
            config.layer, config.weights, config.feature_stats, value_range
        )

    def prepare(self, batches: Callable[[], Iterator[torch.Tensor]]) -> None:
        """``feature_stats=train``: μ, σ over the whole training split, before the first update."""
        self.perceptual.estimate(batches())

    def training_loss(self, x: torch.Tensor, stage: str, phase: str) -> torch.Tensor:
        return self.perceptual(x, self.net(x)).mean()

    def score(self, x: torch.Tensor) -> ScoreOutput:
        d = self.perceptual(x, self.net(x))
        maps = F.interpolate(d[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
        return map_scores(maps[:, 0], self.config)
