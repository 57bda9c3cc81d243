"""DRAEM, a discriminatively trained reconstruction embedding (Zavrtanik et al., ICCV 2021).

Two networks trained together on DRAEM's simulated anomalies (`medad.anomalies.draem`: Perlin-shaped
regions filled with an augmented texture, half of the training images left unchanged):

* the reconstructive sub-network (an encoder-decoder without skips, Sec. 3.1) maps the anomalous
  image back to the clean one, trained with L2 + (1 − SSIM) (Sec. 3.1, Eq. 1-2);
* the discriminative sub-network (a U-Net, Sec. 3.2) takes the concatenation of reconstruction and
  input and outputs two-class logits, trained with the focal loss (γ = 2) against the anomaly mask
  (Eq. 3, Sec. 3.3).

Architecture and constants follow the reference code (github VitjanZ/DRAEM): encoder widths
b, 2b, 4b, 8b, 8b with b = 128 (reconstructive) and b, 2b, 4b, 8b, 8b, 8b with b = 64
(discriminative), convolution weights N(0, 0.02), BatchNorm weights N(1, 0.02); Adam lr 1e-4 for
both networks, batch 8, 700 epochs, the rate multiplied by 0.2 at 80 % and 90 % of the epochs
(``train_DRAEM.py``: ``MultiStepLR`` stepped per epoch); images 256×256 in [0, 1]. Deviations:
the SSIM is `medad.methods.parts.ssim.ssim_map` (reflect padding, DRAEM pads with zeros);
textures are generated (`medad.anomalies.procedural_texture`) unless `texture_dir` names a folder
such as DTD's ``images/``. Grayscale stays 1-channel (DRAEM's MVTec images are RGB).

Scores (DRAEM's ``test_DRAEM.py``): the anomaly map is the softmax probability of the anomaly
class, unsmoothed; the image score is the maximum of that map after a `smoothing_kernel` × kernel
mean filter (21 px at 256 px), ``image_score="smoothed_max"``. PAPER.md's general rule, the mean
of the map, is ``image_score="mean"``; ``"max"`` is the plain maximum of the map, as everywhere.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from medad.anomalies.textures import load_texture_folder
from medad.data.loading import Preprocess
from medad.methods.base import Method, MethodConfig, ScoreOutput, register
from medad.methods.optimisation import OptimiserConfig, Schedule
from medad.methods.parts.scoring import reduce_map
from medad.methods.parts.ssim import ssim_map
from medad.methods.parts.synthetic_batch import SyntheticBatch, synthesize_batch


class DRAEMConfig(MethodConfig, OptimiserConfig):
    epochs: int = Field(700, ge=0)
    """Training epochs (DRAEM: 700 on MVTec AD classes of a few hundred images)."""
    batch_size: int = Field(8, ge=1)
    """Mini-batch size (DRAEM: 8)."""
    lr: float = Field(1e-4, gt=0)
    """Adam learning rate of both sub-networks (DRAEM: 1e-4)."""
    schedule: Schedule = Field(
        default_factory=lambda: Schedule(kind="step", milestones=(0.8, 0.9), gamma=0.2)
    )
    """×0.2 at 80 % and 90 % of the epochs, stepped per epoch (DRAEM's ``MultiStepLR``)."""
    image_size: int = Field(256, ge=32, multiple_of=32)
    """Side of the square input, resized ignoring the aspect ratio (DRAEM: 256); the
    discriminative U-Net halves it five times, hence a multiple of 32."""
    reconstructive_width: int = Field(128, ge=1)
    """Channels of the first reconstructive encoder block (DRAEM: 128)."""
    discriminative_width: int = Field(64, ge=1)
    """Channels of the first discriminative encoder block (DRAEM: 64)."""
    focal_gamma: float = Field(2.0, ge=0)
    """γ of the focal loss (DRAEM: 2)."""
    smoothing_kernel: int = Field(21, ge=1)
    """Side of the mean filter before the image-level maximum (DRAEM: 21 at 256 px); odd."""
    image_score: Literal["smoothed_max", "mean", "max"] = "smoothed_max"
    """smoothed_max: max of the mean-filtered map (DRAEM); mean of the map (PAPER.md's general
    rule); max: the plain max of the map."""
    texture_dir: str | None = None
    """Folder of texture images (e.g. DTD's ``images/``); None: procedural textures."""
    texture_limit: int | None = Field(None, ge=1)
    """Read at most this many texture files (sorted order); each is held as float32 RGB at
    `image_size` (all of DTD at 256 px: about 4.4 GB), so limit it on small machines."""

    @field_validator("smoothing_kernel")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"must be odd (a centred window), got {value}")
        return value


def double_conv(in_channels: int, mid_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3×3 convolutions, each followed by BatchNorm and ReLU (DRAEM's building block)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, mid_channels, 3, padding=1),
        nn.BatchNorm2d(mid_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(mid_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def up_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Bilinear ×2 up-sampling, then 3×3 convolution, BatchNorm, ReLU."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Encoder(nn.Module):
    """Double-conv blocks of the given widths with a 2×2 max-pool between them; all outputs."""

    def __init__(self, in_channels: int, widths: list[int]) -> None:
        super().__init__()
        ins = [in_channels, *widths[:-1]]
        self.blocks = nn.ModuleList(double_conv(i, w, w) for i, w in zip(ins, widths, strict=True))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            features.append(x)
        return features


class ReconstructiveNetwork(nn.Module):
    """DRAEM's reconstructive sub-network: encoder b..8b (4 pools), decoder without skips."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        b = width
        self.encoder = Encoder(channels, [b, 2 * b, 4 * b, 8 * b, 8 * b])
        stages = [(8 * b, 4 * b), (4 * b, 2 * b), (2 * b, b), (b, b)]
        self.decoder = nn.Sequential(
            *(nn.Sequential(up_conv(c, c), double_conv(c, c, out)) for c, out in stages)
        )
        self.out = nn.Conv2d(b, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.decoder(self.encoder(x)[-1]))


class DiscriminativeNetwork(nn.Module):
    """DRAEM's discriminative sub-network: a U-Net on [reconstruction, input] → 2-class logits."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        b = width
        enc = [b, 2 * b, 4 * b, 8 * b, 8 * b, 8 * b]
        self.encoder = Encoder(in_channels, enc)
        # (input width, up-sampled width); the skip is the encoder block one level up
        dec = [(8 * b, 8 * b), (8 * b, 4 * b), (4 * b, 2 * b), (2 * b, b), (b, b)]
        self.ups = nn.ModuleList(up_conv(i, o) for i, o in dec)
        skips = enc[-2::-1]
        self.convs = nn.ModuleList(
            double_conv(o + s, o, o) for (_, o), s in zip(dec, skips, strict=True)
        )
        self.out = nn.Conv2d(b, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        h = features.pop()
        for up, conv in zip(self.ups, self.convs, strict=True):
            h = conv(torch.cat([up(h), features.pop()], dim=1))
        return self.out(h)


def draem_init(module: nn.Module) -> None:
    """DRAEM's initialisation: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02), bias 0."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def focal_loss(
    probs: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, smooth: float = 1e-5
) -> torch.Tensor:
    """DRAEM's focal loss (Lin et al. 2017) on softmax probabilities, as in its reference code.

    With the one-hot target clamped to [smooth / (K − 1), 1 − smooth] and
    p_t = Σ_k onehot_k · p_k + smooth, the loss is the mean over pixels of −(1 − p_t)^γ · log p_t
    (no class weighting: DRAEM's alpha is all ones).

    Args:
        probs: class probabilities [B, K, H, W].
        target: class index per pixel [B, H, W] (a binary mask for DRAEM; rounded).
    """
    k = probs.shape[1]
    onehot = F.one_hot(target.round().long(), k).permute(0, 3, 1, 2).to(probs.dtype)
    onehot = onehot.clamp(smooth / (k - 1), 1.0 - smooth)
    pt = (onehot * probs).sum(dim=1) + smooth
    return (-((1.0 - pt) ** gamma) * pt.log()).mean()


@register("draem")
class DRAEM(Method):
    family = "self-supervised"
    prefetch = True  # anomalies made ahead in the engine's background thread
    description = (
        "Reconstruction + U-Net segmentation of Perlin/texture anomalies, score = max smoothed map"
    )
    Config = DRAEMConfig

    def __init__(self, config: DRAEMConfig, channels: int) -> None:
        super().__init__(config, channels)
        self.config: DRAEMConfig = config
        self.reconstructive = ReconstructiveNetwork(channels, config.reconstructive_width)
        self.discriminative = DiscriminativeNetwork(2 * channels, config.discriminative_width)
        self.apply(draem_init)
        self._textures: list[np.ndarray] | None = None

    @classmethod
    def preprocess(cls, config: DRAEMConfig, channels: int) -> Preprocess:
        return Preprocess(size=config.image_size, channels=channels, value_range=(0.0, 1.0))

    def textures(self) -> list[np.ndarray] | None:
        """The user's textures (read once, at first use), or None for procedural ones."""
        c = self.config
        if c.texture_dir is not None and self._textures is None:
            self._textures = load_texture_folder(
                c.texture_dir, size=c.image_size, limit=c.texture_limit
            )
        return self._textures

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction [B, C, H, W], anomaly logits [B, 2, H, W]) of a batch."""
        rec = self.reconstructive(x)
        return rec, self.discriminative(torch.cat([rec, x], dim=1))

    def synthesize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """DRAEM anomalies of the batch and their masks, drawn from `self.rng`."""
        return synthesize_batch(x, "draem", self.rng, {"texture": self.textures()})

    def train_inputs(self, x: torch.Tensor) -> SyntheticBatch:
        return SyntheticBatch(x, *self.synthesize(x))

    def training_loss(
        self, x: torch.Tensor | SyntheticBatch, stage: str, phase: str
    ) -> dict[str, torch.Tensor]:
        batch = x if isinstance(x, SyntheticBatch) else self.train_inputs(x)
        x, anomalous, mask = batch.clean, batch.anomalous, batch.label
        rec, logits = self(anomalous)
        l2 = F.mse_loss(rec, x)
        ssim = 1.0 - ssim_map(rec, x).mean()
        focal = focal_loss(torch.softmax(logits, dim=1), mask, self.config.focal_gamma)
        return {"loss": l2 + ssim + focal, "l2": l2, "ssim": ssim, "focal": focal}

    def score(self, x: torch.Tensor) -> ScoreOutput:
        maps = torch.softmax(self(x)[1], dim=1)[:, 1]
        if self.config.image_score != "smoothed_max":
            return ScoreOutput(reduce_map(maps, self.config.image_score), maps)
        k = self.config.smoothing_kernel
        smooth = F.avg_pool2d(maps[:, None], k, stride=1, padding=k // 2)
        return ScoreOutput(smooth.flatten(1).amax(dim=1), maps)
