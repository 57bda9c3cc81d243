"""AE-SSIM: the paper's AE trained and scored with 1 − SSIM (PAPER.md, row "AE-SSIM").

SSIM as the AE's distance follows Bergmann et al. 2019, "Improving unsupervised defect segmentation
by applying structural similarity to autoencoders" (VISAPP); MedIAnomaly uses an 11-pixel Gaussian
window (σ 1.5) on images rescaled from [-1, 1] to [0, 1] and clamped there, for both the loss
(mean of 1 − SSIM) and the map (1 − SSIM per pixel, averaged over channels).

Deliberate difference from the public MedIAnomaly code: its SSIM map is computed on the valid
region only (54 × 54 at 64 px) and bilinearly upsampled back for the pixel map, while the image
score averages the valid region. medad's `ssim_map` reflects the borders instead, so the map has the
input's size directly and the image score is the mean of the very map that is evaluated.
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator, model_validator

from medad.methods.ae import AEConfig
from medad.methods.base import register
from medad.methods.parts.recon import ReconstructionAE
from medad.methods.parts.ssim import ssim_map


class AESSIMConfig(AEConfig):
    window_size: int = Field(11, ge=3)
    """Side of SSIM's Gaussian window (PAPER.md: 11; odd)."""
    sigma: float = Field(1.5, gt=0)
    """σ of SSIM's Gaussian window (Wang et al. 2004: 1.5)."""

    @field_validator("window_size")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"must be odd (a centred window), got {v}")
        return v

    @model_validator(mode="after")
    def _window_fits(self) -> AESSIMConfig:
        if self.window_size > self.image_size:
            raise ValueError(f"window_size {self.window_size} exceeds image_size {self.image_size}")
        return self


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] → [0, 1], clamped (MedIAnomaly clamps both images before SSIM)."""
    return ((x + 1) / 2).clamp(0.0, 1.0)


@register("ae-ssim")
class AESSIM(ReconstructionAE):
    description = "Convolutional autoencoder trained and scored with 1 − SSIM (11-pixel window)"
    Config = AESSIMConfig

    def error_map(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        c = self.config
        s = ssim_map(
            to_unit_range(x), to_unit_range(x_hat), window_size=c.window_size, sigma=c.sigma
        )
        return 1.0 - s

    def reconstruction_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return self.error_map(x, x_hat).mean()
