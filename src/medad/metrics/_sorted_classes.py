"""Threshold counts from the sorted scores of each class: the engine of the ranking metrics.

Every threshold metric here (AUROC, AP, best Dice, F1-max) needs, for thresholds t, the counts
TP(t) = #positives with score >= t and FP(t) = #negatives with score >= t. Instead of one
`argsort` of all scores with the labels carried along (what scikit-learn does; slow and memory
hungry on tens of millions of pixels), the scores of each class are copied out and sorted on their
own with `numpy.sort`, which is several times faster than `argsort` and needs no index array.
The counts at any threshold then come from `searchsorted` in the sorted arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def split_sorted(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the positives and of the negatives, each sorted ascending (fresh arrays).

    `scores` and `labels` are flat arrays of equal length (labels bool). The two outputs together
    hold one copy of the scores in their own dtype (no float64 promotion).
    """
    positives = scores[labels]
    negatives = scores[~labels]
    positives.sort()
    negatives.sort()
    return positives, negatives


@dataclass(frozen=True)
class PositiveLevels:
    """Counts at each distinct score carried by at least one positive, ascending.

    For thresholds t below or between these values the true positives do not change while the
    false positives can only grow as t falls, so every maximum of a TP-increasing, FP-decreasing
    criterion (Dice, F1) and every step of the recall axis (AP) sits at one of these values.
    """

    values: np.ndarray  #: the distinct positive scores, ascending
    n_at: np.ndarray  #: number of positives with exactly this score (int64)
    tp: np.ndarray  #: positives with score >= value (int64)
    fp: np.ndarray  #: negatives with score >= value (int64)


def positive_levels(positives: np.ndarray, negatives: np.ndarray) -> PositiveLevels:
    """TP and FP counts at every distinct positive score (inputs sorted ascending)."""
    n_pos = positives.size
    starts = np.flatnonzero(np.concatenate(([True], positives[1:] != positives[:-1])))
    values = positives[starts]
    n_at = np.diff(np.append(starts, n_pos))
    tp = n_pos - starts
    fp = negatives.size - np.searchsorted(negatives, values, side="left")
    return PositiveLevels(values=values, n_at=n_at, tp=tp.astype(np.int64), fp=fp.astype(np.int64))


def twice_mann_whitney_u(positives: np.ndarray, negatives: np.ndarray) -> int:
    """2·U, U = #(pos, neg) pairs with pos > neg plus half the tied pairs (inputs sorted).

    Exact in integers: AUROC = U / (n_pos · n_neg), the area under the ROC curve with ties
    drawn as diagonal steps (the trapezoid rule of scikit-learn's `roc_auc_score`). The smaller
    class is searched in the larger one, so the cost is O(min · log max) after the sorts.
    """
    if positives.size <= negatives.size:
        below = np.searchsorted(negatives, positives, side="left")  # negatives < p
        below_or_tied = np.searchsorted(negatives, positives, side="right")  # negatives <= p
        return int(below.sum(dtype=np.int64) + below_or_tied.sum(dtype=np.int64))
    # Count from the negatives' side: pairs where pos > q, plus half the ties.
    below = np.searchsorted(positives, negatives, side="left")  # positives < q
    below_or_tied = np.searchsorted(positives, negatives, side="right")  # positives <= q
    n_pairs = positives.size * negatives.size
    return int(2 * n_pairs - below.sum(dtype=np.int64) - below_or_tied.sum(dtype=np.int64))


def merged_order_statistics(
    first: np.ndarray, second: np.ndarray, positions: np.ndarray
) -> np.ndarray:
    """Values at sorted `positions` of the union of two sorted arrays, without merging them.

    Equals ``np.sort(np.concatenate((first, second)))[positions]`` but costs
    O(len(positions) · log² N) instead of a sort of N values: the value at position k is the
    smallest candidate x of either array with #(values <= x) >= k + 1, found by bisection in each
    array (`_first_reaching`).
    """
    ks = np.asarray(positions, dtype=np.int64)
    return np.minimum(_first_reaching(first, second, ks), _first_reaching(second, first, ks))


def _first_reaching(own: np.ndarray, other: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """For each k, own[i] for the smallest i with i + 1 + #(other <= own[i]) >= k + 1 (+inf if
    none). That count is non-decreasing in i, and at the last of a run of ties it is the exact
    number of values <= own[i], so own[i] is the smallest value of `own` reaching rank k."""
    lo = np.zeros(ks.shape, dtype=np.int64)
    hi = np.full(ks.shape, own.size, dtype=np.int64)  # own.size: no index of `own` reaches k
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        probe = own[np.minimum(mid, own.size - 1)]
        reaches = mid + 1 + np.searchsorted(other, probe, side="right") >= ks + 1
        active = lo < hi
        hi = np.where(active & reaches, mid, hi)
        lo = np.where(active & ~reaches, mid + 1, lo)
    out = np.full(ks.shape, np.inf, dtype=np.result_type(own.dtype, other.dtype))
    found = lo < own.size
    out[found] = own[lo[found]]
    return out
