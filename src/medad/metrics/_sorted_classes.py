"""Threshold counts from the sorted scores of each class: the engine of the ranking metrics.

Every threshold metric here (AUROC, AP, best Dice, F1-max) needs, for thresholds t, the counts
TP(t) = #positives with score >= t and FP(t) = #negatives with score >= t. Instead of one
`argsort` of all scores with the labels carried along (what scikit-learn does; slow and memory
hungry on tens of millions of pixels), the scores of each class are copied out and sorted on their
own with `numpy.sort`, which is several times faster than `argsort` and needs no index array.
The counts at any threshold then come from `searchsorted` in the sorted arrays.

The negatives (on a test set, almost all pixels: 179 M of BraTS2021's 182 M) are sorted as a few
contiguous parts at once, one per CPU, in threads (`numpy.sort` releases the GIL), and never
merged: a count in the whole is the sum of the counts in the parts, and an order statistic of the
whole comes from bisection in each part (`merged_order_statistics`). So every value is the same
as with one sorted array, whatever the number of parts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

#: below this many scores one thread sorts everything (threads cost more than they save)
PARALLEL_MIN_SCORES = 1 << 22


def sort_workers() -> int:
    """Threads for the sorts: the CPUs this process may run on, at most 8, and no more than
    PyTorch's intra-op threads when it is loaded (a grid worker sharing the CPUs with others
    sets those; more sort threads than that would compete with its neighbours)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    torch = sys.modules.get("torch")  # never imported here: metrics stay torch-free
    if torch is not None:
        n = min(n, torch.get_num_threads())
    return max(1, min(n, 8))


@dataclass(frozen=True)
class SortedRuns:
    """A multiset of scores held as one or more arrays, each sorted ascending (not merged)."""

    runs: tuple[np.ndarray, ...]

    @classmethod
    def of(cls, array: np.ndarray) -> SortedRuns:
        """One sorted array as a `SortedRuns`."""
        return cls((array,))

    @property
    def size(self) -> int:
        return sum(r.size for r in self.runs)

    @property
    def dtype(self) -> np.dtype:
        return self.runs[0].dtype

    def count_below(self, values: np.ndarray, side: str = "left") -> np.ndarray:
        """Per value, the number of scores < it (``side="left"``) or <= it (``"right"``)."""
        counts = np.zeros(np.shape(values), dtype=np.int64)
        for run in self.runs:
            counts += np.searchsorted(run, values, side=side)
        return counts

    def order_statistics(self, positions: np.ndarray) -> np.ndarray:
        """The values at sorted `positions` of the whole (as if merged and sorted)."""
        if len(self.runs) == 1:
            return self.runs[0][np.asarray(positions, dtype=np.int64)]
        return merged_order_statistics(self.runs, positions)

    def at_least(self, cut: float) -> SortedRuns:
        """The scores >= `cut` (views, still sorted)."""
        return SortedRuns(tuple(r[np.searchsorted(r, cut, side="left") :] for r in self.runs))


def split_sorted(
    scores: np.ndarray, labels: np.ndarray, *, parts: int | None = None
) -> tuple[np.ndarray, SortedRuns]:
    """Scores of the positives sorted ascending, and those of the negatives as `SortedRuns`.

    `scores` and `labels` are flat arrays of equal length (labels bool). The outputs together
    hold one copy of the scores in their own dtype (no float64 promotion). `parts`: how many
    contiguous parts of the negatives to sort at once (default: one per CPU for large inputs,
    else 1); the values derived from the result do not depend on it.
    """
    if parts is None:
        parts = sort_workers() if scores.size >= PARALLEL_MIN_SCORES else 1
    parts = max(1, min(parts, scores.size or 1))
    if parts == 1:
        positives, negatives = scores[labels], scores[~labels]
        positives.sort()
        negatives.sort()
        return positives, SortedRuns.of(negatives)

    def negatives_of(bounds: tuple[int, int]) -> np.ndarray:
        part = scores[bounds[0] : bounds[1]][~labels[bounds[0] : bounds[1]]]
        part.sort()
        return part

    def sorted_positives() -> np.ndarray:
        positives = scores[labels]
        positives.sort()
        return positives

    edges = np.linspace(0, scores.size, parts + 1).astype(np.int64)
    with ThreadPoolExecutor(max_workers=parts, thread_name_prefix="medad-sort") as pool:
        pending_positives = pool.submit(sorted_positives)
        negative_parts = list(pool.map(negatives_of, zip(edges[:-1], edges[1:], strict=True)))
        positives = pending_positives.result()
    return positives, SortedRuns(tuple(p for p in negative_parts if p.size) or negative_parts[:1])


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


def positive_levels(positives: np.ndarray, negatives: SortedRuns) -> PositiveLevels:
    """TP and FP counts at every distinct positive score (positives sorted ascending)."""
    n_pos = positives.size
    starts = np.flatnonzero(np.concatenate(([True], positives[1:] != positives[:-1])))
    values = positives[starts]
    n_at = np.diff(np.append(starts, n_pos))
    tp = n_pos - starts
    fp = negatives.size - negatives.count_below(values, side="left")
    return PositiveLevels(values=values, n_at=n_at, tp=tp.astype(np.int64), fp=fp)


def twice_mann_whitney_u(positives: np.ndarray, negatives: SortedRuns) -> int:
    """2·U, U = #(pos, neg) pairs with pos > neg plus half the tied pairs (positives sorted).

    Exact in integers: AUROC = U / (n_pos · n_neg), the area under the ROC curve with ties
    drawn as diagonal steps (the trapezoid rule of scikit-learn's `roc_auc_score`). The smaller
    class is searched in the larger one, so the cost is O(min · log max) after the sorts; U is
    a sum over the negatives' parts either way.
    """
    if positives.size <= negatives.size:
        below = negatives.count_below(positives, side="left")  # negatives < p
        below_or_tied = negatives.count_below(positives, side="right")  # negatives <= p
        return int(below.sum(dtype=np.int64) + below_or_tied.sum(dtype=np.int64))
    # Count from the negatives' side: pairs where pos > q, plus half the ties.
    twice = 2 * positives.size * negatives.size
    for run in negatives.runs:
        below = np.searchsorted(positives, run, side="left")  # positives < q
        below_or_tied = np.searchsorted(positives, run, side="right")  # positives <= q
        twice -= int(below.sum(dtype=np.int64) + below_or_tied.sum(dtype=np.int64))
    return twice


def merged_order_statistics(arrays: Sequence[np.ndarray], positions: np.ndarray) -> np.ndarray:
    """Values at sorted `positions` of the union of sorted arrays, without merging them.

    Equals ``np.sort(np.concatenate(arrays))[positions]`` but costs
    O(len(positions) · log² N) instead of a sort of N values: the value at position k is the
    smallest candidate x of any array with #(values <= x) >= k + 1, found by bisection in each
    array (`_first_reaching`).
    """
    ks = np.asarray(positions, dtype=np.int64)
    arrays = [np.asarray(a) for a in arrays]
    candidates = [
        _first_reaching(own, [a for j, a in enumerate(arrays) if j != i], ks)
        for i, own in enumerate(arrays)
    ]
    return np.minimum.reduce(candidates)


def _first_reaching(own: np.ndarray, others: Sequence[np.ndarray], ks: np.ndarray) -> np.ndarray:
    """For each k, own[i] for the smallest i with i + 1 + #(others <= own[i]) >= k + 1 (+inf if
    none). That count is non-decreasing in i, and at the last of a run of ties it is the exact
    number of values <= own[i], so own[i] is the smallest value of `own` reaching rank k."""
    dtype = np.result_type(*(a.dtype for a in (own, *others)))
    lo = np.zeros(ks.shape, dtype=np.int64)
    hi = np.full(ks.shape, own.size, dtype=np.int64)  # own.size: no index of `own` reaches k
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        probe = own[np.minimum(mid, own.size - 1)]
        rank = mid + 1
        for other in others:
            rank = rank + np.searchsorted(other, probe, side="right")
        reaches = rank >= ks + 1
        active = lo < hi
        hi = np.where(active & reaches, mid, hi)
        lo = np.where(active & ~reaches, mid + 1, lo)
    out = np.full(ks.shape, np.inf, dtype=dtype)
    found = lo < own.size
    out[found] = own[lo[found]]
    return out
