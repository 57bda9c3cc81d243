"""AE-ℓ1: the paper's AE trained and scored with the absolute error (PAPER.md, row "AE-ℓ1").

MedIAnomaly (Cai et al. 2025, Sec. "distance functions") swaps the AE's ℓ2 distance for ℓ1; the
network and all other hyper-parameters are the AE's. Map = |x − x̂| summed over channels (the public
code averages over channels; identical for grayscale), image score = mean of the map.
"""

from __future__ import annotations

import torch

from medad.methods.ae import AEConfig
from medad.methods.base import register
from medad.methods.parts.recon import ReconstructionAE


class AEL1Config(AEConfig):
    """The AE's hyper-parameters; ℓ1 adds none."""


@register("ae-l1")
class AEL1(ReconstructionAE):
    description = "Convolutional autoencoder, L1 loss, score = mean absolute reconstruction error"
    Config = AEL1Config

    def pixel_error(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return (x_hat - x).abs()
