"""Per-image Dice, best dataset-wise Dice (exact and MedIAnomaly's search) and F1-max."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import precision_recall_curve

from medad.metrics import best_dice, best_dice_threshold, dice, f1_max

TOLERANCE = 1e-12


def pooled_dice(predictions: np.ndarray, masks: np.ndarray) -> float:
    return 2 * np.sum(predictions & masks) / (np.sum(predictions) + np.sum(masks))


def brute_force_best_dice(maps: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    """Dice at every distinct threshold (prediction = map >= t), the best and its threshold."""
    best, best_threshold = -1.0, np.nan
    for threshold in np.unique(maps):
        value = pooled_dice(maps >= threshold, masks)
        if value > best:
            best, best_threshold = value, threshold
    return best, best_threshold


def paper_loop_best_dice(maps: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    """MedIAnomaly's procedure, step by step: order statistics every N // 200, strict >."""
    flat_maps, flat_masks = maps.ravel(), masks.ravel()
    sorted_scores = np.sort(flat_maps)
    step = max(flat_maps.size // 200, 1)
    thresholds = [sorted_scores[i] for i in range(0, flat_maps.size, step)]
    values = [pooled_dice(flat_maps > t, flat_masks) for t in thresholds]
    best = int(np.argmax(values))
    return values[best], thresholds[best]


def sklearn_f1_max(scores: np.ndarray, labels: np.ndarray) -> float:
    precision, recall, _ = precision_recall_curve(labels.ravel(), scores.ravel())
    denominator = precision + recall
    f1 = np.zeros_like(precision)
    np.divide(2 * precision * recall, denominator, out=f1, where=denominator > 0)
    return float(f1.max())


def test_dice_per_image_by_hand() -> None:
    predictions = np.zeros((4, 2, 2), dtype=bool)
    masks = np.zeros((4, 2, 2), dtype=bool)
    predictions[0, 0, :] = True  # prediction {a, b}
    masks[0, :, 0] = True  # mask {a, c}: 2·1 / (2 + 2)
    # image 1: empty prediction and empty mask -> 1.0 by convention
    predictions[2, 1, 1] = True  # false alarm on a normal image -> 0
    masks[3] = True  # missed lesion -> 0
    np.testing.assert_array_equal(dice(predictions, masks), [0.5, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(
        dice(predictions.astype(np.uint8), masks.astype(float)), [0.5, 1.0, 0.0, 0.0]
    )


def test_dice_with_threshold_uses_greater_or_equal() -> None:
    maps = np.array([[[0.2, 0.5], [0.9, 0.1]], [[0.0, 0.0], [0.0, 0.0]]])
    masks = np.array([[[0, 1], [1, 1]], [[0, 0], [0, 0]]])
    # image 0 at t = 0.5: prediction {0.5, 0.9}, mask 3 pixels -> 2·2 / (2 + 3)
    np.testing.assert_allclose(dice(maps, masks, threshold=0.5), [0.8, 1.0])
    # t = 0.95: nothing predicted -> 0 on the lesion image, 1 on the normal one
    np.testing.assert_allclose(dice(maps, masks, threshold=0.95), [0.0, 1.0])
    # a single [H, W] map is one image
    np.testing.assert_allclose(dice(maps[0], masks[0], threshold=0.5), [0.8])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [1, 2, None])
def test_best_dice_exact_equals_brute_force(make_maps, seed: int, decimals: int | None) -> None:
    maps, masks = make_maps(seed, n_images=5, size=12, decimals=decimals)
    expected, expected_threshold = brute_force_best_dice(maps, masks)
    value, threshold = best_dice_threshold(maps, masks)
    assert value == pytest.approx(expected, abs=TOLERANCE)
    assert best_dice(maps, masks) == value
    # the returned threshold reproduces the value
    assert pooled_dice(maps >= threshold, masks) == pytest.approx(value, abs=TOLERANCE)
    assert threshold == expected_threshold


@pytest.mark.parametrize(
    ("n_images", "size"),
    [(1, 5), (2, 10), (3, 12), (4, 50), (3, 200)],  # N below, near and above 200 · step sizes
)
@pytest.mark.parametrize("decimals", [1, None])
def test_best_dice_paper_equals_the_201_threshold_loop(
    make_maps, n_images: int, size: int, decimals: int | None
) -> None:
    maps, masks = make_maps(n_images + size, n_images=n_images, size=size, decimals=decimals)
    expected, expected_threshold = paper_loop_best_dice(maps, masks)
    value, threshold = best_dice_threshold(maps, masks, method="paper")
    assert value == pytest.approx(expected, abs=TOLERANCE)
    assert threshold == expected_threshold
    assert value <= best_dice(maps, masks, method="exact") + TOLERANCE


def test_paper_threshold_count_follows_the_public_code() -> None:
    # N = 400 is a multiple of 200: step 2, indices 0, 2, ..., 398 -> 200 thresholds.
    # With a perfect separation at the 41st lowest score the loop and ours agree.
    maps = np.arange(400, dtype=float).reshape(1, 20, 20)
    masks = maps >= 41
    value, threshold = best_dice_threshold(maps, masks, method="paper")
    assert (value, threshold) == paper_loop_best_dice(maps, masks)
    assert threshold == 40.0 and value == 1.0  # 40 > 40 is false: prediction = maps > 40


def test_all_equal_scores() -> None:
    maps = np.full((2, 3, 3), 0.5)
    masks = np.zeros((2, 3, 3), dtype=bool)
    masks[0, 0, :2] = True
    # the only non-empty prediction is everything: 2·2 / (18 + 2)
    assert best_dice(maps, masks) == pytest.approx(0.2)
    # paper rule (map > t) can never predict anything here
    assert best_dice(maps, masks, method="paper") == 0.0


def test_perfect_map_scores_one(make_maps) -> None:
    _, masks = make_maps(11, n_images=3, size=10)
    maps = masks.astype(float)
    assert best_dice(maps, masks) == 1.0
    assert best_dice(maps, masks, method="paper") == 1.0
    assert f1_max(maps, masks) == 1.0


@pytest.mark.parametrize("seed", range(4))
def test_f1_max_equals_sklearn_curve_for_pixels(make_maps, seed: int) -> None:
    maps, masks = make_maps(seed, n_images=4, size=12, decimals=1)
    assert f1_max(maps, masks) == pytest.approx(sklearn_f1_max(maps, masks), abs=TOLERANCE)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=40))
def test_f1_max_equals_sklearn_curve_for_images(pairs: list[tuple[int, bool]]) -> None:
    scores = np.array([score for score, _ in pairs], dtype=float)
    labels = np.array([label for _, label in pairs])
    labels[0] = True
    assert f1_max(scores, labels) == pytest.approx(sklearn_f1_max(scores, labels), abs=TOLERANCE)
