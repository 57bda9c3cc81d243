"""The SSIM map (Wang et al. 2004) as a differentiable torch function.

Gaussian window of 11 pixels, σ = 1.5, constants C1 = (0.01 L)², C2 = (0.03 L)² for data range L
(PAPER.md: AE-SSIM trains and scores with 1 − SSIM on images in [0, 1]). The map has the input's
size: borders are reflected, so every pixel gets a score. Channels are treated separately and the
map is averaged over them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_window(size: int = 11, sigma: float = 1.5, device=None, dtype=None) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype or torch.float32) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim_map(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
) -> torch.Tensor:
    """Per-pixel SSIM of `x` and `y` ([B, C, H, W]) → [B, H, W] (mean over channels)."""
    if x.shape != y.shape:
        raise ValueError(f"ssim_map: shapes differ, {tuple(x.shape)} vs {tuple(y.shape)}")
    c = x.shape[1]
    w = gaussian_window(window_size, sigma, x.device, x.dtype).expand(c, 1, -1, -1)
    pad = window_size // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (pad, pad, pad, pad), mode="reflect"), w, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return s.mean(dim=1)
