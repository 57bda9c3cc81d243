"""Multi-scale cosine maps and their Gaussian smoothing against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from medad.methods.parts.feature_maps import gaussian_smooth, multiscale_map


def _bilinear_aligned(m: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resampling with corners aligned, written out point by point."""
    h, w = m.shape
    out = np.empty((size, size))
    for i in range(size):
        for j in range(size):
            y, x = i * (h - 1) / (size - 1), j * (w - 1) / (size - 1)
            y0, x0 = min(int(y), h - 2), min(int(x), w - 2)
            dy, dx = y - y0, x - x0
            out[i, j] = (
                m[y0, x0] * (1 - dy) * (1 - dx)
                + m[y0 + 1, x0] * dy * (1 - dx)
                + m[y0, x0 + 1] * (1 - dy) * dx
                + m[y0 + 1, x0 + 1] * dy * dx
            )
    return out


@pytest.mark.parametrize("combine", ["sum", "product"])
def test_multiscale_map_equals_the_definition(combine):
    gen = torch.Generator().manual_seed(0)
    shapes = [(3, 8, 8), (5, 4, 4), (7, 2, 2)]
    a = [torch.randn(2, *s, generator=gen, dtype=torch.float64) for s in shapes]
    b = [torch.randn(2, *s, generator=gen, dtype=torch.float64) for s in shapes]
    got = multiscale_map(a, b, (16, 16), combine).numpy()
    for n in range(2):
        expected = np.zeros((16, 16)) if combine == "sum" else np.ones((16, 16))
        for x, y in zip(a, b, strict=True):
            fx, fy = x[n].numpy(), y[n].numpy()
            cos = (fx * fy).sum(0) / np.linalg.norm(fx, axis=0) / np.linalg.norm(fy, axis=0)
            up = _bilinear_aligned(1 - cos, 16)
            expected = expected + up if combine == "sum" else expected * up
        np.testing.assert_allclose(got[n], expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(("size", "sigma"), [(64, 4.0), (20, 4.0), (33, 1.5)])
def test_gaussian_smooth_equals_scipy(size, sigma):
    maps = torch.rand(
        3, size, size, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    got = gaussian_smooth(maps, sigma).numpy()
    for n in range(3):
        np.testing.assert_allclose(got[n], gaussian_filter(maps[n].numpy(), sigma), atol=1e-10)
    assert gaussian_smooth(maps, 0.0) is maps
