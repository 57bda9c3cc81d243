"""ConstrAE: the AE with a latent-consistency constraint (PAPER.md, row "ConstrAE").

Chen & Konukoglu 2018, "Unsupervised detection of lesions in brain MRI using constrained
adversarial auto-encoders" (MIDL), ask that a reconstruction maps back to the latent code of its
input: loss = ‖x − x̂‖² + λ ‖E(x) − E(x̂)‖². Like the MedIAnomaly code, medad keeps the paper's AE,
drops the adversarial latent prior of the original, uses λ = 1 with both terms averaged over their
elements, and lets the gradient flow through both encoder passes. The score is the AE's: mean
squared error, map = squared error summed over channels.
"""

from __future__ import annotations

import torch
from pydantic import Field

from medad.methods.ae import AEConfig
from medad.methods.base import register
from medad.methods.parts.recon import ReconstructionAE


class ConstrAEConfig(AEConfig):
    latent_weight: float = Field(1.0, ge=0)
    """λ of the latent-consistency term mean((E(x) − E(x̂))²) (MedIAnomaly code: 1)."""


@register("constrae")
class ConstrAE(ReconstructionAE):
    description = "Autoencoder with latent consistency E(x) ≈ E(x̂), MSE score"
    Config = ConstrAEConfig

    def training_loss(self, x: torch.Tensor, stage: str, phase: str) -> dict[str, torch.Tensor]:
        z = self.net.encode(x)
        x_hat = self.net.decode(z)
        recon = self.reconstruction_loss(x, x_hat)
        latent = torch.mean((z - self.net.encode(x_hat)) ** 2)
        loss = recon + self.config.latent_weight * latent
        return {"loss": loss, "recon": recon.detach(), "latent": latent.detach()}
