"""AE-Grad: the plain AE scored by the input gradient of its loss (PAPER.md, row "AE-Grad").

Training is exactly `medad.methods.ae.AE`. The anomaly map is |∂ MSE(x, x̂(x)) / ∂x| (the full
derivative, through the network), summed over channels; the image score is the mean of the map.
MSE is taken per image (mean over its pixels), so an image's map does not depend on its batch;
MedIAnomaly differentiates the batch mean instead, which only rescales every map by 1 / batch size.
"""

from __future__ import annotations

import torch

from medad.methods.ae import AE
from medad.methods.base import register
from medad.methods.parts.gradients import gradient_map


@register("ae-grad")
class AEGrad(AE):
    description = "AE trained with MSE, map = |∂ MSE(x, x̂) / ∂x|, score = mean of the map"

    def per_image_mse(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared reconstruction error of each image: [B, C, H, W] → [B]."""
        return ((self.net(x) - x) ** 2).flatten(1).mean(dim=1)

    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        return gradient_map(self.per_image_mse, x)
