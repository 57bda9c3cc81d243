"""VAE: the MedIAnomaly backbone with a variational bottleneck (PAPER.md, method table, row "VAE").

Loss per image: MSE(x, x̂) + β · KL(q(z | x) ‖ N(0, I)) with β = 0.005, where the MSE is the mean
over the image's pixels and the KL the mean over the latent dimensions (both as in MedIAnomaly's
`VAELoss`; see `medad.methods.parts.variational.gaussian_kl`); a batch's loss is the mean over its
images. Training decodes a reparameterised sample z = μ + σ·ε.

Scoring decodes the posterior mean μ, so scores are deterministic: the anomaly map is the squared
error of that reconstruction (summed over channels) and the image score its mean. MedIAnomaly's
public code samples z at test time too, so its scores vary from run to run of the same model
(PAPER.md, "Known defects"); medad does not repeat that.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import Field

from medad.methods.ae import AEConfig
from medad.methods.base import MethodConfig, register
from medad.methods.parts.recon import ReconstructionAE
from medad.methods.parts.variational import VariationalAutoEncoder, gaussian_kl


class VAEConfig(AEConfig):
    kl_weight: float = Field(0.005, ge=0)
    """β, the weight of the KL term (PAPER.md and MedIAnomaly: 0.005, with the KL averaged over
    the latent dimensions)."""


@dataclass
class VAELosses:
    """Per-image terms of the loss, each [B], and the reconstruction they were computed from."""

    x_hat: torch.Tensor
    rec: torch.Tensor
    kl: torch.Tensor


@register("vae")
class VAE(ReconstructionAE):
    description = "Variational autoencoder (MSE + 0.005·KL), score = squared error of decoding μ"
    Config = VAEConfig
    config: VAEConfig

    def build_network(self, config: MethodConfig, channels: int) -> VariationalAutoEncoder:
        return VariationalAutoEncoder.from_config(config, channels)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The decoding of the posterior mean μ (deterministic; used for every score)."""
        return self.net(x, sample=False).x_hat

    def losses(self, x: torch.Tensor, sample: bool) -> VAELosses:
        """Per-image MSE and KL of `x`, decoding a posterior sample (`sample`) or μ."""
        out = self.net(x, sample=sample)
        rec = self.pixel_error(x, out.x_hat).flatten(1).mean(dim=1)
        return VAELosses(out.x_hat, rec, gaussian_kl(out.mu, out.log_var))

    def training_loss(self, x: torch.Tensor, stage: str, phase: str) -> dict[str, torch.Tensor]:
        terms = self.losses(x, sample=True)
        rec, kl = terms.rec.mean(), terms.kl.mean()
        return {"loss": rec + self.config.kl_weight * kl, "rec": rec.detach(), "kl": kl.detach()}
