"""EfficientAD-S: a small student-teacher pair plus an autoencoder.

Batzner, Heckler, König, "EfficientAD: Accurate Visual Anomaly Detection at Millisecond-Level
Latencies", WACV 2024 (arXiv 2303.14535), Sec. 3 and Algorithm 1 of the supplement. MVTec did not
publish code; the paper's reference reimplementation, whose numbers match the paper, is
nelson1425/EfficientAD (``efficientad.py``, ``common.py``), read for the details the paper leaves
open.

* Networks (Sec. 3.1, 3.3): the patch description network PDN-S (conv 4×4 128 → ReLU → avg-pool 2
  → conv 4×4 256 → ReLU → avg-pool 2 → conv 3×3 256 → ReLU → conv 4×4 384, no padding: 33 px
  receptive field, output a quarter of the input less 8) as the frozen teacher; a PDN-S student
  with 2 × 384 outputs; a convolutional autoencoder (6 strided convs down to 1 × 1, 6 bilinear
  upsamplings with 4×4 convs and dropout 0.2 back to the teacher's output size,
  ``EfficientADAutoencoder``).
* Teacher normalisation (Alg. 1): per-channel mean and standard deviation of the teacher's outputs
  over the training images, computed before the first update (`prepare`).
* Loss (Sec. 3.2-3.3): hard-feature loss, the mean of the squared student-teacher differences at or
  above their 0.999 quantile in the batch; the autoencoder's squared error against the normalised
  teacher on an augmented image (brightness, contrast or saturation ×0.8-1.2, chosen at random);
  the student's second 384 outputs' squared error against the autoencoder on that image.
* Maps (Sec. 3.4): local map = channel mean of (teacher − student)², global map = channel mean of
  (autoencoder − student)². Each is normalised linearly so that its 0.9 and 0.995 quantiles over
  held-out normal images map to 0 and 0.1; the combined map is their average, padded by 4 (the
  PDN's unpadded border) and upsampled bilinearly to the input size. Image score: its maximum.
  The quantiles come from a validation part of the training split that is never trained on (the
  reference code: 10 %, `holdout_fraction`, `calibrate`).
* Optimisation (Sec. 4, supplement): Adam lr 1e-4, weight decay 1e-5, 70 000 steps of batch 1 (here
  70 epochs of 1000 steps), learning rate ×0.1 after 95 % of the steps; 256 px, ImageNet
  normalisation.

Two deviations, both said in the run's warnings and in docs/FIDELITY.md:

* **Teacher.** The paper distils the PDN teacher from a WideResNet-101 on ImageNet, which cannot be
  done offline. ``weights=FILE`` loads a distilled PDN-S teacher's state dict (the reference code's
  ``teacher_small.pth`` loads as it is); without it the teacher is a fixed random PDN (seeded, so a
  checkpoint reloads against the same teacher), a weaker feature extractor.
* **ImageNet penalty.** The paper adds the mean squared student output on an ImageNet image to the
  student-teacher loss at every step, so the student does not imitate the teacher off the normal
  images. It needs ImageNet images: ``imagenet_dir=FOLDER`` (any folder of JPEG/PNG images, read
  recursively) turns it on; by default it is off.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from medad.data.loading import Preprocess
from medad.errors import MedadError
from medad.methods.base import Method, MethodConfig, ScoreOutput, register
from medad.methods.optimisation import OptimiserConfig, Schedule
from medad.methods.parts.scoring import ImageScore, reduce_map

#: EfficientAD's images are in [0, 1], then ImageNet-normalised (reference ``default_transform``)
UNIT_RANGE = (0.0, 1.0)
#: decoder upsampling sizes of the autoencoder at 256 px (Batzner et al., supplement, Table 8)
AE_UPSAMPLE_AT_256 = (3, 8, 15, 32, 63, 127)
#: the combined map is padded by this much on each side before upsampling (PDN without padding)
MAP_PAD = 4
PENALTY_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


class EfficientADConfig(MethodConfig, OptimiserConfig):
    epochs: int = Field(70, ge=0)
    """Epochs of `steps_per_epoch` steps: 70 × 1000 = the paper's 70 000 steps."""
    steps_per_epoch: int | None = Field(1000, ge=1)
    """Optimiser steps per epoch (None: one pass over the data)."""
    batch_size: int = Field(1, ge=1)
    """Mini-batch size (paper, supplement: 1)."""
    lr: float = Field(1e-4, gt=0)
    """Adam learning rate (paper: 1e-4)."""
    weight_decay: float = Field(1e-5, ge=0)
    """Adam weight decay (paper: 1e-5)."""
    schedule: Schedule = Field(
        default_factory=lambda: Schedule(kind="step", per="step", milestones=(0.95,), gamma=0.1)
    )
    """Learning rate ×0.1 after 95 % of the steps (paper: after 66 500 of 70 000)."""
    image_size: int = Field(256, ge=64, multiple_of=32)
    """Side of the square input (paper: 256); a multiple of 32, the autoencoder's stride."""
    out_channels: int = Field(384, ge=1)
    """Teacher output channels (PDN: 384); the student has twice as many."""
    weights: str = "random"
    """Teacher: a distilled PDN-S state-dict file, or ``random`` (a fixed random PDN, see
    the module docstring)."""
    imagenet_dir: str | None = None
    """Folder of ImageNet (or other natural) images for the penalty term; None: no penalty."""
    hard_quantile: float = Field(0.999, gt=0, lt=1)
    """Quantile of the student-teacher differences above which the hard loss averages (0.999)."""
    map_quantiles: tuple[float, float] = (0.9, 0.995)
    """Quantiles q_a, q_b of the held-out maps that normalise to 0 and 0.1 (paper: 0.9, 0.995)."""
    validation_fraction: float = Field(0.1, gt=0, lt=1)
    """Fraction of the train split held out of training for the map quantiles (reference: 10 %)."""
    image_score: ImageScore = "max"
    """How the map becomes the image score (paper: the maximum of the combined map)."""
    topk_fraction: float = Field(0.01, gt=0.0, le=1.0)
    """Fraction of the map's pixels averaged by ``image_score="topk"``."""

    @field_validator("map_quantiles")
    @classmethod
    def _increasing(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= value[0] < value[1] <= 1:
            raise ValueError(f"map_quantiles must be increasing in [0, 1], got {value}")
        return value


def pdn_small(out_channels: int) -> nn.Sequential:
    """PDN-S (paper, Table 6), no padding; layer order as the reference code's teacher files."""
    return nn.Sequential(
        nn.Conv2d(3, 128, 4),
        nn.ReLU(inplace=True),
        nn.AvgPool2d(2, 2),
        nn.Conv2d(128, 256, 4),
        nn.ReLU(inplace=True),
        nn.AvgPool2d(2, 2),
        nn.Conv2d(256, 256, 3),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, out_channels, 4),
    )


def pdn_output_size(image_size: int) -> int:
    """Side of PDN-S's output for a square input (image_size / 4 − 8 for multiples of 4)."""
    s = (image_size - 3) // 2
    s = (s - 3) // 2
    return s - 2 - 3


class EfficientADAutoencoder(nn.Module):
    """The paper's autoencoder (supplement, Table 8), its sizes scaled to `image_size`."""

    def __init__(self, out_channels: int, image_size: int) -> None:
        super().__init__()
        enc: list[nn.Module] = []
        for cin, cout in [(3, 32), (32, 32), (32, 64), (64, 64), (64, 64)]:
            enc += [nn.Conv2d(cin, cout, 4, 2, 1), nn.ReLU(inplace=True)]
        enc.append(nn.Conv2d(64, 64, image_size // 32))  # to 1 × 1
        dec: list[nn.Module] = []
        for size in AE_UPSAMPLE_AT_256:
            side = max(1, round(size * image_size / 256))
            dec += [
                nn.Upsample(size=side, mode="bilinear"),
                nn.Conv2d(64, 64, 4, 1, 2),
                nn.ReLU(inplace=True),
                nn.Dropout(0.2),
            ]
        dec += [
            nn.Upsample(size=pdn_output_size(image_size), mode="bilinear"),
            nn.Conv2d(64, 64, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, out_channels, 3, 1, 1),
        ]
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """``torch.quantile(values, q)`` (linear interpolation) for tensors of any size (torch's has
    a limit of 2^24 elements)."""
    flat = values.flatten()
    pos = q * (flat.numel() - 1)
    lo = int(np.floor(pos))
    a = flat.kthvalue(lo + 1).values
    if lo + 1 >= flat.numel():
        return a
    b = flat.kthvalue(lo + 2).values
    return a + (b - a) * (pos - lo)


def hard_feature_loss(distance: torch.Tensor, q: float) -> torch.Tensor:
    """Mean of the squared differences at or above their `q` quantile (paper Sec. 3.2)."""
    return distance[distance >= quantile(distance.detach(), q)].mean()


def penalty_images(folder: str) -> list[Path]:
    """Image files under `folder` (recursively), sorted; a clear error when there are none."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise MedadError(f"{root}: imagenet_dir is not a folder (the ImageNet penalty's images)")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in PENALTY_SUFFIXES)
    if not files:
        raise MedadError(f"{root}: no JPEG/PNG images for the ImageNet penalty (imagenet_dir)")
    return files


@register("efficientad")
class EfficientAD(Method):
    in_study = False
    family = "feature-reference"
    description = (
        "EfficientAD-S: PDN student-teacher with hard-feature loss plus an autoencoder for "
        "logical anomalies; map = mean of quantile-normalised local and global maps"
    )
    Config = EfficientADConfig
    config: EfficientADConfig
    budget = "own"

    def __init__(self, config: EfficientADConfig, channels: int) -> None:
        from medad.methods.parts.backbone import RANDOM_WEIGHTS_SEED, FrozenModule
        from medad.methods.parts.pretrained import ImageNetInput, _load_state

        super().__init__(config, channels)
        c = config.out_channels
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            teacher = pdn_small(c)
        if config.weights != "random":
            _load_state(teacher, Path(config.weights).expanduser(), "EfficientAD PDN-S teacher")
        self.teacher = FrozenModule(teacher)
        self.door = ImageNetInput(UNIT_RANGE)
        self.student = pdn_small(2 * c)
        self.autoencoder = EfficientADAutoencoder(c, config.image_size)
        self.register_buffer("teacher_mean", torch.zeros(1, c, 1, 1))
        self.register_buffer("teacher_std", torch.ones(1, c, 1, 1))
        #: (q_a, q_b) of the local (row 0) and global (row 1) maps on the held-out images
        self.register_buffer("map_quantiles", torch.tensor([[0.0, 10.0], [0.0, 10.0]]))
        self.penalty_files: list[Path] = []

    @classmethod
    def preprocess(cls, config: MethodConfig, channels: int) -> Preprocess:
        """Square `image_size` images in [0, 1]; ImageNet normalisation at the networks' door."""
        return Preprocess(size=config.image_size, channels=channels, value_range=UNIT_RANGE)

    def holdout_fraction(self) -> float:
        return self.config.validation_fraction

    def normalised_teacher(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (self.teacher(z) - self.teacher_mean) / self.teacher_std

    def prepare(self, batches) -> None:  # type: ignore[no-untyped-def]
        """Teacher channel statistics over the training images (Alg. 1); say what is off."""
        c = self.config
        if c.weights == "random":
            warnings.warn(
                "efficientad: the teacher is a fixed random PDN (the paper distils it from an "
                "ImageNet WideResNet-101): give a distilled PDN-S with --set weights=FILE",
                stacklevel=2,
            )
        if c.imagenet_dir is None:
            warnings.warn(
                "efficientad: ImageNet penalty off (no imagenet_dir): the student is not kept "
                "from imitating the teacher off the normal images; --set imagenet_dir=FOLDER",
                stacklevel=2,
            )
        else:
            self.penalty_files = penalty_images(c.imagenet_dir)
        total = count = 0
        for x in batches():
            t = self.teacher(self.door(x))
            total, count = total + t.sum(dim=(0, 2, 3)), count + t[:, 0].numel()
        mean = (total / count).view(1, -1, 1, 1)
        total = 0
        for x in batches():
            total = total + ((self.teacher(self.door(x)) - mean) ** 2).sum(dim=(0, 2, 3))
        self.teacher_mean.copy_(mean)
        self.teacher_std.copy_((total / count).sqrt().view(1, -1, 1, 1).clamp_min(1e-8))

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """The autoencoder's input: brightness, contrast or saturation ×U(0.8, 1.2), one at
        random per image (reference ``transform_ae``); saturation leaves grayscale unchanged."""
        out = []
        for img in x:
            kind, factor = self.rng.integers(3), float(self.rng.uniform(0.8, 1.2))
            gray = img.mean(dim=0, keepdim=True)
            if kind == 0:
                img = img * factor
            elif kind == 1:
                img = (img - gray.mean()) * factor + gray.mean()
            else:
                img = (img - gray) * factor + gray
            out.append(img.clamp(0, 1))
        return torch.stack(out)

    def penalty_batch(self, like: torch.Tensor) -> torch.Tensor:
        """One penalty image: resized to twice the input size, centre-cropped (reference code),
        in [0, 1], RGB (grayscale with probability 0.3, as the reference code)."""
        from PIL import Image

        s = self.config.image_size
        path = self.penalty_files[int(self.rng.integers(len(self.penalty_files)))]
        try:
            with Image.open(path) as im:
                image = im.convert("RGB").resize((2 * s, 2 * s), Image.Resampling.BILINEAR)
        except OSError as exc:
            raise MedadError(f"{path}: cannot read penalty image ({exc})") from exc
        arr = np.asarray(image, dtype=np.float32)[s // 2 : s // 2 + s, s // 2 : s // 2 + s] / 255
        t = torch.from_numpy(arr).permute(2, 0, 1)[None].to(like.device, like.dtype)
        if self.rng.uniform() < 0.3:
            t = t.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
        return t

    def training_loss(self, x: torch.Tensor, stage: str, phase: str) -> dict[str, torch.Tensor]:
        c = self.config
        k = c.out_channels
        z = self.door(x)
        st = (self.normalised_teacher(z) - self.student(z)[:, :k]) ** 2
        losses = {"hard": hard_feature_loss(st, c.hard_quantile)}
        if self.penalty_files:
            p = self.door(self.penalty_batch(x))
            losses["penalty"] = (self.student(p)[:, :k] ** 2).mean()
        z_ae = self.door(self.augment(x))
        ae = self.autoencoder(z_ae)
        losses["ae"] = ((self.normalised_teacher(z_ae) - ae) ** 2).mean()
        losses["stae"] = ((ae - self.student(z_ae)[:, k:]) ** 2).mean()
        return {"loss": sum(losses.values()), **losses}  # type: ignore[dict-item]

    def raw_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(local, global) maps at the PDN's output size, before normalisation: [B, h, w] each."""
        k = self.config.out_channels
        z = self.door(x)
        s = self.student(z)
        local = ((self.normalised_teacher(z) - s[:, :k]) ** 2).mean(dim=1)
        global_ = ((self.autoencoder(z) - s[:, k:]) ** 2).mean(dim=1)
        return local, global_

    def calibrate(self, batches) -> None:  # type: ignore[no-untyped-def]
        """The q_a, q_b quantiles of both maps over the held-out normal images (Alg. 1)."""
        pairs = [self.raw_maps(x) for x in batches()]
        qa, qb = self.config.map_quantiles
        for row, maps in enumerate(zip(*pairs, strict=True)):
            values = torch.cat([m.flatten() for m in maps])
            self.map_quantiles[row] = torch.stack([quantile(values, qa), quantile(values, qb)])

    def score(self, x: torch.Tensor) -> ScoreOutput:
        c = self.config
        combined = 0
        for m, (qa, qb) in zip(self.raw_maps(x), self.map_quantiles, strict=True):
            combined = combined + 0.5 * 0.1 * (m - qa) / (qb - qa).clamp_min(1e-12)
        padded = F.pad(combined[:, None], (MAP_PAD,) * 4)  # type: ignore[index]
        maps = F.interpolate(padded, size=x.shape[-2:], mode="bilinear")[:, 0]
        return ScoreOutput(reduce_map(maps, c.image_score, c.topk_fraction), maps)
