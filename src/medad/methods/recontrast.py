"""ReContrast: reconstructive contrastive learning on a trained encoder (PAPER.md, method table).

Guo, Lu, Jia, Chen, Fan, Xu, Zhu, Hou, Ren, "ReContrast: Domain-Specific Anomaly Detection via
Contrastive Reconstruction", NeurIPS 2023; official code guojiajeremy/ReContrast
(``models/recontrast.py``, ``models/de_resnet.py`` with ``output_conv=2``, ``utils.py``:
``global_cosine_hm``; training scripts ``recontrast_isic.py``, ``recontrast_aptos.py``).

RD's architecture (`medad.methods.parts.reverse_resnet`) with two changes. The ImageNet encoder is
itself trained, at a small learning rate and with its BatchNorm in training mode, beside a frozen
copy of it in eval mode. Both encoders' layer 1-3 features go through one shared bottleneck and
decoder body with two sets of 1×1 output heads; head 1 rebuilds the *frozen* features from the
trainable encoder's input half, head 2 the *trainable* features from the frozen half (the two
"contrastive" pairs, targets detached).

* Loss (``global_cosine_hm``): per pair and scale, 1 − cos between each sample's flattened target
  and rebuilt features (a global cosine), summed over scales, the two pairs averaged. Hard-point
  mining: the gradient into a rebuilt feature is zeroed at the positions whose own 1 − cos
  (over channels) is below mean + α·std of the batch, α rising linearly from −3 to 1 over the
  first 10 % of the iterations.
* Optimisation: AdamW, lr 2e-3 for bottleneck and decoder, 1e-5 for the encoder, weight decay
  1e-5, batch 32, 2000 iterations (here 20 epochs of 100 steps), 256 px.
* Map: Σ over both pairs and three scales of the upsampled 1 − cos (over channels), Gaussian
  σ = 4; image score: the map's mean (the medical scripts' ``reduction='mean'``; MVTec: max).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from pydantic import Field

from medad.data.loading import Preprocess
from medad.methods.base import Method, MethodConfig, ScoreOutput, Stage, config_phase, register
from medad.methods.optimisation import OptimiserConfig, OptimiserName, ParamGroup
from medad.methods.parts.backbone import BackboneFeatures, FrozenBackbone
from medad.methods.parts.feature_maps import gaussian_smooth, multiscale_map
from medad.methods.parts.pretrained import ImageNetInput
from medad.methods.parts.reverse_resnet import OneClassBottleneck, ReverseResNet, layout_of
from medad.methods.parts.scoring import ImageScore, reduce_map
from medad.methods.rd import TEACHER_LAYERS, UNIT_RANGE, TeacherArch


class ReContrastConfig(MethodConfig, OptimiserConfig):
    epochs: int = Field(20, ge=0)
    """Epochs of `steps_per_epoch` steps: 20 × 100 = the ISIC script's 2000 iterations."""
    steps_per_epoch: int | None = Field(100, ge=1)
    """Optimiser steps per epoch (None: one pass over the data)."""
    batch_size: int = Field(32, ge=2)
    """Mini-batch size (``recontrast_isic.py``: 32)."""
    optimizer: OptimiserName = "adamw"
    """AdamW (``recontrast_isic.py``)."""
    lr: float = Field(2e-3, gt=0)
    """Learning rate of bottleneck and decoder (``recontrast_isic.py``: 2e-3)."""
    encoder_lr: float = Field(1e-5, gt=0)
    """Learning rate of the trained encoder (``recontrast_isic.py``: 1e-5)."""
    weight_decay: float = Field(1e-5, ge=0)
    """AdamW weight decay of every parameter (``recontrast_isic.py``: 1e-5)."""
    image_size: int = Field(256, ge=32, multiple_of=32)
    """Side of the square input (``recontrast_isic.py``: resize 256)."""
    backbone: TeacherArch = "wide_resnet50_2"
    """Encoder (Guo et al. 2023: WideResNet50)."""
    weights: str = "imagenet"
    """Encoder weights: ``imagenet`` (torch hub cache, the paper), a weights file, or ``random``."""
    alpha_start: float = -3.0
    """Hard-mining α at the first iteration (``recontrast_isic.py``: −3)."""
    alpha_end: float = 1.0
    """Hard-mining α after the warm-up (``recontrast_isic.py``: 1)."""
    alpha_warmup: float = Field(0.1, gt=0, le=1)
    """Fraction of the iterations over which α rises (``recontrast_isic.py``: 0.1)."""
    sigma: float = Field(4.0, ge=0)
    """σ of the Gaussian smoothing of the map (ReContrast ``utils.py``: 4; 0: none)."""
    image_score: ImageScore = "mean"
    """How the map becomes the image score (medical scripts: mean; MVTec: max)."""
    topk_fraction: float = Field(0.01, gt=0.0, le=1.0)
    """Fraction of the map's pixels averaged by ``image_score="topk"``."""


def hard_mined_cosine(
    targets: list[torch.Tensor], rebuilt: list[torch.Tensor], alpha: float
) -> torch.Tensor:
    """Σ over scales of the batch mean of 1 − cos(flattened target, flattened rebuilt); during
    backward, gradients into `rebuilt` are zeroed at positions with 1 − cos < mean + α·std."""
    loss = torch.zeros((), device=rebuilt[0].device)
    for t, r in zip(targets, rebuilt, strict=True):
        t = t.detach()
        loss = loss + (1 - torch.cosine_similarity(t.flatten(1), r.flatten(1), dim=1)).mean()
        if r.requires_grad:
            with torch.no_grad():
                point = 1 - torch.cosine_similarity(t, r, dim=1)[:, None]
                hard = (point >= point.mean() + alpha * point.flatten().std()).to(r.dtype)
            r.register_hook(lambda g, keep=hard: g * keep)
    return loss


@register("recontrast")
class ReContrast(Method):
    family = "feature-reconstruction"
    description = (
        "ReContrast: RD with a trained encoder beside its frozen copy, cross-reconstructed by two "
        "decoder heads with a hard-mined global cosine loss"
    )
    Config = ReContrastConfig
    config: ReContrastConfig
    budget = "own"

    def __init__(self, config: ReContrastConfig, channels: int) -> None:
        super().__init__(config, channels)
        layout = layout_of(config.backbone)
        self.frozen = FrozenBackbone(config.backbone, TEACHER_LAYERS, config.weights, UNIT_RANGE)
        self.encoder = BackboneFeatures(
            config.backbone, TEACHER_LAYERS, "random", ImageNetInput(UNIT_RANGE)
        )
        self.encoder.backbone.load_state_dict(self.frozen.frozen.backbone.state_dict())
        self.bottleneck = OneClassBottleneck(layout)
        self.decoder = ReverseResNet(layout, self.bottleneck.channels, heads=2)
        self.iteration = 0
        self.total_iterations = 1

    @classmethod
    def preprocess(cls, config: MethodConfig, channels: int) -> Preprocess:
        """Square `image_size` images in [0, 1]; ImageNet normalisation at the encoders' door."""
        return Preprocess(size=config.image_size, channels=channels, value_range=UNIT_RANGE)

    def prepare(self, batches: Callable[[], Iterator[torch.Tensor]]) -> None:
        """The iteration count α's warm-up spans (epochs × steps, or × batches of one pass)."""
        c = self.config
        steps = c.steps_per_epoch or sum(1 for _ in batches())
        self.iteration, self.total_iterations = 0, max(1, c.epochs * steps)

    def stages(self) -> list[Stage]:
        c = self.config
        if c.epochs == 0:
            return []
        groups = [
            ParamGroup([*self.bottleneck.parameters(), *self.decoder.parameters()]),
            ParamGroup(list(self.encoder.parameters()), lr=c.encoder_lr),
        ]
        return [Stage("train", c.epochs, [config_phase("model", groups, c)], c.steps_per_epoch)]

    def alpha(self) -> float:
        """α of the current iteration: linear from `alpha_start` to `alpha_end` over the warm-up."""
        c = self.config
        span = c.alpha_warmup * self.total_iterations
        return min(
            c.alpha_start + (c.alpha_end - c.alpha_start) * self.iteration / span, c.alpha_end
        )

    def pairs(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(targets, rebuilt): frozen features rebuilt from the trained encoder's half by head 1,
        then trained features rebuilt from the frozen half by head 2 (three scales each)."""
        trained = self.encoder(x)
        with torch.no_grad():
            frozen = self.frozen(x)
        z = self.bottleneck([torch.cat([a, b]) for a, b in zip(trained, frozen, strict=True)])
        out, n = self.decoder(z), x.shape[0]
        return frozen + trained, [o[:n] for o in out[:3]] + [o[n:] for o in out[3:]]

    def training_loss(self, x: torch.Tensor, stage: str, phase: str) -> torch.Tensor:
        targets, rebuilt = self.pairs(x)
        alpha = self.alpha()
        self.iteration += 1
        return (
            hard_mined_cosine(targets[:3], rebuilt[:3], alpha) / 2
            + hard_mined_cosine(targets[3:], rebuilt[3:], alpha) / 2
        )

    def score(self, x: torch.Tensor) -> ScoreOutput:
        c = self.config
        targets, rebuilt = self.pairs(x)
        maps = gaussian_smooth(multiscale_map(targets, rebuilt, x.shape[-2:], "sum"), c.sigma)
        return ScoreOutput(reduce_map(maps, c.image_score, c.topk_fraction), maps)
