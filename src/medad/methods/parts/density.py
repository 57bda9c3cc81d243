"""A Gaussian density of image embeddings, scored by the Mahalanobis distance.

The second stage of the two-stage self-supervised methods (CutPaste, Li et al. 2021, Sec. 3.3;
AnatPaste) and of the frozen ImageNet reference: fit one multivariate Gaussian to the embeddings
of the normal training images, then score a test image by how far its embedding lies from it.

* Embeddings are L2-normalised first (Li et al. 2021; MedIAnomaly's two-stage code normalises both
  the train and the test embeddings before fitting and scoring).
* The covariance uses Ledoit–Wolf shrinkage (Ledoit & Wolf 2004, via scikit-learn): a training
  set of a few hundred images has fewer samples than the 512 dimensions of a ResNet18 embedding,
  and the shrunk estimate stays invertible and well conditioned there.
* The score is the Mahalanobis *distance* sqrt((x − μ)ᵀ Σ⁻¹ (x − μ)), not its square, as in Li et
  al. and the reference implementations (both rank images identically; the distance is what is
  saved per run).

Mean and precision are buffers, so a fitted density travels in the method's checkpoint and moves
with `.to(device)`; fitting runs on the CPU in float64, scoring on any device in float32.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from medad.errors import MedadError


class GaussianDensity(nn.Module):
    """Gaussian fitted to (L2-normalised) embeddings of dimension `dim`; forward = distances."""

    mean: torch.Tensor
    precision: torch.Tensor
    n_samples: torch.Tensor

    def __init__(self, dim: int, normalize: bool = True) -> None:
        super().__init__()
        self.dim = dim
        #: L2-normalise embeddings before fitting and scoring (Li et al. 2021)
        self.normalize = normalize
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("precision", torch.eye(dim))
        #: how many embeddings the density was fitted on; 0 = not fitted yet
        self.register_buffer("n_samples", torch.zeros((), dtype=torch.long))

    @property
    def fitted(self) -> bool:
        return bool(self.n_samples.item() > 0)

    def _prepare(self, embeddings: torch.Tensor) -> torch.Tensor:
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise MedadError(
                f"GaussianDensity of dimension {self.dim} got embeddings of shape "
                f"{tuple(embeddings.shape)}; expected [N, {self.dim}]"
            )
        return F.normalize(embeddings, p=2, dim=1) if self.normalize else embeddings

    @torch.no_grad()
    def fit(self, embeddings: torch.Tensor) -> None:
        """Fit mean and Ledoit–Wolf precision to `embeddings` [N, dim] (N ≥ 2)."""
        if embeddings.shape[0] < 2:
            raise MedadError(
                f"GaussianDensity needs at least 2 training embeddings, got {embeddings.shape[0]}"
            )
        z = self._prepare(embeddings.detach().to("cpu", torch.float64)).numpy()
        if not np.isfinite(z).all():
            raise MedadError("GaussianDensity: non-finite training embeddings (training diverged?)")
        from sklearn.covariance import LedoitWolf  # lazy: start-up time

        lw = LedoitWolf().fit(z)
        self.mean.copy_(torch.from_numpy(lw.location_).to(self.mean.dtype))
        self.precision.copy_(torch.from_numpy(lw.precision_).to(self.precision.dtype))
        self.n_samples.fill_(z.shape[0])

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance of each embedding [N, dim] to the fitted Gaussian → [N]."""
        if not self.fitted:
            raise MedadError("GaussianDensity: call fit() on training embeddings before scoring")
        delta = self._prepare(embeddings.to(self.mean.dtype)) - self.mean
        squared = torch.einsum("nd,de,ne->n", delta, self.precision, delta)
        return squared.clamp_min(0.0).sqrt()
