"""One-stage self-supervised methods: CutPaste (one-stage), FPI, PII and NSA.

PAPER.md, method table, family SSL: a network trained from scratch segments synthetic anomalies
pasted into normal images, and its predicted map is the anomaly map. The four methods share the
network (`medad.methods.parts.resnet_unet.ResNetUNet`, after NSA's ResNet18 encoder-decoder), the
loss (binary cross-entropy against the generator's continuous label, NSA's and MedIAnomaly's
``nn.BCELoss`` on a sigmoid output) and the score rule; they differ only in the generator of
`medad.anomalies` (`OneStageSSL.anomaly_kind`):

* ``cutpaste-1stage``: ``cutpaste-shift`` (MedIAnomaly's one-stage CutPaste: up to three
  patches of NSA's size distribution copied unchanged to other places on the object of the same
  image), binary label; ``generator="cutpaste"`` is Li et al.'s colour-jittered rectangle of
  2-15 % of the area pasted anywhere;
* ``fpi``: foreign patch interpolation (Tan et al. 2020), label alpha;
* ``pii``: Poisson image interpolation (Tan et al. 2021), label alpha;
* ``nsa``: natural synthetic anomalies (Schlüter et al. 2022), logistic intensity label.

Each training image gets one synthetic anomaly per step, with another image of the batch as the
foreign source (MedIAnomaly's loader takes the previously loaded training image).

Geometry (PAPER.md, "Preprocessing", one-stage SSL; MedIAnomaly ``ssl/one_stage``): images are
cached grayscale with the shorter side resized to `image_size` (256) and centre-cropped square.
Training: random rotation of ±`rotation` degrees (3), centre crop `train_center_crop` (230),
random crop `crop_size` (224) — done on the device by `train_transform`. Testing: `score` takes the
centre `crop_size` crop, predicts its sigmoid map and pastes it back into an `image_size` map whose
border (outside the crop) is 0, exactly as MedIAnomaly's evaluation pads its 224 px predictions by
16 zero pixels to 256. Maps therefore lie on the same pixels as the cached masks, and pixel
metrics count the border pixels as predicted normal (score 0, the sigmoid's lower bound).

Image score: the mean of the sigmoid map over the crop (PAPER.md: "image = mean"; MedIAnomaly
averages over the zero-padded 256 map, which is the crop mean times a constant, so the ranking is
the same); ``image_score="max"`` or ``"topk"`` (mean of the `topk_fraction` highest pixels) are
alternatives.

Optimisation (MedIAnomaly ``ssl/one_stage/train_med.py``, ``train``): Adam, lr 1e-3, batch 64,
``CosineAnnealingLR(T_max=epochs, eta_min=1e-6)`` stepped after every epoch; 250 epochs
(VinDr-CXR 400: the ``epochs`` table of its ``__main__``, medad's `medad.methods.budgets`).

Small budgets: the study's plain encoder-decoder needs far more than a few epochs. On 96-192
embedded brain images at 64 px (8 epochs, seed 0) NSA ranks images at 0.40-0.67 and PII at
0.45-0.55 (pixel AUROC 0.86-0.90); with ``skip_connections=True`` 0.84 and 0.78. For quick
experiments the U-Net option learns faster; rows under the paper's names keep the study's network.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from medad.data.loading import Preprocess
from medad.errors import MedadError
from medad.methods.base import Method, MethodConfig, ScoreOutput, register
from medad.methods.optimisation import OptimiserConfig, Schedule
from medad.methods.parts.resnet_unet import ResNetUNet
from medad.methods.parts.scoring import MapScoreConfig, reduce_map
from medad.methods.parts.synthetic_batch import (
    SyntheticBatch,
    check_generator_params,
    synthesize_batch,
)


class OneStageSSLConfig(MethodConfig, MapScoreConfig, OptimiserConfig):
    """MedIAnomaly's one-stage SSL settings (``ssl/one_stage/train_med.py``)."""

    schedule: Schedule = Field(default_factory=lambda: Schedule(kind="cosine", eta_min=1e-6))
    """Cosine annealing from `lr` to 1e-6 over the epochs, stepped per epoch (MedIAnomaly)."""

    image_size: int = Field(256, ge=32, multiple_of=16)
    """Side of the cached square: shorter side resized to it, centre-cropped (PAPER.md: 256)."""
    crop_size: int = Field(224, ge=32)
    """Side of the network input: random crop in training, centre crop in testing (224)."""
    train_center_crop: int = Field(230, ge=32)
    """Training takes its random crop inside this centre crop of the rotated image (230)."""
    rotation: float = Field(3.0, ge=0.0, le=180.0)
    """Training rotation range in degrees, uniform in ±rotation (torchvision RandomRotation(3))."""
    grayscale: bool = True
    """Convert inputs to 1 channel (PAPER.md: grayscale for all one-stage SSL datasets)."""
    skip_connections: bool = False
    """U-Net skip connections in the decoder; False (default) is the plain encoder-decoder of
    NSA's and MedIAnomaly's ``resnet18_enc_dec``; True concatenates encoder features (a U-Net)."""
    anomaly_params: dict[str, Any] = Field(default_factory=dict)
    """Keyword parameters of the anomaly generator (defaults: the generator's paper values)."""

    @model_validator(mode="after")
    def _crops_nest(self) -> OneStageSSLConfig:
        if not self.crop_size <= self.train_center_crop <= self.image_size:
            raise ValueError(
                f"need crop_size <= train_center_crop <= image_size, got {self.crop_size}, "
                f"{self.train_center_crop}, {self.image_size} (paper: 224, 230, 256)"
            )
        return self


class OneStageSSL(Method):
    """Shared base: a ResNet18 encoder-decoder segments the synthetic anomalies of a generator."""

    family = "self-supervised"
    budget = "one-stage-ssl"
    prefetch = True  # anomalies made ahead in the engine's background thread
    Config = OneStageSSLConfig
    #: generator name in `medad.anomalies.GENERATORS`
    anomaly_kind: ClassVar[str] = ""

    def __init__(self, config: OneStageSSLConfig, channels: int) -> None:
        super().__init__(config, channels)
        self.config: OneStageSSLConfig = config
        self.kind = self.generator_kind()
        check_generator_params(self.kind, config.anomaly_params, f"{self.name}.anomaly_params")
        self.net = ResNetUNet(1 if config.grayscale else channels, skips=config.skip_connections)

    def generator_kind(self) -> str:
        """Name of the generator in `medad.anomalies.GENERATORS` this method trains on."""
        return self.anomaly_kind

    @classmethod
    def preprocess(cls, config: OneStageSSLConfig, channels: int) -> Preprocess:
        return Preprocess(
            size=config.image_size,
            channels=1 if config.grayscale else channels,
            resize="shorter",
            value_range=(0.0, 1.0),
        )

    def _check_side(self, x: torch.Tensor, needed: int) -> None:
        if x.shape[-1] < needed or x.shape[-2] < needed:
            raise MedadError(
                f"{self.name}: input of {x.shape[-1]}x{x.shape[-2]} px is smaller than the crop of "
                f"{needed} px; use the method's preprocess (image_size={self.config.image_size})"
            )

    def train_transform(self, x: torch.Tensor) -> torch.Tensor:
        """Random rotation, centre crop `train_center_crop`, random crop `crop_size` (per image)."""
        c = self.config
        self._check_side(x, c.train_center_crop)
        b = x.shape[0]
        if c.rotation > 0:
            angles = np.deg2rad(self.rng.uniform(-c.rotation, c.rotation, size=b))
            cos = torch.as_tensor(np.cos(angles), dtype=x.dtype, device=x.device)
            sin = torch.as_tensor(np.sin(angles), dtype=x.dtype, device=x.device)
            zero = torch.zeros_like(cos)
            theta = torch.stack(
                [torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1
            )
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        top0 = (x.shape[-2] - c.train_center_crop) // 2
        left0 = (x.shape[-1] - c.train_center_crop) // 2
        offsets = self.rng.integers(0, c.train_center_crop - c.crop_size + 1, size=(b, 2))
        s = c.crop_size
        return torch.stack(
            [
                x[i, :, top0 + dy : top0 + dy + s, left0 + dx : left0 + dx + s]
                for i, (dy, dx) in enumerate(offsets)
            ]
        )

    def synthesize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomalous copies of the batch and their labels, drawn from `self.rng`."""
        return synthesize_batch(x, self.kind, self.rng, self.config.anomaly_params)

    def train_inputs(self, x: torch.Tensor) -> SyntheticBatch:
        return SyntheticBatch(x, *self.synthesize(x))

    def training_loss(
        self, x: torch.Tensor | SyntheticBatch, stage: str, phase: str
    ) -> torch.Tensor:
        batch = x if isinstance(x, SyntheticBatch) else self.train_inputs(x)
        anomalous, label = batch.anomalous, batch.label
        return F.binary_cross_entropy_with_logits(self.net(anomalous)[:, 0], label)

    def crop_box(self, side: int) -> tuple[int, int]:
        """(first, last + 1) row/column of the centre `crop_size` crop of a `side` px image."""
        first = (side - self.config.crop_size) // 2
        return first, first + self.config.crop_size

    def score(self, x: torch.Tensor) -> ScoreOutput:
        """Sigmoid map of the centre crop, pasted into a zero map of the input's size."""
        c = self.config
        self._check_side(x, c.crop_size)
        (top, bottom), (left, right) = self.crop_box(x.shape[-2]), self.crop_box(x.shape[-1])
        prob = torch.sigmoid(self.net(x[..., top:bottom, left:right])[:, 0])
        maps = prob.new_zeros((x.shape[0], x.shape[-2], x.shape[-1]))
        maps[:, top:bottom, left:right] = prob
        return ScoreOutput(reduce_map(prob, c.image_score, c.topk_fraction), maps)


#: MedIAnomaly's FPI and PII runs (NSA's ``patch_ex`` with its shared settings): alpha ~
#: U(0.05, 0.95); one to three patches sharing alpha; each on the object (more than 70 % of the
#: source patch brighter than 20 grey levels); labels only where a pixel moved by more than one
#: grey level. Patch sides stay FPI's U(10-40 %) of the side (MedIAnomaly draws gamma-distributed
#: half-widths, mean width about 22 %).
MEDIANOMALY_INTERPOLATION = {
    "alpha_range": (0.05, 0.95),
    "max_patches": 3,
    "object_threshold": 20 / 255,
    "min_object": 0.7,
    "tol": 1 / 255,
}


class FPIConfig(OneStageSSLConfig):
    anomaly_params: dict[str, Any] = Field(default_factory=lambda: dict(MEDIANOMALY_INTERPOLATION))
    """``fpi`` generator parameters; defaults: MedIAnomaly's setting (`MEDIANOMALY_INTERPOLATION`);
    ``{"max_patches": 1, "object_threshold": null, "tol": 1e-6}`` is Tan et al.'s single patch."""


class PIIConfig(OneStageSSLConfig):
    anomaly_params: dict[str, Any] = Field(
        default_factory=lambda: {**MEDIANOMALY_INTERPOLATION, "blend": "mixed"}
    )
    """``pii`` generator parameters; defaults: MedIAnomaly's setting (`MEDIANOMALY_INTERPOLATION`)
    with its mixed-gradient cloning (``blend="mixed"``; PAPER.md: "Poisson (mixed-gradient)
    blending"): OpenCV's mixed ``seamlessClone`` with a mask of alpha, so the stronger gradient
    enters with weight alpha and a patch with small alpha barely changes the image.
    ``"blend": "interpolated"`` is Tan et al.'s interpolated gradients (1 - alpha, alpha), which
    blur the patch: the network then learns that sharp edges are normal and ranks the embedded
    data's hyperintense lesions below normals (image AUROC 0.30 at seed 0, 256 images, 8 epochs).
    Mixed, seed 0, 96 images, 8 epochs: image AUROC 0.57, pixel AUROC 0.85."""


#: MedIAnomaly's shifted-patch setting (``train_med.py``, NSA's ``patch_ex`` arguments), shared by
#: its NSA and CutPaste runs: one to three patches, half-widths 0.05 + Gamma(2, 0.03) of the side
#: within 3-40 % (``GAMMA_PARAMS``, ``WIDTH_BOUNDS_PCT``), object pixels brighter than 20 grey
#: levels (``BACKGROUND``), more than 70 % object in the source patch (``MIN_OBJECT_PCT``) and 70 %
#: of it landing on object (``MIN_OVERLAP_PCT``). NSA's MVTec setting is 0.03 + Gamma(2, 0.05).
MEDIANOMALY_SHIFTED_PATCHES = {
    "max_patches": 3,
    "width_bounds": (0.03, 0.4),
    "width_gamma": (2.0, 0.03, 0.05),
    "half_widths": True,
    "object_threshold": 20 / 255,
    "min_object": 0.7,
    "min_overlap": 0.7,
}


class NSAConfig(OneStageSSLConfig):
    anomaly_params: dict[str, Any] = Field(
        default_factory=lambda: {
            **MEDIANOMALY_SHIFTED_PATCHES,
            "logistic_steepness": 255 / 2,
            "logistic_centre": 4 / 255,
        }
    )
    """``nsa`` generator parameters. Defaults: MedIAnomaly's medical NSA setting
    (``Shift-Intensity-M``: resized and shifted patches, mixed cloning, logistic label k = 1/2 per
    grey level, x0 = 4 levels, with `MEDIANOMALY_SHIFTED_PATCHES`)."""


class CutPasteOneStageConfig(OneStageSSLConfig):
    generator: Literal["cutpaste-shift", "cutpaste"] = "cutpaste-shift"
    """``cutpaste-shift``: MedIAnomaly's one-stage CutPaste (NSA's ``patch_ex`` in its ``CutPaste``
    setting: up to three unchanged patches of the image moved onto its object); ``cutpaste``: Li
    et al.'s colour-jittered rectangle (CVPR 2021). `anomaly_params` go to the chosen one."""


@register("cutpaste-1stage")
class CutPasteOneStage(OneStageSSL):
    description = (
        "CutPaste (MedIAnomaly's shifted patches) segmented by a ResNet18 encoder-decoder "
        "from scratch (BCE), score = mean map"
    )
    anomaly_kind = "cutpaste-shift"
    Config = CutPasteOneStageConfig
    config: CutPasteOneStageConfig

    def generator_kind(self) -> str:
        return self.config.generator


@register("fpi")
class FPI(OneStageSSL):
    description = (
        "Foreign patch interpolation, ResNet18 encoder-decoder regresses alpha (BCE), "
        "score = mean map"
    )
    anomaly_kind = "fpi"
    Config = FPIConfig


@register("pii")
class PII(OneStageSSL):
    description = (
        "Poisson image interpolation, ResNet18 encoder-decoder regresses alpha (BCE), "
        "score = mean map"
    )
    anomaly_kind = "pii"
    Config = PIIConfig


@register("nsa")
class NSA(OneStageSSL):
    description = (
        "Natural synthetic anomalies, ResNet18 encoder-decoder, logistic label, score = mean map"
    )
    anomaly_kind = "nsa"
    Config = NSAConfig
