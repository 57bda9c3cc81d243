"""Segmentation overlap: per-image Dice, the best dataset-wise Dice over thresholds, F1-max.

Dataset-wise Dice pools all pixels of the test set: Dice = 2·TP / (2·TP + FP + FN), which is
also the F1 score of the pixel classification. MedIAnomaly (Cai et al. 2025, "Metrics") reports
the *best* such Dice over thresholds; because that threshold is picked on the test masks it is
an oracle upper bound of what a deployed threshold would reach, not a deployable score.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from medad.errors import MedadError
from medad.metrics._sorted_classes import (
    PositiveLevels,
    SortedRuns,
    merged_order_statistics,
    positive_levels,
    split_sorted,
)
from medad.metrics._validate import any_inputs, pixel_inputs, require_positives

#: MedIAnomaly's best-Dice search uses order statistics spaced N // 200 apart (public code,
#: `compute_best_dice`, n_thresh = 200), i.e. about 201 thresholds.
PAPER_N_THRESHOLDS = 200

BestDiceMethod = Literal["exact", "paper"]


def dice(
    maps_or_binary: np.ndarray, masks: np.ndarray, threshold: float | None = None
) -> np.ndarray:
    """Per-image Dice 2·|P ∩ M| / (|P| + |M|) of predictions P against masks M.

    Args:
        maps_or_binary: [N, H, W] (or [H, W]) anomaly maps, or binary predictions when
            `threshold` is None.
        masks: same shape, bool or 0/1 ground truth.
        threshold: predict a pixel abnormal when map >= threshold; None when the input is
            already binary (bool or 0/1).

    Returns:
        [N] float64 Dice per image. An image whose prediction and mask are both empty (a normal
        image correctly left blank) scores 1.0, by convention: nothing to find, nothing found.

    Raises:
        MedadError: on invalid inputs, a non-finite threshold, or non-binary input without a
            threshold.
    """
    maps, mask_array = pixel_inputs(maps_or_binary, masks, "Dice")
    if threshold is None:
        if not np.all((maps == 0) | (maps == 1)):
            raise MedadError(
                "Dice: the input holds values other than 0/1; pass threshold=... to binarise "
                "anomaly maps (pixel abnormal when map >= threshold)."
            )
        predictions = maps != 0
    else:
        if not np.isfinite(threshold):
            raise MedadError(f"Dice: threshold must be a finite number, got {threshold!r}.")
        predictions = maps >= threshold
    n_images = maps.shape[0]
    overlap = np.count_nonzero((predictions & mask_array).reshape(n_images, -1), axis=1)
    total = np.count_nonzero(predictions.reshape(n_images, -1), axis=1) + np.count_nonzero(
        mask_array.reshape(n_images, -1), axis=1
    )
    result = np.ones(n_images, dtype=np.float64)
    nonempty = total > 0
    result[nonempty] = 2.0 * overlap[nonempty] / total[nonempty]
    return result


def _best_dice_exact(scores: np.ndarray, labels: np.ndarray, n_pos: int) -> tuple[float, float]:
    """Max Dice over every threshold t with prediction = score >= t.

    The maximum is reached at a score carried by a positive: between such scores TP is constant
    while FP only grows as t falls. So one sort per class and the counts at the distinct
    positive scores suffice; Dice = 2·TP / (TP + FP + n_pos).
    """
    return best_dice_of_levels(positive_levels(*split_sorted(scores, labels)), n_pos)


def best_dice_of_levels(levels: PositiveLevels, n_pos: int) -> tuple[float, float]:
    """(best Dice, threshold) over thresholds score >= t from the counts at the distinct positive
    scores (`positive_levels`); Dice = 2·TP / (TP + FP + n_pos)."""
    dice_values = 2.0 * levels.tp / (levels.tp + levels.fp + n_pos)
    best = int(np.argmax(dice_values))
    return float(dice_values[best]), float(levels.values[best])


def best_dice_paper_of_sorted(positives: np.ndarray, negatives: SortedRuns) -> tuple[float, float]:
    """MedIAnomaly's 201-order-statistic best Dice (`_best_dice_paper`) from the sorted scores of
    each class: the order statistics of all scores come from `merged_order_statistics` and the
    counts above each threshold from both classes, so no sort of all scores is needed."""
    n_pos, n_scores = positives.size, positives.size + negatives.size
    step = max(n_scores // PAPER_N_THRESHOLDS, 1)
    thresholds = merged_order_statistics((positives, *negatives.runs), np.arange(0, n_scores, step))
    tp = n_pos - np.searchsorted(positives, thresholds, side="right")
    fp = negatives.size - negatives.count_below(thresholds, side="right")
    dice_values = 2.0 * tp / (tp + fp + n_pos)
    best = int(np.argmax(dice_values))
    return float(dice_values[best]), float(thresholds[best])


def _best_dice_paper(scores: np.ndarray, labels: np.ndarray, n_pos: int) -> tuple[float, float]:
    """MedIAnomaly's search: thresholds at sorted indices 0, step, 2·step, ... (< N).

    step = N // 200 (at least 1, so inputs under 200 pixels use every order statistic), the
    thresholds are `sorted_scores[range(0, N, step)]` and the prediction is score > t (strict),
    as in the public code. That gives ceil(N / step) thresholds: 201 for N >= 40 000 (200 when
    N is a multiple of 200, index 200·step = N being out of range), more for smaller inputs.
    Vectorised: the counts above each threshold
    come from `searchsorted` in the sorted scores and in the sorted positive scores.
    """
    n_scores = scores.size
    sorted_scores = np.sort(scores)
    step = max(n_scores // PAPER_N_THRESHOLDS, 1)
    thresholds = sorted_scores[::step]
    n_predicted = n_scores - np.searchsorted(sorted_scores, thresholds, side="right")
    positives = np.sort(scores[labels])
    tp = n_pos - np.searchsorted(positives, thresholds, side="right")
    dice_values = 2.0 * tp / (n_predicted + n_pos)
    best = int(np.argmax(dice_values))
    return float(dice_values[best]), float(thresholds[best])


def best_dice_threshold(
    maps: np.ndarray, masks: np.ndarray, *, method: BestDiceMethod = "exact"
) -> tuple[float, float]:
    """Best dataset-wise Dice over thresholds and the threshold reaching it.

    Dice = 2·TP / (2·TP + FP + FN) with all pixels of all images pooled. The threshold is chosen
    on the test masks themselves, so the result is an oracle upper bound (MedIAnomaly, Cai et
    al. 2025, "Metrics"), not the Dice of a threshold one could fix before seeing the masks.

    Args:
        maps: [N, H, W] (or [H, W]) anomaly maps.
        masks: same shape, bool or 0/1 ground truth.
        method: "exact": maximum over all distinct thresholds, prediction = map >= threshold.
            "paper": MedIAnomaly's search over about 201 order statistics of the sorted scores
            (indices 0, step, 2·step, ... below N with step = N // 200, or every score when
            N < 200) with prediction = map > threshold (strict, as in their public code); it
            reproduces the paper's numbers and is never above "exact".

    Returns:
        (best Dice, threshold); the threshold uses the prediction rule of the chosen method.
        Among equal Dice values the lowest threshold is returned.

    Raises:
        MedadError: on invalid inputs, an unknown method, or masks without abnormal pixels.
    """
    map_array, mask_array = pixel_inputs(maps, masks, "best Dice")
    n_pos, _ = require_positives(mask_array, "best Dice", "mask pixels")
    scores, labels = map_array.reshape(-1), mask_array.reshape(-1)
    if method == "exact":
        return _best_dice_exact(scores, labels, n_pos)
    if method == "paper":
        return _best_dice_paper(scores, labels, n_pos)
    raise MedadError(f"best Dice: method must be 'exact' or 'paper', got {method!r}.")


def best_dice(maps: np.ndarray, masks: np.ndarray, *, method: BestDiceMethod = "exact") -> float:
    """Best dataset-wise Dice over thresholds: an oracle upper bound chosen on the test masks.

    See `best_dice_threshold` for the definition and the two methods ("exact", "paper").
    """
    return best_dice_threshold(maps, masks, method=method)[0]


def f1_max(scores_or_maps: np.ndarray, labels_or_masks: np.ndarray) -> float:
    """Maximum F1 = 2·precision·recall / (precision + recall) over all thresholds (score >= t).

    Image level for 1-D scores with labels, pixel level (all pixels pooled) for [N, H, W] or
    [H, W] maps with masks. Same value as the maximum F1 along scikit-learn's
    `precision_recall_curve`. Pooled F1 equals pooled Dice, so at pixel level this is
    `best_dice(..., method="exact")`; like it, it is an oracle upper bound (threshold chosen on
    the test labels).

    Raises:
        MedadError: on invalid inputs or labels without any abnormal (1) sample.
    """
    scores, labels = any_inputs(scores_or_maps, labels_or_masks, "F1-max")
    n_pos, _ = require_positives(labels, "F1-max", "labels")
    return _best_dice_exact(scores, labels, n_pos)[0]
