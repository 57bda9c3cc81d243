"""PatchCore's parts: greedy k-center coreset, sparse random projection, chunked k-NN search."""

from __future__ import annotations

import itertools
import sys
import types

import numpy as np
import pytest
import torch

from medad.errors import MedadError
from medad.methods.parts.coreset import (
    coreset_size,
    greedy_k_center,
    sparse_random_projection,
)
from medad.methods.parts.nearest_neighbours import nearest_neighbours


def _covering_radius(points: torch.Tensor, centres: torch.Tensor) -> float:
    return float(torch.cdist(points, points[centres]).min(dim=1).values.max())


@pytest.mark.parametrize(("seed", "k", "start"), [(0, 3, 0), (1, 4, 5), (2, 2, 11)])
def test_greedy_k_center_is_within_twice_the_optimal_covering_radius(seed, k, start):
    points = torch.from_numpy(np.random.default_rng(seed).normal(size=(12, 2)))
    picks = greedy_k_center(points, k, start)
    optimum = min(
        _covering_radius(points, torch.tensor(subset))
        for subset in itertools.combinations(range(12), k)
    )
    assert len(set(picks.tolist())) == k and picks[0] == start
    assert _covering_radius(points, picks) <= 2 * optimum + 1e-12


def test_each_greedy_pick_is_the_point_farthest_from_the_earlier_picks():
    points = torch.from_numpy(np.random.default_rng(3).normal(size=(200, 5)))
    picks = greedy_k_center(points, 20, start=7)
    for i in range(1, 20):
        nearest = torch.cdist(points, points[picks[:i]]).min(dim=1).values
        assert float(nearest[picks[i]]) == pytest.approx(float(nearest.max()), rel=1e-9)


def test_greedy_k_center_refuses_impossible_sizes():
    with pytest.raises(MedadError, match="cannot pick 5 of 4"):
        greedy_k_center(torch.zeros(4, 2), 5)


@pytest.mark.parametrize(("n", "ratio", "size"), [(1000, 0.01, 10), (1000, 0.1, 100), (7, 0.1, 1)])
def test_coreset_size_follows_the_ratio(n, ratio, size):
    assert coreset_size(n, ratio) == size


@pytest.mark.parametrize("ratio", [0.0, 1.5])
def test_coreset_size_refuses_bad_ratios(ratio):
    with pytest.raises(MedadError, match="coreset ratio"):
        coreset_size(100, ratio)


def test_sparse_random_projection_keeps_distances_roughly():
    gen = torch.Generator().manual_seed(0)
    proj = sparse_random_projection(1024, 128, gen)
    density = float((proj != 0).float().mean())
    assert density == pytest.approx(1 / 32, rel=0.1)  # ρ = 1/√1024
    x = torch.randn(50, 1024, generator=gen)
    ratio = torch.pdist(x @ proj) / torch.pdist(x)
    assert 0.97 < float(ratio.pow(2).mean()) < 1.03  # squared distances kept in expectation
    assert 0.6 < float(ratio.min()) and float(ratio.max()) < 1.4
    again = sparse_random_projection(1024, 128, torch.Generator().manual_seed(0))
    assert torch.equal(proj, again)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_chunked_search_matches_brute_force(k, dtype):
    gen = torch.Generator().manual_seed(0)
    queries, bank = torch.randn(37, 16, generator=gen), torch.randn(53, 16, generator=gen)
    bank = bank.to(dtype)
    dist, idx = nearest_neighbours(queries, bank, k, chunk=10, search="torch")
    want_d, want_i = torch.cdist(queries, bank.float()).topk(k, dim=1, largest=False)
    assert torch.equal(idx, want_i)
    torch.testing.assert_close(dist, want_d, rtol=1e-4, atol=1e-4)


def test_search_uses_faiss_when_importable(monkeypatch):
    calls = []

    class IndexFlatL2:  # the part of faiss's API medad uses, by brute force
        def __init__(self, dim):
            self.dim, self.data = dim, None

        def add(self, data):
            calls.append(data.dtype)
            self.data = data

        def search(self, queries, k):
            d = ((queries[:, None] - self.data[None]) ** 2).sum(-1)
            i = np.argsort(d, axis=1)[:, :k]
            return np.take_along_axis(d, i, axis=1), i

    monkeypatch.setitem(sys.modules, "faiss", types.SimpleNamespace(IndexFlatL2=IndexFlatL2))
    queries, bank = torch.randn(9, 4), torch.randn(20, 4).half()
    got = nearest_neighbours(queries, bank, 2)
    want = nearest_neighbours(queries, bank, 2, search="torch")
    assert calls == [np.float32]
    assert torch.equal(got[1], want[1])
    torch.testing.assert_close(got[0], want[0], rtol=1e-3, atol=1e-3)


def test_faiss_search_without_faiss_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss → ImportError
    with pytest.raises(MedadError, match="pip install faiss-cpu"):
        nearest_neighbours(torch.randn(2, 3), torch.randn(4, 3), search="faiss")
    assert nearest_neighbours(torch.randn(2, 3), torch.randn(4, 3))[0].shape == (2, 1)


def test_search_refuses_mismatched_shapes():
    with pytest.raises(MedadError, match=r"\[Q, D\]"):
        nearest_neighbours(torch.randn(2, 3), torch.randn(4, 5))
    with pytest.raises(MedadError, match="k = 5"):
        nearest_neighbours(torch.randn(2, 3), torch.randn(4, 3), 5)
