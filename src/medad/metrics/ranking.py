"""Threshold-free ranking metrics: AUROC and average precision, per image and per pixel.

Definitions are scikit-learn's (`roc_auc_score`, `average_precision_score`), which MedIAnomaly
(Cai et al. 2025, "Metrics") uses for both image- and pixel-level results; the abnormal class
(label 1) is the positive one. Values equal scikit-learn's, ties included, but come from sorting
each class separately (`numpy.sort`, no `argsort`): exact integer pair counts for AUROC and
counts at the distinct positive scores for AP.
"""

from __future__ import annotations

import numpy as np

from medad.metrics._sorted_classes import (
    PositiveLevels,
    positive_levels,
    split_sorted,
    twice_mann_whitney_u,
)
from medad.metrics._validate import image_inputs, pixel_inputs, require_both_classes


def auroc_of_sorted(positives: np.ndarray, negatives: np.ndarray) -> float:
    """AUROC from the sorted scores of each class (both non-empty)."""
    # AUROC = U / (n_pos n_neg) (Mann-Whitney); ties count one half, as a diagonal ROC step.
    return twice_mann_whitney_u(positives, negatives) / (2 * positives.size * negatives.size)


def average_precision_of_levels(levels: PositiveLevels, n_pos: int) -> float:
    """AP from the counts at the distinct positive scores (`positive_levels`)."""
    # AP = sum_k (R_k - R_{k-1}) P_k over thresholds (scikit-learn, no interpolation); recall
    # only moves at scores that positives carry, by n_at / n_pos, with precision TP / (TP + FP).
    precision = levels.tp / (levels.tp + levels.fp)
    return float(np.sum(levels.n_at * precision) / n_pos)


def _auroc(scores: np.ndarray, labels: np.ndarray, metric: str, unit: str) -> float:
    require_both_classes(labels, metric, unit)
    return auroc_of_sorted(*split_sorted(scores, labels))


def _average_precision(scores: np.ndarray, labels: np.ndarray, metric: str, unit: str) -> float:
    n_pos, _ = require_both_classes(labels, metric, unit)
    return average_precision_of_levels(positive_levels(*split_sorted(scores, labels)), n_pos)


def image_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of image scores against image labels (1 = abnormal).

    Same value as `sklearn.metrics.roc_auc_score(labels, scores)`, ties included.

    Args:
        scores: [N] anomaly scores, higher = more abnormal.
        labels: [N] bool or 0/1, 1 = abnormal.

    Raises:
        MedadError: on empty or mismatched inputs, non-finite scores, labels other than 0/1,
            or when only one class is present (AUROC is undefined then).
    """
    score_array, label_array = image_inputs(scores, labels, "image AUROC")
    return _auroc(score_array, label_array, "image AUROC", "labels")


def image_ap(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision of image scores against image labels (1 = abnormal).

    Same value as `sklearn.metrics.average_precision_score(labels, scores)`: the step-wise sum
    sum_k (R_k - R_{k-1}) P_k over all distinct thresholds, no interpolation.

    Raises:
        MedadError: as `image_auroc`.
    """
    score_array, label_array = image_inputs(scores, labels, "image AP")
    return _average_precision(score_array, label_array, "image AP", "labels")


def pixel_auroc(maps: np.ndarray, masks: np.ndarray) -> float:
    """Pixel AUROC: all pixels of all images pooled (normal images included).

    Same value as `roc_auc_score(masks.ravel(), maps.ravel())`, computed by sorting each class
    on its own (float32 maps stay float32, no index arrays).

    Args:
        maps: [N, H, W] (or [H, W]) anomaly maps, higher = more abnormal.
        masks: same shape, bool or 0/1 ground truth, 1 = abnormal pixel.

    Raises:
        MedadError: on empty or mismatched inputs, wrong ndim, non-finite maps, masks other than
            0/1, or when all pixels belong to one class.
    """
    map_array, mask_array = pixel_inputs(maps, masks, "pixel AUROC")
    return _auroc(map_array.reshape(-1), mask_array.reshape(-1), "pixel AUROC", "mask pixels")


def pixel_ap(maps: np.ndarray, masks: np.ndarray) -> float:
    """Pixel average precision: all pixels of all images pooled (normal images included).

    Same value as `average_precision_score(masks.ravel(), maps.ravel())`.

    Raises:
        MedadError: as `pixel_auroc`.
    """
    map_array, mask_array = pixel_inputs(maps, masks, "pixel AP")
    return _average_precision(
        map_array.reshape(-1), mask_array.reshape(-1), "pixel AP", "mask pixels"
    )
