"""Debiased Sinkhorn divergence between point clouds, batched, with ε-scaling (optimal transport).

The entropic OT loss of RD++'s self-supervised optimal-transport (SSOT) compactness term (Tien et
al., CVPR 2023, Sec. 3.2), which the official code computes with ``geomloss.SamplesLoss("sinkhorn",
p=2, blur=0.05, scaling=0.95, debias=True)``. Written here in plain torch after the algorithm that
loss documents (Feydy et al., "Interpolating between Optimal Transport and MMD using Sinkhorn
Divergences", AISTATS 2019; Feydy's thesis, 2020, Sec. 3.3.3):

* cost C(x, y) = ½‖x − y‖² (geomloss's ``p=2``), uniform weights on each cloud;
* S_ε(α, β) = OT_ε(α, β) − ½ OT_ε(α, α) − ½ OT_ε(β, β) (debiased: S_ε(α, α) = 0), with
  ε = blur², written with the dual potentials as ⟨α, f_βα − f_αα⟩ + ⟨β, g_αβ − g_ββ⟩;
* ε-scaling: one symmetric (averaged) log-domain Sinkhorn update per temperature, ε going from
  diameter² down to blur² by factors of scaling²;
* gradients by the envelope theorem: the iterations run without autograd, then one last update
  at ε = blur² is differentiated through the costs only (geomloss's "last extrapolation").
"""

from __future__ import annotations

import math

import torch


def squared_cost(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """½‖x_i − y_j‖² of clouds [B, N, D] and [B, M, D] → [B, N, M] (smooth at 0, unlike cdist)."""
    dots = x @ y.transpose(1, 2)
    sq = x.pow(2).sum(-1)[:, :, None] + y.pow(2).sum(-1)[:, None, :] - 2 * dots
    return sq.clamp_min(0) / 2


def _softmin(eps: float, cost: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """−ε log Σ_j exp(h_j − C_ij / ε) for costs [B, N, M] and log-weights + potentials h [B, M]."""
    return -eps * torch.logsumexp(h[:, None, :] - cost / eps, dim=2)


def epsilon_schedule(diameter: float, blur: float, scaling: float) -> list[float]:
    """Temperatures from diameter² down to blur², each scaling² times the last (geomloss's)."""
    start, stop, step = 2 * math.log(diameter), 2 * math.log(blur), 2 * math.log(scaling)
    steps = max(0, math.ceil((stop - start) / step))
    return [diameter**2] + [math.exp(start + k * step) for k in range(steps)] + [blur**2]


def sinkhorn_divergence(
    x: torch.Tensor,
    y: torch.Tensor,
    blur: float = 0.05,
    scaling: float = 0.95,
    diameter: float | None = None,
) -> torch.Tensor:
    """S_ε between each pair of equal-sized clouds x[b] and y[b] [N, D] (see module) → [B].

    `blur` is ε's square root at the end (geomloss: 0.05 in RD++), `scaling` the factor of ε's
    square root per iteration (0.95 in RD++: more iterations, more accuracy); `diameter` the
    largest distance between points, taken from the data when None. The four transport problems
    (x→y, y→x, x→x, y→y) run stacked, one batched update per iteration.
    """
    if x.ndim != 3 or x.shape != y.shape:
        raise ValueError(
            f"sinkhorn_divergence: two clouds [B, N, D] of one shape, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    if not 0 < scaling < 1 or blur <= 0:
        raise ValueError("sinkhorn_divergence: need blur > 0 and 0 < scaling < 1")
    b, n = x.shape[:2]
    log_w = -math.log(n)  # uniform weights
    partner = torch.arange(4 * b, device=x.device).view(4, b)[[1, 0, 2, 3]].flatten()

    def costs(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        c_xy = squared_cost(u, v)
        return torch.cat([c_xy, c_xy.transpose(1, 2), squared_cost(u, u), squared_cost(v, v)])

    with torch.no_grad():
        xd, yd = x.detach(), y.detach()
        if diameter is None:
            both = torch.cat([xd, yd], dim=1)
            span = both.amax(dim=(0, 1)) - both.amin(dim=(0, 1))
            diameter = max(float(span.norm()), blur)
        cost = costs(xd, yd)
        schedule = epsilon_schedule(diameter, blur, scaling)
        # potentials, stacked: f_βα, g_αβ (the pair), f_αα, g_ββ (the debiasing self terms)
        pot = _softmin(schedule[0], cost, torch.full(cost.shape[:2], log_w).to(cost))
        for eps in schedule:
            pot = (pot + _softmin(eps, cost, log_w + pot[partner] / eps)) / 2
    eps = blur**2
    pot = _softmin(eps, costs(x, y), log_w + pot[partner] / eps)
    f_ba, g_ab, f_aa, g_bb = pot.view(4, b, n).mean(dim=2)
    return f_ba - f_aa + g_ab - g_bb
