"""Bootstrap intervals cover, DeLong equals its brute-force definition, Friedman and the critical
difference match scipy and Demšar's (2006) worked example."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import friedmanchisquare, norm, wilcoxon
from sklearn.metrics import roc_auc_score

from medad.errors import MedadError
from medad.metrics import image_ap, pixel_ap
from medad.metrics.statistics import (
    bootstrap_auroc,
    bootstrap_metric,
    cliques,
    delong_test,
    friedman_test,
    holm,
    nemenyi_critical_difference,
    paired_bootstrap,
    rank_methods,
    stratified_resamples,
    wilcoxon_holm,
)


def test_resamples_keep_the_label_counts_and_are_seeded():
    labels = np.array([0, 1, 1, 0, 0, 1, 0], bool)
    idx = stratified_resamples(labels, 50, seed=3)
    assert idx.shape == (50, 7)
    assert np.all(labels[idx].sum(axis=1) == 3)
    assert np.array_equal(idx, stratified_resamples(labels, 50, seed=3))
    assert not np.array_equal(idx, stratified_resamples(labels, 50, seed=4))


def test_bootstrap_auroc_interval_covers_the_true_auroc_at_the_nominal_rate():
    # binormal: normal ~ N(0, 1), abnormal ~ N(d, 1) → AUROC = Φ(d / √2)
    d = 1.0
    true_auroc = norm.cdf(d / math.sqrt(2))
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(60), np.ones(60)].astype(bool)
    covered = 0
    for trial in range(200):
        scores = rng.normal(size=120) + d * labels
        ci = bootstrap_auroc(scores, labels, n_boot=400, seed=trial)
        assert ci.low <= ci.estimate <= ci.high
        covered += ci.low <= true_auroc <= ci.high
    assert covered / 200 >= 0.90


def test_bootstrap_auroc_estimate_is_the_auroc_with_ties():
    rng = np.random.default_rng(1)
    labels = rng.random(80) < 0.4
    scores = rng.integers(0, 5, 80).astype(float)  # many ties
    ci = bootstrap_auroc(scores, labels, n_boot=100)
    assert ci.estimate == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_generic_bootstrap_matches_the_vectorised_auroc_bootstrap():
    rng = np.random.default_rng(2)
    labels = rng.random(50) < 0.5
    scores = rng.normal(size=50) + labels
    fast = bootstrap_auroc(scores, labels, n_boot=200, seed=7)
    slow = bootstrap_metric(
        lambda i: roc_auc_score(labels[i], scores[i]), labels, n_boot=200, seed=7
    )
    assert (fast.low, fast.high) == pytest.approx((slow.low, slow.high), abs=1e-12)


def test_pixel_bootstrap_resamples_whole_images():
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(6), np.ones(6)].astype(bool)
    masks = np.zeros((12, 8, 8), bool)
    masks[6:, 2:5, 2:5] = True
    maps = rng.random((12, 8, 8)) + masks
    seen = []

    def metric(i):
        seen.append(i)
        return pixel_ap(maps[i], masks[i])

    ci = bootstrap_metric(metric, labels, n_boot=30)
    assert ci.estimate == pytest.approx(pixel_ap(maps, masks))
    assert all(i.size == 12 and labels[i].sum() == 6 for i in seen)


def test_paired_bootstrap_of_a_method_against_itself_is_zero_and_of_a_better_one_is_positive():
    rng = np.random.default_rng(4)
    labels = np.r_[np.zeros(40), np.ones(40)].astype(bool)
    good = rng.normal(size=80) + 2.5 * labels
    poor = rng.normal(size=80) + 0.2 * labels

    def ap(s):
        return lambda i: image_ap(s[i], labels[i])

    same, p_same = paired_bootstrap(ap(good), ap(good), labels, n_boot=100)
    assert (same.estimate, same.low, same.high, p_same) == (0.0, 0.0, 0.0, 1.0)
    diff, p = paired_bootstrap(ap(good), ap(poor), labels, n_boot=200)
    assert diff.low > 0 and p < 0.05


def _brute_force_delong(a, b, labels):
    """DeLong et al. (1988) straight from the definition: ψ over every (positive, negative) pair,
    structural components as row/column means, sample covariances written out."""

    def components(s):
        pos, neg = s[labels], s[~labels]
        psi = np.zeros((pos.size, neg.size))
        for i, x in enumerate(pos):
            for j, y in enumerate(neg):
                psi[i, j] = 1.0 if x > y else 0.5 if x == y else 0.0
        return psi.mean(axis=1), psi.mean(axis=0), psi.mean()

    v10a, v01a, auc_a = components(a)
    v10b, v01b, auc_b = components(b)

    def cov(u, v):
        return sum((u - u.mean()) * (v - v.mean())) / (u.size - 1)

    m, n = v10a.size, v01a.size
    s = np.array(
        [
            [cov(v10a, v10a) / m + cov(v01a, v01a) / n, cov(v10a, v10b) / m + cov(v01a, v01b) / n],
            [cov(v10b, v10a) / m + cov(v01b, v01a) / n, cov(v10b, v10b) / m + cov(v01b, v01b) / n],
        ]
    )
    z = (auc_a - auc_b) / math.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])
    return auc_a, auc_b, s, math.erfc(abs(z) / math.sqrt(2))


@pytest.mark.parametrize("seed", range(5))
def test_delong_equals_the_brute_force_structural_components_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 30 + 10 * seed
    labels = rng.random(n) < 0.45
    labels[:2], labels[2:4] = True, False
    a = np.round(rng.normal(size=n) + labels, 1)  # rounded: many ties within and across labels
    b = rng.integers(0, 4, n).astype(float) + 0.5 * a * labels
    result = delong_test(a, b, labels)
    auc_a, auc_b, s, p = _brute_force_delong(a, b, labels)
    assert result.aurocs == pytest.approx([auc_a, auc_b], abs=1e-12)
    assert np.allclose(result.covariance, s, atol=1e-10, rtol=0)
    assert abs(result.p_value - p) < 1e-10
    assert result.aurocs[0] == pytest.approx(roc_auc_score(labels, a), abs=1e-12)


def test_delong_of_identical_scores_and_bad_input():
    labels = np.array([0, 0, 1, 1, 0, 1], bool)
    s = np.arange(6.0)
    assert delong_test(s, s, labels).p_value == 1.0
    with pytest.raises(MedadError, match="same test images"):
        delong_test(s, s[:5], labels)
    with pytest.raises(MedadError, match="at least 2 normal and 2 abnormal"):
        delong_test(s[:4], s[:4], np.array([0, 1, 1, 1]))


# Demšar (2006), Table 6: AUC of C4.5, C4.5+m, C4.5+cf, C4.5+m+cf on 14 data sets
DEMSAR_TABLE_6 = np.array(
    [
        [0.763, 0.768, 0.771, 0.798],  # adult (sample)
        [0.599, 0.591, 0.590, 0.569],  # breast cancer
        [0.954, 0.971, 0.968, 0.967],  # breast cancer wisconsin
        [0.628, 0.661, 0.654, 0.657],  # cmc
        [0.882, 0.888, 0.886, 0.898],  # ionosphere
        [0.936, 0.931, 0.916, 0.931],  # iris
        [0.661, 0.668, 0.609, 0.685],  # liver disorders
        [0.583, 0.583, 0.563, 0.625],  # lung cancer
        [0.775, 0.838, 0.866, 0.875],  # lymphography
        [1.000, 1.000, 1.000, 1.000],  # mushroom
        [0.940, 0.962, 0.965, 0.962],  # primary tumor
        [0.619, 0.666, 0.614, 0.669],  # rheum
        [0.972, 0.981, 0.975, 0.975],  # voting (printed rounded: see below)
        [0.957, 0.978, 0.946, 0.970],  # wine
    ]
)


def test_ranks_friedman_and_critical_difference_match_demsar_worked_example():
    ranks = rank_methods(DEMSAR_TABLE_6)
    assert ranks[9].tolist() == [2.5] * 4  # mushroom: all tied
    assert ranks[12].tolist() == [4.0, 1.0, 2.5, 2.5]  # voting as printed
    # Demšar ranks voting (4, 1, 2, 3): the table prints AUCs rounded to 3 decimals, and C4.5+cf
    # was the higher of the two before rounding; with that order his mean ranks follow exactly
    table = DEMSAR_TABLE_6.copy()
    table[12, 2] += 1e-5
    result = friedman_test(table, tie_correction=False)
    assert np.round(result.mean_ranks, 3).tolist() == [3.143, 2.000, 2.893, 1.964]
    assert round(result.chi2, 2) == 9.28
    assert round(result.iman_davenport, 2) == 3.69
    cd = nemenyi_critical_difference(4, 14)
    assert round(cd, 2) == 1.25
    # "the only significant difference is C4.5 vs C4.5+m+cf" (3.143 − 1.964 = 1.18 < 1.25):
    # no pair differs by the CD at 0.05, so one bar spans all four methods
    assert cliques(result.mean_ranks, cd) == [(3, 1, 2, 0)]


def test_friedman_with_ties_equals_scipy():
    rng = np.random.default_rng(5)
    table = rng.integers(0, 4, size=(9, 5)).astype(float)
    ours = friedman_test(table)
    theirs = friedmanchisquare(*table.T)
    assert ours.chi2 == pytest.approx(theirs.statistic, abs=1e-10)
    assert ours.p_value == pytest.approx(theirs.pvalue, abs=1e-10)


def test_critical_difference_constants_are_demsar_table_5():
    q = [nemenyi_critical_difference(k, 1) / math.sqrt(k * (k + 1) / 6) for k in range(2, 11)]
    table_5 = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]
    assert q == pytest.approx(table_5, abs=1e-3)  # the table truncates: 2.3437 is printed 2.343


def test_cliques_are_maximal_runs_within_the_cd():
    ranks = np.array([1.0, 1.5, 2.6, 4.0, 4.2])
    assert cliques(ranks, 1.2) == [(0, 1), (1, 2), (3, 4)]
    assert cliques(ranks, 0.1) == []


def test_holm_and_wilcoxon_holm():
    assert holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = wilcoxon_holm(DEMSAR_TABLE_6)
    assert [(i, j) for i, j, _, _ in out] == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    raw = wilcoxon(DEMSAR_TABLE_6[:, 0], DEMSAR_TABLE_6[:, 3]).pvalue
    assert out[2][2] == pytest.approx(raw)
    assert out[2][3] == pytest.approx(holm([p for *_, p, _ in out])[2])


def test_ranking_rejects_missing_values():
    with pytest.raises(MedadError, match="every method"):
        rank_methods(np.array([[0.5, np.nan], [0.6, 0.7]]))
