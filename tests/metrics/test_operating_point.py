"""Thresholds fixed on normal scores, and the rates and Dice at a threshold, against brute force
and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_curve

from medad.errors import MedadError
from medad.metrics import best_dice_threshold
from medad.metrics.operating_point import (
    dataset_dice,
    sensitivity_at_specificity,
    sensitivity_specificity,
    threshold_at_fpr,
)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fpr", [0.0, 0.05, 0.1, 0.5])
def test_threshold_is_the_lowest_that_keeps_the_false_positive_rate(seed, fpr):
    rng = np.random.default_rng(seed)
    normal = rng.integers(0, 12, size=40 + seed).astype(float)  # ties
    t = threshold_at_fpr(normal, fpr)
    allowed = math.floor(fpr * normal.size)
    assert np.count_nonzero(normal >= t) <= allowed
    # any lower candidate (a normal score below t) lets more through than allowed
    below = normal[normal < t]
    assert below.size == 0 or np.count_nonzero(normal >= below.max()) > allowed


def test_threshold_errors():
    with pytest.raises(MedadError, match="no normal scores"):
        threshold_at_fpr(np.array([]), 0.05)
    with pytest.raises(MedadError, match=r"in \[0, 1\)"):
        threshold_at_fpr(np.ones(3), 1.0)


def test_rates_and_dice_at_a_threshold():
    rng = np.random.default_rng(0)
    labels = rng.random(100) < 0.3
    scores = rng.normal(size=100) + labels
    sens, spec = sensitivity_specificity(scores, labels, 0.4)
    tn, fp, fn, tp = confusion_matrix(labels, scores >= 0.4).ravel()
    assert (sens, spec) == pytest.approx((tp / (tp + fn), tn / (tn + fp)))
    masks = rng.random((5, 12, 12)) < 0.2
    maps = rng.random((5, 12, 12)) + masks
    best, t = best_dice_threshold(maps, masks)
    assert dataset_dice(maps, masks, t) == pytest.approx(best)
    assert dataset_dice(maps, masks, t + 10) == 0.0


def test_sensitivity_at_95_specificity_is_a_point_of_the_roc_curve():
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(200), np.ones(100)].astype(bool)
    scores = rng.normal(size=300) + 1.5 * labels
    fpr, tpr, _ = roc_curve(labels, scores)
    expected = tpr[fpr <= 0.05].max()
    assert sensitivity_at_specificity(scores, labels, 0.95) == pytest.approx(expected)
