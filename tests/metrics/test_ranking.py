"""AUROC and AP, per image and per pixel, against scikit-learn (ties included)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from medad.metrics import image_ap, image_auroc, pixel_ap, pixel_auroc

TOLERANCE = 1e-12


@st.composite
def scores_and_labels(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Both classes present; scores from few distinct values (heavy ties) or continuous."""
    n = draw(st.integers(2, 60))
    labels = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    labels[0], labels[1] = True, False
    if draw(st.booleans()):
        scores = np.array(draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), float)
    else:
        values = st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False)
        scores = np.array(draw(st.lists(values, min_size=n, max_size=n)))
    return scores, labels


@settings(max_examples=60, derandomize=True, deadline=None)
@given(scores_and_labels())
def test_image_metrics_equal_sklearn(case: tuple[np.ndarray, np.ndarray]) -> None:
    scores, labels = case
    assert image_auroc(scores, labels) == pytest.approx(
        roc_auc_score(labels, scores), abs=TOLERANCE
    )
    assert image_ap(scores, labels) == pytest.approx(
        average_precision_score(labels, scores), abs=TOLERANCE
    )


@pytest.mark.parametrize("n", [3, 10, 999, 5000])
@pytest.mark.parametrize("positive_rate", [0.05, 0.5, 0.95])
def test_image_metrics_equal_sklearn_both_search_directions(n: int, positive_rate: float) -> None:
    # A positive rate above one half makes the AUROC count from the negatives' side.
    rng = np.random.default_rng(n)
    labels = rng.random(n) < positive_rate
    labels[:2] = [True, False]
    scores = rng.normal(size=n).round(1) + labels
    assert image_auroc(scores, labels) == pytest.approx(
        roc_auc_score(labels, scores), abs=TOLERANCE
    )
    assert image_ap(scores, labels) == pytest.approx(
        average_precision_score(labels, scores), abs=TOLERANCE
    )


def test_all_equal_scores_give_chance_auroc_and_prevalence_ap() -> None:
    labels = np.array([1, 0, 0, 1, 0])
    scores = np.full(5, 0.7)
    assert image_auroc(scores, labels) == 0.5
    assert image_ap(scores, labels) == pytest.approx(0.4, abs=TOLERANCE)
    assert image_ap(scores, labels) == pytest.approx(
        average_precision_score(labels, scores), abs=TOLERANCE
    )


def test_perfect_and_inverted_ranking() -> None:
    labels = np.array([0, 0, 1, 1])
    assert image_auroc([0.1, 0.2, 0.3, 0.4], labels) == 1.0
    assert image_auroc([0.4, 0.3, 0.2, 0.1], labels) == 0.0
    assert image_ap([0.1, 0.2, 0.3, 0.4], labels) == 1.0


def test_integer_and_bool_inputs() -> None:
    assert image_auroc(np.array([0, 1, 2, 3]), [False, True, False, True]) == pytest.approx(
        roc_auc_score([0, 1, 0, 1], [0, 1, 2, 3])
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("decimals", [1, None])
def test_pixel_metrics_equal_sklearn_on_flattened_arrays(
    make_maps, seed: int, decimals: int | None
) -> None:
    maps, masks = make_maps(seed, n_images=6, size=16, decimals=decimals)
    flat_maps, flat_masks = maps.ravel(), masks.ravel()
    assert pixel_auroc(maps, masks) == pytest.approx(
        roc_auc_score(flat_masks, flat_maps), abs=TOLERANCE
    )
    assert pixel_ap(maps, masks) == pytest.approx(
        average_precision_score(flat_masks, flat_maps), abs=TOLERANCE
    )


def test_pixel_metrics_keep_float32_values(make_maps) -> None:
    maps, masks = make_maps(7, n_images=5, size=20, decimals=None)
    maps32 = maps.astype(np.float32)
    reference = maps32.astype(np.float64).ravel()
    assert pixel_auroc(maps32, masks.astype(np.uint8)) == pytest.approx(
        roc_auc_score(masks.ravel(), reference), abs=TOLERANCE
    )
    assert pixel_ap(maps32, masks.astype(np.float32)) == pytest.approx(
        average_precision_score(masks.ravel(), reference), abs=TOLERANCE
    )


def test_single_image_map_is_one_image(make_maps) -> None:
    maps, masks = make_maps(3, n_images=1, size=16)
    assert pixel_auroc(maps[0], masks[0]) == pixel_auroc(maps, masks)
    assert pixel_ap(maps[0], masks[0]) == pixel_ap(maps, masks)
    assert pixel_auroc(maps, masks) == pytest.approx(
        roc_auc_score(masks.ravel(), maps.ravel()), abs=TOLERANCE
    )
