"""AE: the plain convolutional autoencoder of MedIAnomaly (PAPER.md, method table, row "AE").

Trained with the mean squared error; the anomaly map is the per-pixel squared error (summed over
channels) and the image score is the mean of the map.
"""

from __future__ import annotations

from medad.methods.base import register
from medad.methods.parts.recon import AEConfig, ReconstructionAE

__all__ = ["AE", "AEConfig"]


@register("ae")
class AE(ReconstructionAE):
    """`ReconstructionAE` with all its defaults: the squared error is the AE's loss and map."""

    description = "Convolutional autoencoder, MSE loss, score = mean squared reconstruction error"
    Config = AEConfig
