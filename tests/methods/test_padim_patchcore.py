"""PaDiM and PatchCore: fitted statistics against hand computations, checkpoints, ranking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medad import engine
from medad.errors import MedadError
from medad.evaluation import evaluate
from medad.methods.base import build_config, method_class
from medad.methods.padim import PositionGaussians
from tests.methods.common import train_and_predict

#: random-init backbones at 64 px: a few seconds each on two cores
PADIM = {"weights": "random", "image_size": 64}
PATCHCORE = {"weights": "random", "backbone": "resnet18", "image_size": 64, "embed_dimension": 256}


def _build(name: str, overrides: dict) -> torch.nn.Module:
    cls = method_class(name)
    return engine.create_method(cls, build_config(cls, overrides), 1, 0)


# --- PaDiM ----------------------------------------------------------------------------------


def test_position_gaussians_match_numpy_cov_and_mahalanobis():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(30, 4, 2, 3)) * rng.uniform(0.5, 2, size=(1, 4, 1, 1)) + 5
    test = rng.normal(size=(3, 4, 2, 3)) * 2 + 5
    gauss = PositionGaussians()
    gauss.fit(iter(torch.tensor(train).split(7)), epsilon=0.01)  # streamed in uneven batches
    got = gauss(torch.tensor(test, dtype=torch.float32)).numpy()
    for p in range(6):
        i, j = divmod(p, 3)
        cov = np.cov(train[:, :, i, j], rowvar=False) + 0.01 * np.eye(4)
        delta = test[:, :, i, j] - train[:, :, i, j].mean(axis=0)
        want = np.sqrt(np.einsum("nd,de,ne->n", delta, np.linalg.inv(cov), delta))
        np.testing.assert_allclose(got[:, i, j], want, rtol=1e-4)


def test_position_gaussians_refuse_scoring_before_fit_and_one_image():
    with pytest.raises(MedadError, match="fit the Gaussians"):
        PositionGaussians()(torch.zeros(1, 2, 2, 2))
    with pytest.raises(MedadError, match="at least 2"):
        PositionGaussians().fit(iter([torch.zeros(1, 2, 2, 2)]), 0.01)


def test_padim_keeps_a_fixed_random_subset_of_the_papers_size():
    a, b = _build("padim", PADIM), _build("padim", {**PADIM, "subset_seed": 1})
    assert len(a.channel_subset) == 100 and int(a.channel_subset.max()) < 64 + 128 + 256
    assert torch.equal(a.channel_subset, _build("padim", PADIM).channel_subset)
    assert not torch.equal(a.channel_subset, b.channel_subset)
    with pytest.raises(MedadError, match="only 448 channels"):
        _build("padim", {**PADIM, "reduced_dim": 500})


def test_padim_ranks_planted_lesions_above_normals_with_maps():
    method, pred = train_and_predict("padim", PADIM)
    metrics = evaluate(pred)
    assert metrics["image_auroc"] > 0.6 and metrics["pixel_auroc"] > 0.6, metrics
    assert method.gaussians.mean.shape == (16 * 16, 100)  # layer 1 of a 64 px input


# --- PatchCore ------------------------------------------------------------------------------


def test_patchcore_ranks_planted_lesions_above_normals_with_maps():
    method, pred = train_and_predict("patchcore", PATCHCORE)
    metrics = evaluate(pred)
    assert metrics["image_auroc"] > 0.6 and metrics["pixel_auroc"] > 0.6, metrics
    # 96 training images × 8 × 8 layer-2 patches, 10 % kept
    assert method.bank.features.shape == (int(96 * 64 * 0.1), 256)


def test_patchcore_image_score_is_eq7_by_brute_force():
    method, _ = train_and_predict("patchcore", PATCHCORE, data_options=_TINY)
    x = torch.rand(3, 1, 64, 64)
    out = method.score(x)
    bank = method.bank.features.double()
    z = method.patch_features(x).double().flatten(2).transpose(1, 2)  # [B, P, D]
    for img in range(3):
        to_bank = torch.cdist(z[img], bank)  # [P, M]
        nearest, which = to_bank.min(dim=1)
        s_star, patch = nearest.max(dim=0)
        m_star = bank[which[patch]]
        support = torch.cdist(m_star[None], bank)[0].topk(9, largest=False).indices
        weights = torch.exp(torch.cdist(z[img, patch][None], bank[support])[0])
        want = (1 - torch.exp(s_star) / weights.sum()) * s_star
        assert float(out.image_scores[img]) == pytest.approx(float(want), rel=1e-3)
    plain = _build("patchcore", {**PATCHCORE, "reweight": False})
    plain.load_state_dict(method.state_dict())
    assert torch.all(out.image_scores <= plain.score(x).image_scores + 1e-6)


_TINY = {"n_train": 16, "n_test_normal": 2, "n_test_abnormal": 2, "size": 64}


def test_patchcore_float16_bank_keeps_the_same_coreset():
    full, _ = train_and_predict("patchcore", PATCHCORE, data_options=_TINY)
    half, _ = train_and_predict(
        "patchcore", {**PATCHCORE, "bank_dtype": "float16"}, data_options=_TINY
    )
    assert half.bank.features.dtype == torch.float16
    torch.testing.assert_close(half.bank.features.float(), full.bank.features, rtol=1e-3, atol=1e-3)
    x = torch.rand(2, 1, 64, 64)
    torch.testing.assert_close(half.score(x).maps, full.score(x).maps, rtol=1e-2, atol=1e-2)


def test_patchcore_refuses_even_patch_sizes_and_scoring_before_fit():
    with pytest.raises(MedadError, match="patch_size"):
        build_config(method_class("patchcore"), {"patch_size": 2})
    with pytest.raises(MedadError, match="fit the memory bank"):
        _build("patchcore", PATCHCORE).score(torch.rand(1, 1, 64, 64))


# --- both -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "overrides"), [("padim", PADIM), ("patchcore", PATCHCORE)])
def test_checkpoint_holds_the_fitted_state_not_the_backbone(name, overrides):
    method, _ = train_and_predict(name, overrides, data_options=_TINY)
    state = method.state_dict()
    assert not any(k.startswith("backbone") for k in state), list(state)
    restored = _build(name, overrides)
    restored.load_state_dict(state)
    restored.eval()
    x = torch.rand(2, 1, 64, 64)
    a, b = method.score(x), restored.score(x)
    torch.testing.assert_close(a.image_scores, b.image_scores)
    torch.testing.assert_close(a.maps, b.maps)
