"""The SSIM map against a direct per-pixel computation of Wang et al.'s formula."""

from __future__ import annotations

import numpy as np
import torch

from medad.methods.parts.ssim import gaussian_window, ssim_map


def _direct_ssim(x: np.ndarray, y: np.ndarray, size: int = 11, sigma: float = 1.5) -> np.ndarray:
    w = gaussian_window(size, sigma, dtype=torch.float64).numpy()
    pad = size // 2
    xp, yp = np.pad(x, pad, mode="reflect"), np.pad(y, pad, mode="reflect")
    out = np.empty_like(x)
    c1, c2 = 0.01**2, 0.03**2
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            a, b = xp[i : i + size, j : j + size], yp[i : i + size, j : j + size]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * a * a).sum() - ma**2, (w * b * b).sum() - mb**2
            cov = (w * a * b).sum() - ma * mb
            out[i, j] = ((2 * ma * mb + c1) * (2 * cov + c2)) / (
                (ma**2 + mb**2 + c1) * (va + vb + c2)
            )
    return out


def test_ssim_map_matches_the_direct_formula():
    rng = np.random.default_rng(0)
    x = rng.random((20, 24))
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    got = ssim_map(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None])[0].numpy()
    np.testing.assert_allclose(got, _direct_ssim(x, y), atol=1e-10)


def test_ssim_of_an_image_with_itself_is_one_and_it_is_differentiable():
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(ssim_map(x, x), torch.ones(2, 16, 16, dtype=torch.float64))
    y = torch.rand_like(x, requires_grad=True)
    (1 - ssim_map(x, y)).mean().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()
