"""Simplex noise: deterministic per seed, zero on its lattice, bounded, smooth, fractal octaves."""

from __future__ import annotations

import numpy as np
import pytest

from medad.anomalies.simplex import fractal_simplex_noise, simplex_noise, simplex_permutation

G2 = (3 - np.sqrt(3)) / 6


def test_same_seed_same_noise_other_seed_other_noise():
    a = fractal_simplex_noise((32, 48), np.random.default_rng(3))
    b = fractal_simplex_noise((32, 48), np.random.default_rng(3))
    c = fractal_simplex_noise((32, 48), np.random.default_rng(4))
    assert a.shape == (32, 48) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_zero_on_the_lattice_bounded_and_smooth():
    perm = simplex_permutation(np.random.default_rng(0))
    i, j = np.meshgrid(np.arange(-5, 6), np.arange(-5, 6), indexing="ij")
    x, y = i - (i + j) * G2, j - (i + j) * G2  # lattice vertices, unskewed
    np.testing.assert_allclose(simplex_noise(y, x, perm), 0.0, atol=1e-12)
    grid = np.random.default_rng(1).uniform(-50, 50, size=(2, 20000))
    values = simplex_noise(grid[0], grid[1], perm)
    assert np.abs(values).max() <= 1.0 and values.std() > 0.1
    step = simplex_noise(grid[0] + 1e-4, grid[1], perm) - values
    assert np.abs(step).max() < 1e-2  # continuous: a tiny move changes it a tiny amount


def test_octaves_add_detail_and_bad_parameters_are_refused():
    rng = np.random.default_rng
    smooth = fractal_simplex_noise((64, 64), rng(0), scale=32, octaves=1)
    detailed = fractal_simplex_noise((64, 64), rng(0), scale=32, octaves=6)

    def roughness(a):
        return np.abs(np.diff(a, axis=1)).mean() / a.std()

    assert roughness(detailed) > 1.5 * roughness(smooth)
    with pytest.raises(ValueError, match="positive"):
        fractal_simplex_noise((8, 8), rng(0), octaves=0)
