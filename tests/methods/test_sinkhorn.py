"""Debiased Sinkhorn divergence (RD++'s SSOT loss): exact on Diracs, ≈ ½|t|² for a translated
cloud, zero between a cloud and a permutation of it, and differentiable."""

from __future__ import annotations

import pytest
import torch

from medad.methods.parts.sinkhorn import epsilon_schedule, sinkhorn_divergence


def test_between_two_diracs_it_is_half_the_squared_distance():
    x, y = torch.randn(3, 1, 4), torch.randn(3, 1, 4)
    expected = (x - y).pow(2).sum(dim=(1, 2)) / 2
    torch.testing.assert_close(sinkhorn_divergence(x, y), expected, rtol=1e-4, atol=1e-5)


def test_a_translated_cloud_costs_about_half_the_squared_shift():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 40, 3, generator=gen)
    shift = torch.tensor([0.3, -0.2, 0.1])
    s = sinkhorn_divergence(x, x + shift, blur=0.01, scaling=0.9)
    expected = float(shift.pow(2).sum() / 2)  # Monge map: the translation itself
    assert s.tolist() == pytest.approx([expected] * 2, rel=0.05)


def test_it_is_zero_for_a_permuted_cloud_and_positive_otherwise():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 16, 8, generator=gen)
    perm = torch.randperm(16, generator=gen)
    assert sinkhorn_divergence(x, x[:, perm]).abs().max() < 1e-5
    # why RD++ pairs samples here: the official call hands geomloss the batch as ONE cloud of B
    # points and compares it with the same batch shuffled, which is this zero
    assert sinkhorn_divergence(x, torch.rand(2, 16, 8, generator=gen)).min() > 1e-2


def test_its_gradient_moves_one_cloud_towards_the_other():
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(1, 20, 2, generator=gen, requires_grad=True)
    y = torch.rand(1, 20, 2, generator=gen) + 1.0
    before = sinkhorn_divergence(x, y)
    before.sum().backward()
    with torch.no_grad():
        after = sinkhorn_divergence(x - 0.5 * x.grad * 20, y)
    assert torch.isfinite(x.grad).all() and after < before


def test_epsilon_decreases_geometrically_to_blur_squared():
    eps = epsilon_schedule(2.0, 0.05, 0.5)
    assert eps[0] == 4.0 and eps[-1] == pytest.approx(0.0025)
    assert all(a >= b for a, b in zip(eps, eps[1:], strict=False))
    assert eps[2] == pytest.approx(eps[1] / 4)
