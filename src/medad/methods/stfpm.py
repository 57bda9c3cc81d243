"""STFPM: student-teacher feature pyramid matching.

Wang, Wu, Cui, Ran, "Student-Teacher Feature Pyramid Matching for Anomaly Detection", BMVC 2021
(arXiv 2103.04257); official code gdwang08/STFPM (``main.py``).

A frozen ImageNet ResNet18 (the teacher) and a ResNet18 of the same architecture trained from
random initialisation (the student) both read the image; the student learns to reproduce the
teacher's features of layers 1-3 (``conv2_x``..``conv4_x``) on normal images only, so on anomalies,
never seen, the two pyramids disagree.

* Loss (paper Eq. 1-3; ``main.py``, ``train_val``): at each layer both features are L2-normalised
  over channels; the per-position loss is the squared distance between them, averaged over
  positions, summed over the three layers. The paper writes ½‖·‖²; the official code, which produced
  the paper's numbers, drops the ½ (with SGD that is the same as half the learning rate); medad
  follows the code. For unit vectors ‖t − s‖² = 2 (1 − cos(t, s)), which is how it is computed.
* Map (paper Eq. 4-5; ``main.py``, ``test``): the same per-position squared distance at each layer,
  upsampled bilinearly (corners not aligned) to the input size, multiplied over the layers (the
  paper's product, not a sum). Image score: the map's maximum (the code's ``scores.max()``).
* Optimisation (paper Sec. 4.1; ``main.py``): SGD lr 0.4, momentum 0.9, weight decay 1e-4, batch
  32, 100 epochs, 256 × 256 input normalised with ImageNet statistics.

The teacher stays frozen, in eval mode and out of the checkpoint (`FrozenBackbone`); grayscale is
replicated to 3 channels at both networks' door only. The official code keeps the epoch with the
lowest loss on a 20 % validation split of the normal training images; medad evaluates the last
epoch on a student trained on all of them (PAPER.md: no model selection).
"""

from __future__ import annotations

import torch
from pydantic import Field

from medad.data.loading import Preprocess
from medad.methods.base import Method, MethodConfig, ScoreOutput, register
from medad.methods.optimisation import OptimiserConfig, OptimiserName
from medad.methods.parts.feature_maps import cosine_distance_maps, multiscale_map
from medad.methods.parts.scoring import ImageScore, reduce_map

#: value range of the images both networks get (STFPM: ToTensor, then ImageNet Normalize)
UNIT_RANGE = (0.0, 1.0)


class STFPMConfig(MethodConfig, OptimiserConfig):
    epochs: int = Field(100, ge=0)
    """Training epochs (official ``main.py``: 100)."""
    batch_size: int = Field(32, ge=2)
    """Mini-batch size (official ``main.py``: 32)."""
    optimizer: OptimiserName = "sgd"
    """SGD (Wang et al. 2021, Sec. 4.1)."""
    lr: float = Field(0.4, gt=0)
    """SGD learning rate (Sec. 4.1: 0.4)."""
    momentum: float = Field(0.9, ge=0, lt=1)
    """SGD momentum (Sec. 4.1: 0.9)."""
    weight_decay: float = Field(1e-4, ge=0)
    """Weight decay (Sec. 4.1: 1e-4)."""
    image_size: int = Field(256, ge=32, multiple_of=16)
    """Side of the square input (Sec. 4.1 and code: 256)."""
    backbone: str = "resnet18"
    """Teacher and student architecture (the paper: ResNet18, layers conv2_x..conv4_x)."""
    layers: tuple[str, ...] = ("layer1", "layer2", "layer3")
    """The pyramid levels matched (Sec. 3: the first three blocks)."""
    weights: str = "imagenet"
    """Teacher weights: ``imagenet`` (torch hub cache, the paper), a weights file, or ``random``."""
    image_score: ImageScore = "max"
    """How the map becomes the image score (official code: the maximum)."""
    topk_fraction: float = Field(0.01, gt=0.0, le=1.0)
    """Fraction of the map's pixels averaged by ``image_score="topk"``."""


@register("stfpm")
class STFPM(Method):
    in_study = False
    family = "feature-reference"
    description = (
        "Student-teacher feature pyramid matching: a ResNet18 from scratch mimics a frozen "
        "ImageNet ResNet18's layers 1-3; map = product of normalised feature distances"
    )
    Config = STFPMConfig
    config: STFPMConfig
    budget = "own"

    def __init__(self, config: STFPMConfig, channels: int) -> None:
        from medad.methods.parts.backbone import BackboneFeatures, FrozenBackbone
        from medad.methods.parts.pretrained import ImageNetInput

        super().__init__(config, channels)
        layers = list(config.layers)
        self.teacher = FrozenBackbone(config.backbone, layers, config.weights, UNIT_RANGE)
        door = ImageNetInput(UNIT_RANGE)
        self.student = BackboneFeatures(config.backbone, layers, "random", door)

    @classmethod
    def preprocess(cls, config: MethodConfig, channels: int) -> Preprocess:
        """Square `image_size` images in [0, 1]; ImageNet normalisation at the networks' door."""
        return Preprocess(size=config.image_size, channels=channels, value_range=UNIT_RANGE)

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(teacher features, student features) of the matched layers."""
        with torch.no_grad():
            t = self.teacher(x)
        return t, self.student(x)

    def training_loss(self, x: torch.Tensor, stage: str, phase: str) -> torch.Tensor:
        # ‖t̂ − ŝ‖² of unit vectors = 2 (1 − cos): averaged over positions, summed over layers
        return sum(2 * d.mean() for d in cosine_distance_maps(*self.features(x)))  # type: ignore[return-value]

    def score(self, x: torch.Tensor) -> ScoreOutput:
        c = self.config
        t, s = self.features(x)
        scale = 2.0 ** len(t)  # the product of the per-layer 2 (1 − cos) maps
        maps = scale * multiscale_map(t, s, x.shape[-2:], "product", align_corners=False)
        return ScoreOutput(reduce_map(maps, c.image_score, c.topk_fraction), maps)
