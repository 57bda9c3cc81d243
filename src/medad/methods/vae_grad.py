"""VAE-Grad: a trained VAE scored by input gradients of its loss terms (PAPER.md, row "VAE-Grad").

Zimmerer et al., "Unsupervised anomaly localization using variational auto-encoders", MICCAI 2019:
the derivative of the ELBO (or of one of its terms) with respect to the input shows which pixels
make an image unlikely under the model. Four score rules on one model trained as in
`medad.methods.vae`:

- ``vae-grad-rec``: |∂ rec / ∂x|, rec = the image's MSE;
- ``vae-grad-kl``: |∂ KL / ∂x|;
- ``vae-grad-elbo``: |∂ (rec + β·KL) / ∂x|, the training loss (β = `kl_weight`);
- ``vae-grad-combi``: (x − x̂)² · |∂ KL / ∂x|, the paper's "combi" map.

All maps are summed over channels and the image score is the mean of the map. Losses are per image
(so a map does not depend on its batch) and use the posterior mean μ, never a sample, so scores are
deterministic (MedIAnomaly samples here too; PAPER.md, "Known defects").

Combi, as MedIAnomaly computes it (`VAELoss`, grad="combi"): the raw product, no smoothing and no
normalisation. Zimmerer et al.'s code additionally min-max normalises the KL gradient over the whole
batch and blurs it with a Gaussian (7×7, σ = 3) before multiplying by the pixel-wise negative
log-likelihood (½(x − x̂)² + const.); the batch normalisation makes an image's score depend on the
other images of its batch, so medad keeps MedIAnomaly's rule.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from medad.methods.base import register
from medad.methods.parts.gradients import input_gradient
from medad.methods.vae import VAE

Term = Literal["rec", "kl", "elbo"]


class VAEGrad(VAE):
    """Common part of the VAE-Grad variants: a VAE whose map is |∂ `term` / ∂x|."""

    term: ClassVar[Term] = "elbo"

    def loss_term(self, x: torch.Tensor, term: Term) -> torch.Tensor:
        """One per-image loss term [B] at the posterior mean."""
        terms = self.losses(x, sample=False)
        if term == "rec":
            return terms.rec
        if term == "kl":
            return terms.kl
        return terms.rec + self.config.kl_weight * terms.kl

    def term_gradient(self, x: torch.Tensor, term: Term) -> torch.Tensor:
        """|∂ term / ∂x| per pixel and channel, [B, C, H, W]."""
        return input_gradient(lambda inp: self.loss_term(inp, term), x).abs()

    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.term_gradient(x, self.term).sum(dim=1)


@register("vae-grad-rec")
class VAEGradRec(VAEGrad):
    description = "VAE, map = |∂ MSE / ∂x| at the posterior mean (Zimmerer et al. 2019)"
    term = "rec"


@register("vae-grad-kl")
class VAEGradKL(VAEGrad):
    description = "VAE, map = |∂ KL / ∂x| at the posterior mean (Zimmerer et al. 2019)"
    term = "kl"


@register("vae-grad-elbo")
class VAEGradELBO(VAEGrad):
    description = "VAE, map = |∂ (MSE + β·KL) / ∂x| at the posterior mean (Zimmerer et al. 2019)"
    term = "elbo"


@register("vae-grad-combi")
class VAEGradCombi(VAEGrad):
    description = "VAE, map = (x − x̂)² · |∂ KL / ∂x| at the posterior mean (Zimmerer et al. 2019)"
    term = "kl"

    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        error = self.pixel_error(x, self.reconstruct(x))
        return (error * self.term_gradient(x, "kl")).sum(dim=1)
