"""CeAE: a context-encoding autoencoder (PAPER.md, row "CeAE").

Context encoding (Pathak et al. 2016, "Context encoders: feature learning by inpainting", CVPR) as
used for anomaly detection by Zimmerer et al. 2019, "Context-encoding variational autoencoder for
unsupervised anomaly detection" (ceVAE, MIDL, arXiv 1812.05941): during training a random square
of the input is erased and the AE must reconstruct the clean image, so it learns to in-paint
normal anatomy. At test time
the input is not erased and the score is the AE's (mean squared error).

The erasing follows the MedIAnomaly code (torchvision `RandomErasing(p=1, scale=(0.024, 0.024),
ratio=(1, 1), value=-1)`): one square per image of side round(√(0.024 · H · W)) (10 px at 64 px,
≈ 2.4 % of the area), top-left corner uniform over the positions where it fits, filled with −1
(the bottom of the [-1, 1] input range, black) in every channel. medad draws the positions from
the method's seeded generator `self.rng`, so training is reproducible.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from medad.methods.ae import AEConfig
from medad.methods.base import register
from medad.methods.parts.recon import ReconstructionAE


class CeAEConfig(AEConfig):
    erase_fraction: float = Field(0.024, gt=0, lt=1)
    """Area fraction of the erased square (MedIAnomaly code: 0.024, a 10 px square at 64 px)."""
    erase_value: float = -1.0
    """Value written into the erased square (MedIAnomaly code: -1, the input range's minimum)."""


def erase_side(height: int, width: int, fraction: float) -> int:
    """Side of the square covering `fraction` of the image (rounded like torchvision)."""
    return max(1, min(height, width, int(round(math.sqrt(fraction * height * width)))))


@register("ceae")
class CeAE(ReconstructionAE):
    description = "Context-encoding autoencoder: erase a random square in training, score = MSE"
    Config = CeAEConfig

    def erase(self, x: torch.Tensor) -> torch.Tensor:
        """A copy of `x` with one random square per image set to `erase_value`."""
        b, _, h, w = x.shape
        side = erase_side(h, w, self.config.erase_fraction)
        tops = self.rng.integers(0, h - side + 1, size=b)
        lefts = self.rng.integers(0, w - side + 1, size=b)
        out = x.clone()
        for i, (top, left) in enumerate(zip(tops.tolist(), lefts.tolist(), strict=True)):
            out[i, :, top : top + side, left : left + side] = self.config.erase_value
        return out

    def training_loss(self, x: torch.Tensor, stage: str, phase: str) -> torch.Tensor:
        return self.reconstruction_loss(x, self.reconstruct(self.erase(x)))
