"""The memory module of MemAE (Gong et al. 2019, "Memorizing normality to detect anomalies:
memory-augmented deep autoencoder for unsupervised anomaly detection", ICCV).

A query z (a latent vector) addresses N learned memory slots m_i: attention w = softmax(z · mᵢ),
then hard shrinkage keeps only the slots whose weight exceeds λ (Eq. 7, written with a ReLU so it
stays differentiable: ŵ = relu(w − λ) · w / (|w − λ| + ε)), the weights are re-normalised to sum to
one, and the output is ẑ = Σ ŵᵢ mᵢ. Normal codes are thereby forced onto combinations of a few
memorised normal prototypes. The entropy of ŵ is the sparsity loss of Eq. 10.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def hard_shrink_relu(w: torch.Tensor, threshold: float, eps: float = 1e-12) -> torch.Tensor:
    """Gong et al. 2019, Eq. 7: w where w > threshold, else 0 (for w ≥ 0), differentiably."""
    return F.relu(w - threshold) * w / ((w - threshold).abs() + eps)


def attention_entropy(att: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Mean over queries of −Σᵢ ŵᵢ log ŵᵢ (Gong et al. 2019, Eq. 10); `att` is [queries, slots]."""
    return -(att * torch.log(att + eps)).sum(dim=1).mean()


class Memory(nn.Module):
    """`slots` items of size `dim`; [B, dim] queries → (read-out [B, dim], attention [B, slots])."""

    def __init__(self, slots: int = 25, dim: int = 16, shrink_threshold: float = 0.0025) -> None:
        super().__init__()
        self.shrink_threshold = shrink_threshold
        bound = 1.0 / math.sqrt(dim)  # uniform init of a linear layer's weight, as in MemAE's code
        self.items = nn.Parameter(torch.empty(slots, dim).uniform_(-bound, bound))

    def attention(self, z: torch.Tensor) -> torch.Tensor:
        """Addressing weights [B, slots]: softmax, hard shrinkage, L1 re-normalisation."""
        att = F.softmax(z @ self.items.t(), dim=1)
        if self.shrink_threshold > 0:
            att = F.normalize(hard_shrink_relu(att, self.shrink_threshold), p=1, dim=1)
        return att

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        att = self.attention(z)
        return att @ self.items, att
