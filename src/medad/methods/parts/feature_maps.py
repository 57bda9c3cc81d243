"""Anomaly maps from pairs of multi-scale feature maps (teacher vs rebuilt), as RD and its kin.

Reverse distillation (Deng & Li, "Anomaly Detection via Reverse Distillation from One-Class
Embedding", CVPR 2022, Sec. 3.4; code hq-deng/RD4AD ``test.py``, ``cal_anomaly_map``) scores a
position of each scale by 1 − cos(f_teacher, f_student) over its channels, upsamples every scale's
map bilinearly (corners aligned) to the input size, adds them (or multiplies: the code's ``mul``
mode), and smooths the sum with a Gaussian of σ = 4 (scipy's ``gaussian_filter``: kernel truncated
at 4 σ, borders reflected half-sample). The image score is the map's maximum. RD++ and ReContrast
score the same way; each method picks its combination and score rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

Combine = Literal["sum", "product"]


def cosine_distance_maps(
    a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """1 − cosine similarity over channels, per scale: [B, C_i, h_i, w_i] pairs → [B, h_i, w_i]."""
    return [1 - F.cosine_similarity(x, y, dim=1) for x, y in zip(a, b, strict=True)]


def multiscale_map(
    a: Sequence[torch.Tensor],
    b: Sequence[torch.Tensor],
    size: tuple[int, int],
    combine: Combine = "sum",
    align_corners: bool = True,
) -> torch.Tensor:
    """Per-scale 1 − cos maps upsampled to `size` (bilinear, corners aligned unless
    `align_corners` is False: STFPM's code) and combined."""
    maps = [
        F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=align_corners)[:, 0]
        for m in cosine_distance_maps(a, b)
    ]
    out = maps[0]
    for m in maps[1:]:
        out = out + m if combine == "sum" else out * m
    return out


def _reflect_indices(n: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices of a length-`n` axis padded by `radius` with scipy's half-sample reflection."""
    i = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def gaussian_smooth(maps: torch.Tensor, sigma: float = 4.0, truncate: float = 4.0) -> torch.Tensor:
    """Gaussian smoothing of maps [B, H, W] as ``scipy.ndimage.gaussian_filter(m, sigma)`` per map
    (separable kernel of radius ⌊truncate·σ + ½⌋, borders reflected half-sample); σ = 0: as is."""
    if sigma <= 0:
        return maps
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, device=maps.device, dtype=maps.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    h, w = maps.shape[-2:]
    out = maps[:, _reflect_indices(h, radius, maps.device)]
    out = out[:, :, _reflect_indices(w, radius, maps.device)][:, None]
    out = F.conv2d(out, kernel.view(1, 1, -1, 1))
    out = F.conv2d(out, kernel.view(1, 1, 1, -1))
    return out[:, 0]
