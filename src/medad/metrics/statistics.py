"""Uncertainty and significance of metrics: bootstrap intervals, DeLong's test, Friedman/Nemenyi.

A benchmark table says which method is better only with an idea of how much a number would move on
another test set drawn the same way, and whether two methods' difference on the *same* images is
more than that noise. The tools here are the standard ones:

* **Stratified bootstrap** (Efron & Tibshirani 1993, ch. 13, percentile interval): test images are
  resampled with replacement *within each label*, so every resample keeps the test set's numbers of
  normal and abnormal images and the metric stays defined. Pixel metrics resample *images* (their
  pixels move together), never single pixels: pixels of one image are strongly correlated, so a
  pixel bootstrap would claim far too narrow intervals.
* **DeLong's test** for two correlated AUROCs on the same images (DeLong, DeLong & Clarke-Pearson,
  Biometrics 1988), computed from the structural components (placement values) in O(n log n) by
  midranks (Sun & Xu, IEEE SPL 2014). Midranks give a tied (positive, negative) pair one half, the
  same as the AUROC itself, so the variance is exact with ties.
* **Paired bootstrap** for every other metric: both methods are evaluated on the same resampled
  images and the interval is that of the difference.
* **Across datasets** (Demšar, JMLR 7, 2006): ranks per dataset (1 = best), the Friedman test with
  the Iman-Davenport F form, the Nemenyi critical difference of mean ranks, and pairwise Wilcoxon
  signed-rank tests with Holm's step-down correction (Benavoli et al., JMLR 17, 2016).

Pure NumPy/SciPy; scores first, labels second; label 1 (abnormal) is the positive class.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from medad.errors import MedadError
from medad.metrics._validate import image_inputs, require_both_classes

#: bootstrap resamples by default: enough for stable 2.5 / 97.5 % percentiles (Efron &
#: Tibshirani 1993, ch. 19, recommend ≥ 1000 for percentile intervals)
N_BOOTSTRAP = 2000


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided bootstrap percentile interval."""

    estimate: float
    low: float
    high: float
    level: float  #: e.g. 0.95
    n_boot: int  #: resamples the interval was read from

    def as_dict(self) -> dict[str, float]:
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "n_boot": self.n_boot,
        }


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise MedadError(f"confidence level must be in (0, 1), got {level!r}; e.g. 0.95.")


def _check_n_boot(n_boot: int) -> None:
    if n_boot < 10:
        raise MedadError(f"bootstrap needs at least 10 resamples, got n_boot={n_boot}.")


def stratified_resamples(labels: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, N] indices: each row draws, with replacement, as many images of each label as the
    test set holds, from that label's images (same positions for both labels' blocks)."""
    labels = np.asarray(labels).astype(bool)
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, labels.size), dtype=np.int64)
    start = 0
    for cls in (False, True):
        members = np.flatnonzero(labels == cls)
        draws = rng.integers(0, members.size, size=(n_boot, members.size))
        out[:, start : start + members.size] = members[draws]
        start += members.size
    return out


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def _midranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis, ties sharing their mean rank (O(n log n) per row)."""
    from scipy.stats import rankdata

    return rankdata(x, method="average", axis=-1)


def _auroc_batch(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUROC of each row of scores [B, N] against one labelling [N], via the rank-sum (Mann-Whitney)
    form: ties count one half, as in `image_auroc`."""
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    ranks = _midranks(scores)
    rank_sum = ranks[:, labels].sum(axis=1)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def bootstrap_auroc(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    n_boot: int = N_BOOTSTRAP,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Image AUROC with a stratified bootstrap percentile interval (vectorised over resamples)."""
    score_array, label_array = image_inputs(scores, labels, "bootstrap AUROC")
    require_both_classes(label_array, "bootstrap AUROC", "labels")
    _check_level(level)
    _check_n_boot(n_boot)
    idx = stratified_resamples(label_array, n_boot, seed)
    resampled_labels = label_array[idx[0]]  # the same in every row (stratified blocks)
    values = np.concatenate(
        [
            _auroc_batch(score_array[chunk], resampled_labels)
            for chunk in np.array_split(idx, max(1, idx.size // 2_000_000))
        ]
    )
    estimate = float(_auroc_batch(score_array[np.newaxis], label_array)[0])
    return Interval(estimate, *_percentiles(values, level), level, n_boot)


def bootstrap_metric(
    metric: Callable[[np.ndarray], float],
    labels: np.ndarray,
    *,
    n_boot: int = N_BOOTSTRAP,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Any metric with a stratified bootstrap percentile interval.

    `metric(indices)` evaluates the metric on the test images at `indices` (with repeats), e.g.
    ``lambda i: pixel_ap(maps[i], masks[i])``: pixel metrics thus resample whole images. `labels`
    are the image labels the resampling is stratified by.
    """
    _check_level(level)
    _check_n_boot(n_boot)
    label_array = np.asarray(labels).astype(bool)
    require_both_classes(label_array, "bootstrap", "labels")
    idx = stratified_resamples(label_array, n_boot, seed)
    values = np.array([metric(row) for row in idx], dtype=np.float64)
    estimate = float(metric(np.arange(label_array.size)))
    return Interval(estimate, *_percentiles(values, level), level, n_boot)


def paired_bootstrap(
    metric_a: Callable[[np.ndarray], float],
    metric_b: Callable[[np.ndarray], float],
    labels: np.ndarray,
    *,
    n_boot: int = N_BOOTSTRAP,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[Interval, float]:
    """Interval of the difference A − B on the same resampled images, and a two-sided p-value.

    The p-value is twice the smaller share of resampled differences on either side of 0 (the
    bootstrap test by interval inversion, Efron & Tibshirani 1993, sec. 16.4), at least 1/n_boot.
    """
    _check_level(level)
    _check_n_boot(n_boot)
    label_array = np.asarray(labels).astype(bool)
    require_both_classes(label_array, "paired bootstrap", "labels")
    idx = stratified_resamples(label_array, n_boot, seed)
    diffs = np.array([metric_a(row) - metric_b(row) for row in idx], dtype=np.float64)
    everything = np.arange(label_array.size)
    estimate = float(metric_a(everything) - metric_b(everything))
    share = min(np.mean(diffs <= 0), np.mean(diffs >= 0))
    p_value = float(min(1.0, max(2 * share, 1 / n_boot)))
    return Interval(estimate, *_percentiles(diffs, level), level, n_boot), p_value


# ---------------------------------------------------------------------------------------------
# DeLong


@dataclass(frozen=True)
class DeLongResult:
    """DeLong's comparison of correlated AUROCs (one per method, same images)."""

    aurocs: np.ndarray  #: [k] AUROC of each method
    covariance: np.ndarray  #: [k, k] DeLong covariance of the AUROCs
    difference: float  #: AUROC[0] − AUROC[1]
    z: float  #: difference / its standard error (0 when both are equal with zero variance)
    p_value: float  #: two-sided, normal approximation


def placement_values(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components of each method's AUROC, via midranks.

    `scores` is [k, N] (k methods on the same N images). Returns (V10 [k, n_pos], V01 [k, n_neg]):
    V10 of a positive = share of negatives it outranks (ties ½), V01 of a negative = share of
    positives that outrank it (ties ½). AUROC = mean(V10) = mean(V01). Sun & Xu 2014: the rank of
    a positive among all images minus its rank among positives counts the negatives below it.
    """
    positives, negatives = scores[:, labels], scores[:, ~labels]
    n_pos, n_neg = positives.shape[1], negatives.shape[1]
    all_ranks = _midranks(np.concatenate([positives, negatives], axis=1))
    v10 = (all_ranks[:, :n_pos] - _midranks(positives)) / n_neg
    v01 = 1.0 - (all_ranks[:, n_pos:] - _midranks(negatives)) / n_pos
    return v10, v01


def delong_covariance(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs [k] and their DeLong covariance [k, k] for scores [k, N] against labels [N]."""
    score_array = np.asarray(scores, dtype=np.float64)
    if score_array.ndim == 1:
        score_array = score_array[np.newaxis]
    if score_array.ndim != 2:
        raise MedadError(f"DeLong: scores must be [methods, images], got shape {score_array.shape}")
    for row in score_array:
        image_inputs(row, labels, "DeLong")
    label_array = image_inputs(score_array[0], labels, "DeLong")[1]
    n_pos, n_neg = require_both_classes(label_array, "DeLong", "labels")
    if n_pos < 2 or n_neg < 2:
        raise MedadError(
            "DeLong: needs at least 2 normal and 2 abnormal images to estimate a variance, "
            f"got {n_neg} normal and {n_pos} abnormal."
        )
    v10, v01 = placement_values(score_array, label_array)
    aurocs = v10.mean(axis=1)
    covariance = np.atleast_2d(np.cov(v10)) / n_pos + np.atleast_2d(np.cov(v01)) / n_neg
    return aurocs, covariance


def delong_test(scores_a: np.ndarray, scores_b: np.ndarray, labels: np.ndarray) -> DeLongResult:
    """DeLong's two-sided test of AUROC(A) = AUROC(B) for two methods scored on the same images.

    Raises:
        MedadError: on mismatched or invalid inputs, or fewer than 2 images of a label.
    """
    from scipy.stats import norm

    a, b = np.asarray(scores_a), np.asarray(scores_b)
    if a.shape != b.shape:
        raise MedadError(
            f"DeLong: the two methods scored different numbers of images ({a.shape} vs "
            f"{b.shape}); a paired test needs the same test images."
        )
    aurocs, cov = delong_covariance(np.stack([a, b]), labels)
    difference = float(aurocs[0] - aurocs[1])
    variance = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if variance <= 1e-15:  # identical rankings: no evidence of a difference
        z, p = (0.0, 1.0) if abs(difference) < 1e-15 else (math.copysign(math.inf, difference), 0.0)
    else:
        z = difference / math.sqrt(variance)
        p = float(2 * norm.sf(abs(z)))
    return DeLongResult(aurocs, cov, difference, float(z), p)


# ---------------------------------------------------------------------------------------------
# Several methods over several datasets (Demšar 2006)


def rank_methods(table: np.ndarray, *, higher_is_better: bool = True) -> np.ndarray:
    """Ranks [datasets, methods] of a score table [datasets, methods]: 1 = best on that dataset,
    ties share their mean rank (Demšar 2006, sec. 3.2.2)."""
    values = np.asarray(table, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 2:
        raise MedadError(
            f"ranking needs a [datasets, methods] table with at least 2 methods, got shape "
            f"{values.shape}"
        )
    if not np.all(np.isfinite(values)):
        raise MedadError("ranking: the table has missing or non-finite values; every method "
                         "needs a result on every dataset.")  # fmt: skip
    return _midranks(-values if higher_is_better else values)


@dataclass(frozen=True)
class FriedmanResult:
    """Friedman's test that all methods rank equally across datasets."""

    mean_ranks: np.ndarray  #: [k] average rank of each method (1 = best)
    chi2: float  #: Friedman statistic (with the tie correction when asked)
    p_value: float  #: chi-square with k − 1 degrees of freedom
    iman_davenport: float  #: F_F = (N − 1) χ² / (N (k − 1) − χ²), less conservative (Demšar eq. 2)
    p_value_f: float  #: F with (k − 1, (k − 1)(N − 1)) degrees of freedom
    n_datasets: int
    n_methods: int


def friedman_test(
    table: np.ndarray, *, higher_is_better: bool = True, tie_correction: bool = True
) -> FriedmanResult:
    """Friedman test over a [datasets, methods] table (Demšar 2006, sec. 3.2.2).

    χ²_F = 12N / (k(k+1)) · (Σ R_j² − k(k+1)²/4) with R_j the mean ranks; with `tie_correction`
    it is divided by 1 − Σ(t³ − t) / (N k (k² − 1)) over groups of t tied values per dataset, the
    form `scipy.stats.friedmanchisquare` computes; without it, Demšar's equation as printed.
    """
    from scipy.stats import chi2 as chi2_dist
    from scipy.stats import f as f_dist

    ranks = rank_methods(table, higher_is_better=higher_is_better)
    n, k = ranks.shape
    mean_ranks = ranks.mean(axis=0)
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(mean_ranks**2) - k * (k + 1) ** 2 / 4)
    if tie_correction:
        ties = sum(
            float(np.sum(counts**3 - counts))
            for counts in (np.unique(row, return_counts=True)[1] for row in ranks)
        )
        denominator = 1 - ties / (n * k * (k * k - 1))
        chi2 = chi2 / denominator if denominator > 0 else 0.0
    chi2 = float(chi2)
    p = float(chi2_dist.sf(chi2, k - 1))
    if n < 2:
        f_stat, p_f = math.nan, math.nan
    else:
        gap = n * (k - 1) - chi2
        f_stat = (n - 1) * chi2 / gap if gap > 0 else math.inf
        p_f = float(f_dist.sf(f_stat, k - 1, (k - 1) * (n - 1)))
    return FriedmanResult(mean_ranks, chi2, p, float(f_stat), p_f, n, k)


def nemenyi_critical_difference(n_methods: int, n_datasets: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical difference of mean ranks, CD = q_α √(k(k+1) / (6N)) (Demšar eq. 5).

    q_α is the studentized range quantile for k groups and infinite degrees of freedom divided by
    √2 (Demšar's Table 5: 1.960, 2.343, 2.569, ... for k = 2, 3, 4 at α = 0.05).
    """
    from scipy.stats import studentized_range

    if n_methods < 2 or n_datasets < 1:
        raise MedadError(
            f"critical difference needs at least 2 methods and 1 dataset, got {n_methods} and "
            f"{n_datasets}"
        )
    q = float(studentized_range.ppf(1 - alpha, n_methods, np.inf)) / math.sqrt(2)
    return q * math.sqrt(n_methods * (n_methods + 1) / (6 * n_datasets))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def wilcoxon_holm(
    table: np.ndarray, *, higher_is_better: bool = True
) -> list[tuple[int, int, float, float]]:
    """Pairwise Wilcoxon signed-rank tests over datasets, Holm-corrected (Benavoli et al. 2016).

    Returns (i, j, p, p_holm) for every pair of methods i < j. A pair with identical results on
    every dataset gets p = 1. Needs at least 2 datasets (6 for any p below 0.05).
    """
    from scipy.stats import wilcoxon

    values = np.asarray(table, dtype=np.float64)
    rank_methods(values, higher_is_better=higher_is_better)  # same checks
    if values.shape[0] < 2:
        raise MedadError("Wilcoxon-Holm needs results on at least 2 datasets.")
    pairs, raw = [], []
    for i in range(values.shape[1]):
        for j in range(i + 1, values.shape[1]):
            diff = values[:, i] - values[:, j]
            p = 1.0 if np.all(diff == 0) else float(wilcoxon(values[:, i], values[:, j]).pvalue)
            pairs.append((i, j))
            raw.append(p)
    adjusted = holm(raw)
    return [(i, j, p, float(q)) for (i, j), p, q in zip(pairs, raw, adjusted, strict=True)]


def cliques(mean_ranks: np.ndarray, critical_difference: float) -> list[tuple[int, ...]]:
    """Groups of methods whose mean ranks all lie within the critical difference: the bars of a
    critical-difference diagram (Demšar 2006, fig. 1). Maximal runs of the sorted ranks, methods
    given by index, runs of one method left out."""
    order = np.argsort(mean_ranks, kind="stable")
    ranks = np.asarray(mean_ranks)[order]
    out: list[tuple[int, ...]] = []
    last_end = -1
    for start in range(len(ranks)):
        end = start
        while end + 1 < len(ranks) and ranks[end + 1] - ranks[start] < critical_difference:
            end += 1
        if end > last_end and end > start:
            out.append(tuple(int(i) for i in order[start : end + 1]))
        last_end = max(last_end, end)
    return out
