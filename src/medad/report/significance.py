"""The report's statistics: per dataset, bootstrap intervals and DeLong's test against the best
row; across datasets, Friedman's test, the Nemenyi critical-difference diagram and Wilcoxon-Holm
(Demšar 2006; `medad.metrics.statistics`); and the metrics at thresholds fixed without test labels.
"""

from __future__ import annotations

import html
import math

import numpy as np

from medad.errors import MedadError
from medad.evaluation import THRESHOLD_METRICS, Thresholds
from medad.metrics.statistics import (
    cliques,
    delong_test,
    friedman_test,
    nemenyi_critical_difference,
    wilcoxon_holm,
)
from medad.predictions import Predictions
from medad.report import plots
from medad.results.comparison import run_interval
from medad.results.store import ResultsStore, RunRow
from medad.results.tables import METRIC_NAMES, Summary

#: resamples for the report's intervals (image metrics only: fast, and stable to ~0.2 points)
REPORT_N_BOOT = 1000


def _p(p: float) -> str:
    return "&lt; 0.001" if p < 1e-3 else f"{p:.3f}"


def _p_is(p: float) -> str:
    return "p &lt; 0.001" if p < 1e-3 else f"p = {p:.3f}"


def per_dataset_html(
    dataset: str, preds: dict[str, tuple[RunRow, Predictions]], summary: Summary
) -> str:
    """Image AUROC and AP of each row's first-seed run with 95 % bootstrap intervals, and DeLong's
    test of its AUROC against the row with the best AUROC on the same test images."""
    if not preds:
        return ""
    aurocs = {
        k: run_interval(p, "image_auroc", n_boot=REPORT_N_BOOT) for k, (_, p) in preds.items()
    }
    best = max(aurocs, key=lambda k: aurocs[k].estimate)
    body = []
    for label, (row, pred) in preds.items():
        ap = run_interval(pred, "image_ap", n_boot=REPORT_N_BOOT)
        a = aurocs[label]
        if label == best:
            versus = "best"
        else:
            try:
                test = delong_test(pred.image_scores, preds[best][1].image_scores, pred.labels)
                versus = f"{100 * test.difference:+.1f}, {_p_is(test.p_value)}"
            except MedadError as exc:
                versus = html.escape(str(exc))
        seeds = summary.values.get((label, dataset, "image_auroc"))
        cells = [
            html.escape(label),
            str(row.seed) + (f" of {seeds.n}" if seeds and seeds.n > 1 else ""),
            f"{100 * a.estimate:.1f} [{100 * a.low:.1f}, {100 * a.high:.1f}]",
            f"{100 * ap.estimate:.1f} [{100 * ap.low:.1f}, {100 * ap.high:.1f}]",
            versus,
        ]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    n_abnormal = int(np.count_nonzero(next(iter(preds.values()))[1].labels))
    n = len(next(iter(preds.values()))[1].labels)
    return (
        f"<table class='statistics wide' data-dataset='{html.escape(dataset)}'><caption>"
        f"{html.escape(dataset)} (n = {n - n_abnormal} normal + {n_abnormal} abnormal): one run "
        f"per row (the seed shown), 95 % stratified bootstrap intervals ({REPORT_N_BOOT} "
        "resamples of the test images within each label); last column: the row's AUROC minus the "
        "best row's, and DeLong's two-sided p on the same images</caption><tr><th>row</th>"
        "<th>seed</th><th>image AUROC [95 % CI]</th><th>image AP [95 % CI]</th>"
        f"<th>vs {html.escape(best)} (DeLong)</th></tr>{''.join(body)}</table>"
    )


def across_datasets_html(summary: Summary, metric: str = "image_auroc") -> tuple[str, list[str]]:
    """Friedman's test, the CD diagram and Wilcoxon-Holm over the rows with a result on every
    dataset; returns (html, image tags)."""
    datasets = summary.datasets
    rows = [m for m in summary.methods if all((m, d, metric) in summary.values for d in datasets)]
    n_data = len(summary.datasets)
    if len(rows) < 2 or n_data < 2:
        return (
            "<p class='note'>Ranks across datasets need at least 2 rows with results on at least "
            f"2 datasets (here {len(rows)} rows on {n_data} datasets).</p>",
            [],
        )
    table = np.array(
        [[summary.values[(m, d, metric)].mean for m in rows] for d in summary.datasets]
    )
    result = friedman_test(table)
    cd = nemenyi_critical_difference(len(rows), n_data)
    mean_ranks = dict(zip(rows, result.mean_ranks.tolist(), strict=True))
    groups = [tuple(rows[i] for i in g) for g in cliques(result.mean_ranks, cd)]
    title = (
        f"Mean rank by {METRIC_NAMES[metric]} over {n_data} datasets (1 = best); "
        f"Nemenyi CD at α = 0.05"
    )
    image = plots.cd_diagram(title, mean_ranks, cd, groups)
    text = [
        f"<p>Friedman test over {n_data} datasets and {len(rows)} rows ({METRIC_NAMES[metric]}, "
        f"mean over seeds): χ²<sub>F</sub> = {result.chi2:.2f}, {_p_is(result.p_value)}; "
        f"Iman-Davenport F<sub>F</sub> = {result.iman_davenport:.2f}"
        + (f", {_p_is(result.p_value_f)}" if math.isfinite(result.p_value_f) else "")
        + f". Nemenyi critical difference of mean ranks: {cd:.2f}. Rows joined by a bar in "
        "the diagram do not differ significantly.</p>"
    ]
    if n_data < 5:
        text.append(
            f"<p class='note'>With {n_data} datasets these tests have little power: no "
            "difference can be significant; the ranks are descriptive (Demšar 2006 uses ≥ 10 "
            "datasets).</p>"
        )
    pairs = wilcoxon_holm(table)
    body = "".join(
        f"<tr><td>{html.escape(rows[i])}</td><td>{html.escape(rows[j])}</td>"
        f"<td>{_p(p)}</td><td>{_p(q)}</td></tr>"
        for i, j, p, q in pairs
    )
    text.append(
        "<details><summary>Pairwise Wilcoxon signed-rank tests over datasets, Holm-corrected"
        "</summary><table class='wilcoxon'><tr><th>row</th><th>row</th><th>p</th>"
        f"<th>p (Holm)</th></tr>{body}</table></details>"
    )
    return "".join(text), [image]


def thresholds_html(summary: Summary, sources: dict[tuple[str, str], Thresholds | None]) -> str:
    """Metrics at thresholds fixed without test labels, beside the oracle best Dice, with the
    protocol each row used; `sources[(label, dataset)]` are the thresholds of its first run."""
    columns = ["sens_at_95spec", *THRESHOLD_METRICS, "best_dice"]
    columns = [c for c in columns if any(k[2] == c for k in summary.values)]
    if not any(k[2] in THRESHOLD_METRICS for k in summary.values):
        return (
            "<p class='note'>No run here saved thresholds (runs made before medad recorded "
            "them).</p>"
        )
    head = "".join(f"<th>{html.escape(METRIC_NAMES[c])}</th>" for c in columns)
    body = []
    for d in summary.datasets:
        for label in summary.methods:
            if (label, d) not in summary.runs:
                continue
            t = sources.get((label, d))
            protocol = (
                f"{100 * t.target_fpr:g} % FPR on {t.n_images} "
                + ("held-out normal images" if t.source == "validation" else "training images")
                if t
                else "–"
            )
            cells = []
            for c in columns:
                s = summary.values.get((label, d, c))
                cells.append("–" if s is None else f"{100 * s.mean:.1f}")
            body.append(
                f"<tr><td>{html.escape(label)}</td><td>{html.escape(d)}</td>"
                f"<td>{html.escape(protocol)}</td>{''.join(f'<td>{c}</td>' for c in cells)}</tr>"
            )
    return (
        "<table class='thresholds wide'><caption>%, mean over seeds. @thr: at thresholds fixed "
        "before testing, the score a target share (FPR) of normal images, or of their pixels, "
        "reaches; read from normal training images held out before training "
        "(<code>--set validation_fraction=0.1</code>) or, by default, from the training images "
        "themselves (in-sample, so test FPR tends to run higher). Sens@95%Spec: a point of the "
        "test ROC curve. Best Dice*: threshold chosen on the test masks, an oracle ceiling."
        f"</caption><tr><th>row</th><th>dataset</th><th>threshold protocol</th>{head}</tr>"
        f"{''.join(body)}</table>"
    )


def loss_curves(store: ResultsStore, runs: dict[str, RunRow]) -> dict[str, list[tuple[int, float]]]:
    """Training loss per epoch of each row's run, from its ``train.json`` (`TrainHistory`)."""
    import json

    out: dict[str, list[tuple[int, float]]] = {}
    for label, row in runs.items():
        folder = store.run_path(row)
        path = folder / "train.json" if folder is not None else None
        if path is None or not path.is_file():
            continue
        try:
            epochs = json.loads(path.read_text()).get("epochs", [])
        except ValueError:
            continue
        points = []
        for i, entry in enumerate(epochs):  # epochs of all stages, one after another
            loss = entry.get("loss")
            if isinstance(loss, int | float) and math.isfinite(loss):
                points.append((i + 1, float(loss)))
        if points:
            out[label] = points
    return out
