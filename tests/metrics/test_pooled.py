"""`pixel_metrics` (one sort per class) gives exactly the values of the single-metric functions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from medad.errors import MedadError
from medad.metrics import _sorted_classes as sorted_classes
from medad.metrics import aupro, best_dice, pixel_ap, pixel_auroc, pixel_metrics
from medad.metrics._sorted_classes import merged_order_statistics, split_sorted


def _one_by_one(maps: np.ndarray, masks: np.ndarray, fpr_limit: float) -> dict[str, float]:
    return {
        "pixel_auroc": pixel_auroc(maps, masks),
        "pixel_ap": pixel_ap(maps, masks),
        "best_dice": best_dice(maps, masks, method="exact"),
        "best_dice_paper": best_dice(maps, masks, method="paper"),
        "aupro": aupro(maps, masks, fpr_limit=fpr_limit),
    }


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [None, 1])
@pytest.mark.parametrize("fpr_limit", [0.3, 1.0])
def test_pixel_metrics_equal_the_single_functions(make_maps, seed, decimals, fpr_limit) -> None:
    maps, masks = make_maps(seed, n_images=6, size=24, decimals=decimals)
    maps = maps.astype(np.float32)
    together = pixel_metrics(maps, masks, aupro_fpr_limit=fpr_limit)
    assert together == _one_by_one(maps, masks, fpr_limit)  # identical, not just close
    flat_masks, flat_maps = masks.ravel(), maps.ravel()
    assert together["pixel_auroc"] == pytest.approx(roc_auc_score(flat_masks, flat_maps), abs=1e-12)
    assert together["pixel_ap"] == pytest.approx(
        average_precision_score(flat_masks, flat_maps), abs=1e-12
    )


def test_pixel_metrics_need_both_classes() -> None:
    maps = np.random.default_rng(0).random((2, 8, 8))
    with pytest.raises(MedadError, match="all mask pixels are 0"):
        pixel_metrics(maps, np.zeros((2, 8, 8), dtype=bool))


@settings(max_examples=60, deadline=None)
@given(
    arrays=st.lists(st.lists(st.integers(-5, 5), max_size=30), min_size=1, max_size=4),
    data=st.data(),
)
def test_merged_order_statistics_equal_a_sort_of_the_union(arrays, data) -> None:
    sorted_arrays = [np.sort(np.array(a, dtype=np.float32)) for a in arrays]
    n = sum(a.size for a in sorted_arrays)
    if n == 0:
        return
    positions = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=10)))
    union = np.sort(np.concatenate(sorted_arrays))
    got = merged_order_statistics(sorted_arrays, positions)
    np.testing.assert_array_equal(got, union[positions])
    assert got.dtype == np.float32


@pytest.mark.parametrize("parts", [2, 3, 7])
@pytest.mark.parametrize("decimals", [None, 1])
def test_negatives_sorted_in_parts_give_the_same_values(
    make_maps, monkeypatch, parts, decimals
) -> None:
    """The negatives are sorted as several parts in threads on large inputs; counts and order
    statistics over the parts must give exactly the one-array values (ties across parts too)."""
    maps, masks = make_maps(3, n_images=8, size=32, decimals=decimals)
    maps = maps.astype(np.float32)
    scores, labels = maps.reshape(-1), masks.reshape(-1)
    positives, negatives = split_sorted(scores, labels, parts=parts)
    assert len(negatives.runs) == parts and negatives.size == (~labels).sum()
    np.testing.assert_array_equal(positives, np.sort(scores[labels]))
    whole = np.sort(scores[~labels])
    ks = np.arange(0, whole.size, 37)
    np.testing.assert_array_equal(negatives.order_statistics(ks), whole[ks])
    for side in ("left", "right"):
        np.testing.assert_array_equal(
            negatives.count_below(positives, side=side), np.searchsorted(whole, positives, side)
        )
    expected = _one_by_one(maps, masks, 0.3)
    # `pixel_metrics` picks the parts from the input size: make this small input "large"
    monkeypatch.setattr(sorted_classes, "PARALLEL_MIN_SCORES", 0)
    monkeypatch.setattr(sorted_classes, "sort_workers", lambda: parts)
    assert pixel_metrics(maps, masks) == expected
