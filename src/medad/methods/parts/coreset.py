"""Coreset subsampling of a patch-feature memory bank (PatchCore, Roth et al. CVPR 2022, Sec. 3.2).

PatchCore keeps a subset of the normal patch features that covers all of them: greedy k-center
selection (Sener & Savarese, ICLR 2018; PatchCore Algorithm 1) starts from one point and then
repeatedly adds the point farthest from everything picked so far, which keeps the covering radius
(the largest distance of any feature to its nearest pick) within twice the optimum (Gonzalez
1985). Distances are computed on random projections of the features to `PROJECTION_DIM`
dimensions (PatchCore Sec. 3.2, Johnson–Lindenstrauss: distances are kept up to a small factor;
the official code projects to 128), which makes each greedy step cheap.

The projection here is the "very sparse" random projection of Li, Hastie & Church (KDD 2006):
entries ±√(1/(ρ·k)) with probability ρ/2 each and 0 otherwise, ρ = 1/√d, so squared norms are
preserved in expectation.
"""

from __future__ import annotations

import math

import torch

from medad.errors import MedadError

#: dimension of the random projection used for selection (PatchCore code: 128)
PROJECTION_DIM = 128


def coreset_size(n: int, ratio: float) -> int:
    """How many of `n` features a coreset of `ratio` keeps (at least one; PatchCore: ⌊n·ratio⌋)."""
    if not 0 < ratio <= 1:
        raise MedadError(f"coreset ratio must be in (0, 1], got {ratio}")
    return max(1, min(n, int(n * ratio)))


def sparse_random_projection(dim_in: int, dim_out: int, generator: torch.Generator) -> torch.Tensor:
    """A [dim_in, dim_out] very sparse random projection (Li et al. 2006), seeded by `generator`."""
    density = 1.0 / math.sqrt(dim_in)
    keep = torch.rand(dim_in, dim_out, generator=generator) < density
    signs = torch.randint(0, 2, (dim_in, dim_out), generator=generator) * 2 - 1
    return keep * signs * math.sqrt(1.0 / (density * dim_out))


def greedy_k_center(features: torch.Tensor, k: int, start: int = 0) -> torch.Tensor:
    """Indices [k] of a greedy k-center selection from `features` [N, D] (PatchCore Alg. 1).

    The first pick is `start`; each further pick is the feature with the largest (Euclidean)
    distance to its nearest earlier pick. One matrix-vector product per pick, so the cost is
    O(N·D·k) time and O(N) memory beyond the features.
    """
    n = features.shape[0]
    if not 1 <= k <= n:
        raise MedadError(f"cannot pick {k} of {n} features for a coreset")
    squared = features.pow(2).sum(dim=1)
    nearest = torch.full((n,), math.inf, dtype=features.dtype, device=features.device)
    step = torch.empty_like(nearest)
    picks = torch.empty(k, dtype=torch.long)
    pick = start
    for i in range(k):
        picks[i] = pick
        # ‖f − f_pick‖² = ‖f‖² − 2 f·f_pick + ‖f_pick‖²
        torch.mv(features, features[pick], out=step)
        step.mul_(-2).add_(squared).add_(squared[pick]).clamp_(min=0)
        torch.minimum(nearest, step, out=nearest)
        nearest[pick] = 0  # rounding must not let a picked point be picked again
        pick = int(torch.argmax(nearest))
    return picks
