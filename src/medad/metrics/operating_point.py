"""Metrics at a fixed decision threshold: what a deployed detector would do.

Best Dice and F1-max pick their threshold on the test labels (an oracle ceiling, MedIAnomaly,
"Metrics"). The honest counterpart fixes the threshold *before* the test set is seen, from normal
images only: the score that a target share of normal images (or pixels) exceeds, e.g. 5 %. That
is the Neyman-Pearson way to set an alarm level when abnormal examples are unavailable, and the
intent of BMAD's separate validation split (Bao et al., CVPR Workshops 2024). Every prediction
here is "abnormal when score >= threshold".

`sensitivity_at_specificity` is different: a point of the test ROC curve (the threshold comes from
the test normals), reported in clinical papers as "sensitivity at 95 % specificity".
"""

from __future__ import annotations

import math

import numpy as np

from medad.errors import MedadError
from medad.metrics._validate import any_inputs, image_inputs, require_both_classes


def threshold_at_fpr(normal_scores: np.ndarray, fpr: float) -> float:
    """The lowest threshold t at which at most `fpr` of the given normal scores are >= t.

    With n scores, at most floor(fpr · n) of them lie at or above t; ties are never split, so
    fewer may (every score equal to t counts as a false alarm).

    Raises:
        MedadError: on empty or non-finite scores or an `fpr` outside [0, 1).
    """
    scores = np.sort(np.asarray(normal_scores, dtype=np.float64).reshape(-1))
    if scores.size == 0:
        raise MedadError("threshold: no normal scores to choose it from.")
    if not np.all(np.isfinite(scores[[0, -1]])):
        raise MedadError("threshold: the normal scores contain NaN or infinite values.")
    if not 0 <= fpr < 1:
        raise MedadError(f"threshold: the target false-positive rate must be in [0, 1), got {fpr}")
    allowed = math.floor(fpr * scores.size + 1e-9)
    # the (allowed + 1)-th largest score must fall below t: t is the next float above it
    return float(np.nextafter(scores[scores.size - allowed - 1], np.inf))


def sensitivity_specificity(
    scores_or_maps: np.ndarray, labels_or_masks: np.ndarray, threshold: float
) -> tuple[float, float]:
    """(sensitivity, specificity) of "abnormal when score >= threshold", images or pooled pixels.

    A class absent from the labels gives NaN for its rate.
    """
    scores, labels = any_inputs(scores_or_maps, labels_or_masks, "sensitivity/specificity")
    predicted = scores >= threshold
    n_pos = int(np.count_nonzero(labels))
    n_neg = labels.size - n_pos
    tp = int(np.count_nonzero(predicted & labels))
    tn = int(np.count_nonzero(~predicted & ~labels))
    return (tp / n_pos if n_pos else math.nan), (tn / n_neg if n_neg else math.nan)


def dataset_dice(maps: np.ndarray, masks: np.ndarray, threshold: float) -> float:
    """Dice 2·TP / (2·TP + FP + FN) of all test pixels pooled at a fixed threshold (the quantity
    best Dice maximises over thresholds); 1.0 when both prediction and masks are empty."""
    scores, labels = any_inputs(maps, masks, "Dice at threshold")
    predicted = scores >= threshold
    tp = int(np.count_nonzero(predicted & labels))
    total = int(np.count_nonzero(predicted)) + int(np.count_nonzero(labels))
    return 2 * tp / total if total else 1.0


def sensitivity_at_specificity(
    scores: np.ndarray, labels: np.ndarray, specificity: float = 0.95
) -> float:
    """Share of abnormal images flagged at the threshold that keeps `specificity` of the test's
    normal images below it (a point of the test ROC curve, not a threshold fixed in advance)."""
    score_array, label_array = image_inputs(scores, labels, "sensitivity at specificity")
    require_both_classes(label_array, "sensitivity at specificity", "labels")
    threshold = threshold_at_fpr(score_array[~label_array], 1 - specificity)
    return float(np.mean(score_array[label_array] >= threshold))
