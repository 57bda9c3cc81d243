"""Simplex noise: deterministic per seed, zero on its lattice, bounded, smooth, fractal octaves."""

from __future__ import annotations

import numpy as np
import pytest

from medad.anomalies.simplex import (
    fractal_simplex_noise,
    simplex_noise,
    simplex_noise_patch,
    simplex_permutation,
)

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


@pytest.mark.parametrize("seed", range(5))
def test_rdpp_noise_patch_is_one_rectangle_of_the_published_size(seed):
    a = simplex_noise_patch((256, 256), np.random.default_rng(seed))
    b = simplex_noise_patch((256, 256), np.random.default_rng(seed))
    np.testing.assert_array_equal(a, b)
    rows, cols = np.nonzero(a)
    h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert 10 <= h < 32 and 10 <= w < 32 and rows.min() >= 1 and cols.min() >= 1
    assert np.count_nonzero(a) > 0.9 * h * w  # noise fills its rectangle
    # 0.2 × the unnormalised sum of 6 octaves (weights Σ 0.6^k ≈ 2.38), as the official code
    assert 0.02 < np.abs(a).max() <= 0.2 * sum(0.6**k for k in range(6))


def test_rdpp_noise_patch_keeps_its_proportions_at_other_sizes():
    sides = []
    for seed in range(20):
        rows, cols = np.nonzero(simplex_noise_patch((64, 64), np.random.default_rng(seed)))
        sides += [rows.max() - rows.min() + 1, cols.max() - cols.min() + 1]
    assert 2 <= min(sides) and max(sides) < 8
