"""DAE: the denoising autoencoder of Kascenas et al. 2022 (PAPER.md, method table, row "DAE").

Kascenas, Pugeault, O'Neil, "Denoising autoencoders for unsupervised anomaly detection in brain
MRI", MIDL 2022 (code: AntanasKascenas/DenoisingAE). A U-Net (`medad.methods.parts.unet`) learns
to remove coarse noise from normal images: Gaussian noise drawn on a 16×16 lattice with σ = 0.2,
upsampled bilinearly to the image size, circularly shifted by a random offset (so the lattice does
not sit at the same pixels every time) and added to the foreground; the target is the clean image.
Blob-like noise of roughly lesion size teaches the network to replace anything that does not look
like healthy anatomy, so at test time the clean input's reconstruction error marks anomalies.
Score map: per-pixel squared error (x − f(x))² summed over channels, times the eroded foreground
mask; image score: the mean of the map.

Where medad deliberately differs from MedIAnomaly's ``dae_worker.py``:

- Noise shift. MedIAnomaly maps the noise as if it were an image, ``ns = (ns - 0.5) * 2``, which
  adds 2·N(0, σ²) plus a constant −1 to every training input. The constant has no effect on its
  network: the U-Net's first layer is a weight-standardised conv (every filter's weights have zero
  mean) after reflection padding (a constant image stays constant at the borders), so
  conv(x + c) = conv(x) + c·Σw = conv(x). medad adds the zero-mean part only, 2 · N(0, σ²) in
  [-1, 1] units (σ = 0.2 in the [0, 1] units of Kascenas' data), which trains the same function
  and stays correct if the first layer is ever changed.
- Foreground mask. MedIAnomaly masks only the noise, with ``x > x.min()`` over the batch, and only
  for its two brain datasets; its loss and score are unmasked. medad follows Kascenas: the mask
  (any channel above 1 % of the intensity range) limits the noise and the loss, and the score map
  is multiplied by the mask eroded by `mask_erosion` pixels, which drops the reconstruction errors
  along the brain outline. The method does not know the dataset, so the mask is a config option;
  it defaults to on because it only removes pixels at the black background level (skull-stripped
  MRI background, black borders of fundus or dermoscopy images), i.e. nothing on a chest X-ray.
  Set ``foreground_mask: false`` where dark pixels can be abnormal.
- Not reproduced from Kascenas' code: AMSGrad, weight decay 1e-5 and the cosine learning-rate
  schedule (the engine's Adam has none; MedIAnomaly did not use them either), the absolute instead
  of squared error, and the 5×5 median filter of the score map (PAPER.md's DAE scores with MSE).
- Noise per image: each image gets its own random circular shift (Kascenas draws one per batch;
  the noise itself is independent per image, so the distribution is the same).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from medad.methods.base import Method, MethodConfig, ScoreOutput, register
from medad.methods.parts.scoring import MapScoreConfig, reduce_map
from medad.methods.parts.unet import UNet


class DAEConfig(MethodConfig, MapScoreConfig):
    image_size: int = Field(128, ge=16, multiple_of=16)
    """Side of the square input (PAPER.md and Kascenas: 128)."""
    batch_size: int = Field(16, ge=1)
    """Mini-batch size (PAPER.md and Kascenas: 16)."""
    lr: float = Field(1e-3, gt=0)
    """Adam learning rate. MedIAnomaly's DAE runs used its default 1e-3 (``train_eval.sh`` passes
    only ``--input-size 128 -bs 16``); Kascenas used 1e-4 with AMSGrad and a cosine schedule."""
    depth: int = Field(5, ge=1)
    """U-Net levels (MedIAnomaly: its U-Net's default 5, 31.0 M parameters at one channel;
    Kascenas' training script: 4, 7.7 M)."""
    base_width: int = Field(64, ge=1)
    """Channels of the first U-Net level, doubled at each level (Kascenas: 2**6 = 64)."""
    noise_res: int = Field(16, ge=2)
    """Side of the noise lattice before upsampling (Kascenas: 16)."""
    noise_std: float = Field(0.2, ge=0)
    """Std of the lattice noise in [0, 1] intensity units (Kascenas: 0.2); 2× that in [-1, 1]."""
    foreground_mask: bool = True
    """Noise, loss and score only on the foreground (Kascenas, MedIAnomaly on brain data)."""
    foreground_threshold: float = Field(0.01, ge=0, lt=1)
    """A pixel is foreground when a channel exceeds this, in [0, 1] units (Kascenas: 0.01)."""
    mask_erosion: int = Field(2, ge=0)
    """Pixels the scoring mask is eroded by (Kascenas: a 5×5 window at 128 px, i.e. 2)."""

    @model_validator(mode="after")
    def _side_fits_depth(self) -> DAEConfig:
        factor = 2 ** (self.depth - 1)
        if self.image_size % factor:
            raise ValueError(f"image_size {self.image_size} must divide by 2**(depth-1) = {factor}")
        return self


def coarse_noise(
    batch: int,
    channels: int,
    size: int,
    *,
    res: int,
    std: float,
    rng: np.random.Generator,
) -> torch.Tensor:
    """Kascenas' coarse noise [B, C, size, size] (CPU, float32), in the units of `std`.

    N(0, std²) on a res×res lattice, upsampled bilinearly with aligned corners, then circularly
    shifted by an independent random offset per image in both axes. Interpolation averages
    neighbouring lattice values, so a pixel's std is `std` on a lattice point and (2/3)·std on
    average over the image (each axis contributes E[t² + (1 − t)²] = 2/3 to the variance).
    """
    lattice = torch.from_numpy(rng.standard_normal((batch, channels, res, res), dtype=np.float32))
    noise = F.interpolate(lattice * std, size=(size, size), mode="bilinear", align_corners=True)
    shifts = rng.integers(0, size, size=(batch, 2))
    return torch.stack(
        [
            torch.roll(n, shifts=(int(dy), int(dx)), dims=(-2, -1))
            for n, (dy, dx) in zip(noise, shifts, strict=True)
        ]
    )


@register("dae")
class DAE(Method):
    family = "reconstruction"
    description = "Denoising U-Net that removes coarse noise, score = squared error (Kascenas 2022)"
    Config = DAEConfig

    def __init__(self, config: DAEConfig, channels: int) -> None:
        super().__init__(config, channels)
        self.value_range = type(self).preprocess(config, channels).value_range
        self.net = UNet(channels, channels, config.depth, config.base_width)

    def foreground(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, S, S] float mask: 1 where any channel exceeds the foreground threshold."""
        lo, hi = self.value_range
        return (
            (x.amax(dim=1, keepdim=True) - lo) / (hi - lo) > self.config.foreground_threshold
        ).to(x.dtype)

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """Training noise for batch `x`, in x's units, drawn from the engine-seeded `self.rng`."""
        c: DAEConfig = self.config  # type: ignore[assignment]
        lo, hi = self.value_range
        b, ch, s, _ = x.shape
        ns = coarse_noise(b, ch, s, res=c.noise_res, std=c.noise_std * (hi - lo), rng=self.rng)
        return ns.to(device=x.device, dtype=x.dtype)

    def training_loss(self, x: torch.Tensor, stage: str, phase: str) -> torch.Tensor:
        noise = self.noise(x)
        if not self.config.foreground_mask:
            return torch.mean((self.net(x + noise) - x) ** 2)
        fg = self.foreground(x)
        return torch.mean((self.net(x + noise * fg) - x) ** 2 * fg)

    def score(self, x: torch.Tensor) -> ScoreOutput:
        maps = ((self.net(x) - x) ** 2).sum(dim=1)
        if self.config.foreground_mask:
            maps = maps * erode(self.foreground(x), self.config.mask_erosion)[:, 0]
        c = self.config
        return ScoreOutput(reduce_map(maps, c.image_score, c.topk_fraction), maps)


def erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary erosion of a [B, 1, H, W] {0, 1} mask with a (2r+1)² square (outside = foreground)."""
    if radius == 0:
        return mask
    k = 2 * radius + 1
    return 1.0 - F.max_pool2d(1.0 - mask, k, stride=1, padding=radius)
