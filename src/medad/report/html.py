"""``medad report``: one self-contained static HTML page (plots inlined), no server needed.

Sections: what made the numbers (versions, device, threads, seeds, epochs, data sizes and
fingerprints, wall time; the resolved configuration of every row label); the results tables (mean ±
std over seeds with their count, or a single run's bootstrap interval; test-set sizes; best per
column in bold); statistics (per dataset, bootstrap intervals and DeLong's test against the best
row; across datasets, Friedman's test and a critical-difference diagram, Demšar 2006); metrics at
thresholds fixed without test labels beside the oracle best Dice; per dataset, ROC and
precision-recall curves with their areas, score histograms, pixel-level ROC/PR, training-loss
curves and a gallery of test images with their anomaly maps (one colour bar) and mask outlines for
the best method's most and least convincing cases; the component-study plots (a metric against the
one config field that varies between runs of the same method, e.g. AUROC vs latent size, with
error bars and an axis from chance); and failed runs with their errors.
"""

from __future__ import annotations

import base64
import html
import math
import os
import time
import zipfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medad.errors import MedadError
from medad.evaluation import HEADLINE_METRICS, THRESHOLD_METRICS, Thresholds
from medad.outputs import check_output_dir, output_dir
from medad.predictions import Predictions
from medad.report import plots
from medad.report.provenance import configs_html, provenance_html
from medad.report.significance import (
    REPORT_N_BOOT,
    across_datasets_html,
    loss_curves,
    per_dataset_html,
    thresholds_html,
)
from medad.results.comparison import annotate_summary, run_interval
from medad.results.store import STORE_NAME, ReadOnlyStore, ResultsStore, RunRow
from medad.results.tables import (
    METRIC_NAMES,
    Summary,
    add_intervals,
    caption,
    cell_text,
    row_label,
    run_labels,
    summarize,
)

#: the report's tables: the headline metrics and the paper's own best-Dice variant
REPORT_METRICS = (*HEADLINE_METRICS[:5], "best_dice_paper", *HEADLINE_METRICS[5:])

CSS = " ".join(
    [
        "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1400px;color:#222;",
        "padding:0 1em}h1{margin-bottom:.2em}",
        "table.wide,table.results{width:100%}caption{caption-side:top;text-align:left;",
        "font-size:13px;color:#444;padding:.3em 0}",
        ".provenance{font-size:13px}details{margin:.4em 0}pre{background:#f7f7f7;",
        "padding:.5em;font-size:12px;overflow-x:auto}",
        "h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}",
        "table{border-collapse:collapse;margin:1em 0;font-size:14px}",
        "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}",
        "th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}",
        "td.best{font-weight:bold;background:#eaf6ea}",
        "img{max-width:100%;border:1px solid #eee;margin:.5em 0}",
        ".note{color:#666;font-size:13px}code{background:#f5f5f5;padding:0 3px}",
    ]
)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def summary_html(summary: Summary, metric: str) -> str:
    head = "".join(f"<th>{html.escape(d)}</th>" for d in summary.datasets)
    body = []
    for label in summary.methods:
        cells = []
        for d in summary.datasets:
            s = summary.values.get((label, d, metric))
            if s is None:
                cells.append("<td>–</td>")
                continue
            best = summary.best(d, metric)
            cls = ' class="best"' if best is not None and math.isclose(s.mean, best) else ""
            cells.append(f"<td{cls}>{html.escape(cell_text(summary, label, d, metric))}</td>")
        body.append(f"<tr><td>{html.escape(label)}</td>{''.join(cells)}</tr>")
    sizes = "; ".join(
        f"{html.escape(d)}: n = {n[0]} + {n[1]}"
        for d, n in summary.test_sizes.items()
        if n is not None
    )
    one = Summary(
        summary.methods,
        summary.datasets,
        [metric],
        {k: v for k, v in summary.values.items() if k[2] == metric},
        test_sizes={},
        ci_level=summary.ci_level,
    )
    return (
        f'<table class="results" data-metric="{metric}"><caption>{html.escape(caption(one))}'
        f"{f' ({sizes} test images, normal + abnormal)' if sizes else ''}</caption>"
        f"<tr><th>method</th>{head}</tr>{''.join(body)}</table>"
    )


def _first_seed_runs(rows: list[RunRow]) -> dict[tuple[str, str], RunRow]:
    """One representative run per (table row, dataset): the lowest seed (rows as `run_labels`)."""
    labels = run_labels(rows)
    chosen: dict[tuple[str, str], RunRow] = {}
    for r in sorted(rows, key=lambda r: r.seed):
        chosen.setdefault((labels[r.run_id], r.dataset), r)
    return chosen


def _image_predictions(store: ResultsStore, row: RunRow) -> Predictions | None:
    """A run's image-level predictions only (an npz member is read only when asked for, so the
    maps of large test sets stay on disk)."""
    path = store.run_path(row)
    if path is None or not (path / "predictions.npz").is_file():
        return None
    try:
        with np.load(path / "predictions.npz", allow_pickle=False) as z:
            return Predictions([str(i) for i in z["ids"]], z["labels"], z["image_scores"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # damaged: no interval
        return None


def _load_predictions(store: ResultsStore, row: RunRow) -> Predictions | None:
    path = store.run_path(row)
    if path is None or not (path / "predictions.npz").is_file():
        return None
    return Predictions.load(path / "predictions.npz")


def _gallery(store: ResultsStore, row: RunRow, pred: Predictions, data_root: Path | None) -> str:
    """Images of the run's test split with its maps: top-scored abnormal (best), lowest-scored
    abnormal (missed) and top-scored normal (false alarms)."""
    from medad import runs
    from medad.data.loading import load_split
    from medad.methods.base import method_class

    cfg = row.config
    spec = runs.RunSpec(
        row.method,
        row.dataset,
        row.seed,
        dict(cfg.get("config", {})),
        dict(cfg.get("dataset_options", {})),
    )
    try:
        planned = runs.plan(spec, data_root)
        pre = method_class(row.method).preprocess(planned.config, planned.dataset.channels)
        cache = store.root / ".cache"  # filled when the results folder can be written
        writable = os.access(cache if cache.is_dir() else store.root, os.W_OK)
        test = load_split(planned.dataset, "test", pre, cache if writable else None)
    except MedadError as exc:
        return f'<p class="note">gallery unavailable: {html.escape(str(exc))}</p>'
    if test.ids != pred.ids:
        return '<p class="note">gallery unavailable: the dataset changed since the run</p>'
    s, y = pred.image_scores, pred.labels
    ab, no = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    best = ab[np.argsort(-s[ab])][:3]
    missed = ab[np.argsort(s[ab])][:3]
    alarms = no[np.argsort(-s[no])][:2]
    idx = np.concatenate([best, missed, alarms])
    caps = [f"abnormal, rank {i + 1}" for i in range(len(best))]
    caps += ["abnormal, missed"] * len(missed) + ["normal, false alarm"] * len(alarms)
    caps = [f"{c}\nscore {s[i]:.3g}" for c, i in zip(caps, idx, strict=True)]
    png = plots.gallery_figure(
        f"{row.dataset}: {row_label(row)} (seed {row.seed})",
        test.images[idx],
        pred.maps[idx],
        test.masks[idx] if test.masks is not None else None,
        caps,
    )
    return _img(png, f"gallery {row.dataset} {row_label(row)}")


#: most pixels per method drawn in the pixel ROC/PR curves (the areas in the legend use all)
MAX_CURVE_PIXELS = 500_000


def _pixel_curves(
    preds: dict[str, tuple[RunRow, Predictions]],
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, tuple[float, float]]] | None:
    """Pixel-level curves of the rows with maps and masks: the same seeded sample of pixels for
    every row, and the exact pooled AUROC and AP of all pixels for the legends."""
    from medad import metrics

    with_pixels = {
        k: p for k, (_, p) in preds.items()
        if p.maps is not None and p.masks is not None and p.masks.any()
    }  # fmt: skip
    if not with_pixels:
        return None
    curves, areas = {}, {}
    for label, p in with_pixels.items():
        scores, truth = p.maps.reshape(-1), p.masks.reshape(-1)
        if scores.size > MAX_CURVE_PIXELS:
            keep = np.random.default_rng(0).choice(scores.size, MAX_CURVE_PIXELS, replace=False)
            scores, truth = scores[keep], truth[keep]
        curves[label] = (scores, truth)
        areas[label] = (metrics.pixel_auroc(p.maps, p.masks), metrics.pixel_ap(p.maps, p.masks))
    return curves, areas


def _study_groups(rows: list[RunRow]) -> list[tuple[str, str, list[RunRow]]]:
    """(method, field, runs) for each config field that varies among a method's runs on a dataset
    while its other varying fields stay fixed (with several such groups, the one with the most
    values of the field), gathered over datasets. So a stray run (another epoch count next to a
    latent-size study) neither hides the study nor joins it, and a per-dataset budget (Brain
    Tumor's 600 epochs) does not split it."""

    def value(r: RunRow, key: str) -> str:
        return repr(r.config.get("config", {}).get(key))

    cells: dict[tuple[str, str], list[RunRow]] = defaultdict(list)
    for r in rows:
        cells[(r.method, r.dataset)].append(r)
    found: dict[tuple[str, str], list[RunRow]] = defaultdict(list)
    for (method, _), group in cells.items():
        keys = sorted({k for r in group for k in r.config.get("config", {})})
        varying = [k for k in keys if len({value(r, k) for r in group}) > 1]
        for param in varying:
            parts: dict[tuple[str, ...], list[RunRow]] = defaultdict(list)
            for r in group:
                parts[tuple(value(r, k) for k in varying if k != param)].append(r)
            best = max(parts.values(), key=lambda g: len({value(r, param) for r in g}))
            if len({value(r, param) for r in best}) > 1:
                found[(method, param)] += best
    return [(method, param, runs) for (method, param), runs in found.items()]


def _studies(
    rows: list[RunRow], metric: str, half_width: Callable[[RunRow], float | None]
) -> list[str]:
    """A plot for each config field a method's runs vary (see `_study_groups`). Error bars: the
    sample std over seeds where a point has several, else the half-width of the run's 95 %
    bootstrap interval (`half_width`); the caption says which."""
    out = []
    for method, param, group in _study_groups(rows):
        configs = [r.config.get("config", {}) for r in group]
        cells: dict[tuple[str, Any], list[RunRow]] = defaultdict(list)
        for r, c in zip(group, configs, strict=True):
            if metric in r.metrics:
                cells[(r.dataset, c.get(param))].append(r)

        def point(runs: list[RunRow]) -> tuple[float, float]:
            vals = [r.metrics[metric] for r in runs]
            if len(vals) > 1:
                return float(np.mean(vals)), float(np.std(vals, ddof=1))
            return float(vals[0]), half_width(runs[0]) or 0.0

        seeds = sorted({len(v) for v in cells.values()})
        bars_are = (
            f"error bars: sample std over {'/'.join(map(str, seeds))} seeds"
            if seeds[0] > 1
            else "error bars: ± half the single run's 95 % bootstrap interval"
            if seeds == [1]
            else "error bars: std over seeds, or ± half a single run's 95 % bootstrap interval"
        )
        values = {k for _, k in cells}
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        title = f"{method}: {METRIC_NAMES[metric]} vs {param}"
        if numeric:
            series: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
            for (d, v), runs in cells.items():
                series[d].append((float(v), *point(runs)))
            png = plots.study_figure(f"{title}\n({bars_are})", param, dict(series),
                                     METRIC_NAMES[metric])  # fmt: skip
            out.append(_img(png, title))
        else:
            for d in sorted({d for d, _ in cells}):
                bars = {str(v): point(runs) for (dd, v), runs in cells.items() if dd == d}
                png = plots.bar_figure(f"{title} ({d})\n({bars_are})", bars, METRIC_NAMES[metric])
                out.append(_img(png, title))
    return out


def build_report(
    results: Path, out: Path, *, data_root: Path | None = None, overwrite: bool = False
) -> Path:
    """Write ``OUT/index.html`` for the results folder `results`; returns its path.

    `out` follows `medad.outputs`: a new or empty folder, or (with `overwrite`) an earlier report;
    never the results folder, its ``runs/`` or ``.cache/``, or a folder holding it (a new folder
    beside the store, such as ``OUT/report``, is fine).
    """
    results, out = Path(results), Path(out)
    if not (results / STORE_NAME).is_file():
        raise MedadError(f"{results / STORE_NAME}: no results store here (run `medad bench` first)")
    check_output_dir(out, "report", overwrite=overwrite)  # the store rules cover --results
    store = ReadOnlyStore(results)
    rows = store.rows()
    done = [r for r in rows if r.status == "done"]
    if not done:
        raise MedadError(f"{results}: no finished runs to report")
    metrics = [m for m in REPORT_METRICS if any(m in r.metrics for r in done)]
    summary = summarize(done, metrics)
    image_metrics = ("image_auroc", "image_ap")

    intervals: dict[tuple[str, str], tuple[float, float] | None] = {}

    def interval(row: RunRow, metric: str) -> tuple[float, float] | None:
        """Single runs' intervals of image metrics, each computed once (pixel-metric bootstraps
        re-sort every pixel per resample: `medad table --ci` computes them on request)."""
        key = (row.run_id, metric)
        if key not in intervals:
            pred = _image_predictions(store, row) if metric in image_metrics else None
            found = run_interval(pred, metric, n_boot=REPORT_N_BOOT) if pred else None
            intervals[key] = (found.low, found.high) if found else None
        return intervals[key]

    annotate_summary(summary, store)
    add_intervals(summary, interval, 0.95)
    labels = run_labels(done)
    parts = [
        f"<h1>medad report</h1><p class='note'>{len(done)} finished runs in "
        f"<code>{html.escape(str(results))}</code>, {time.strftime('%Y-%m-%d %H:%M')}. "
        "Values in %; several seeds: mean ± sample std (the tables say over how many); one "
        "seed: the value and, for image metrics, its 95 % bootstrap interval [low, high]. Best "
        "per dataset in bold. Best Dice* chooses its threshold on the test masks: an oracle "
        "ceiling; the thresholds section gives the honest counterpart.</p>",
        provenance_html(store, done, labels),
        "<details class='configs'><summary>Resolved configuration of each row</summary>",
        configs_html(done, labels),
        "</details>",
    ]
    parts.append("<h2>Results</h2>")
    parts += [summary_html(summary, m) for m in summary.metrics]

    chosen = _first_seed_runs(done)
    loaded: dict[str, dict[str, tuple[RunRow, Predictions]]] = {}
    for dataset in summary.datasets:
        preds = {}
        for label in summary.methods:
            row = chosen.get((label, dataset))
            pred = _load_predictions(store, row) if row is not None else None
            if pred is not None:
                preds[label] = (row, pred)
        loaded[dataset] = preds

    parts.append("<h2>Statistics</h2>")
    text, images = across_datasets_html(summary)
    parts.append(text)
    parts += [_img(png, "critical difference diagram") for png in images]
    for dataset in summary.datasets:
        parts.append(per_dataset_html(dataset, loaded[dataset], summary))

    parts.append("<h2>Thresholds fixed without test labels</h2>")
    threshold_summary = summarize(
        done, [m for m in ("sens_at_95spec", *THRESHOLD_METRICS, "best_dice")
               if any(m in r.metrics for r in done)] or ["image_auroc"],
    )  # fmt: skip
    sources = {}
    for key, row in chosen.items():
        folder = store.run_path(row)
        try:
            sources[key] = Thresholds.load(folder) if folder is not None else None
        except MedadError:
            sources[key] = None
    parts.append(thresholds_html(threshold_summary, sources))

    for dataset in summary.datasets:
        parts.append(f"<h2>{html.escape(dataset)}</h2>")
        preds = loaded[dataset]
        if not preds:
            parts.append('<p class="note">no saved predictions</p>')
            continue
        curves = {k: (p.image_scores, p.labels) for k, (_, p) in preds.items()}
        parts.append(_img(plots.roc_pr_figure(dataset, curves), f"ROC and PR curves {dataset}"))
        parts.append(_img(plots.histogram_figure(dataset, curves), f"histograms {dataset}"))
        pixel = _pixel_curves(preds)
        if pixel is not None:
            parts.append(
                _img(plots.roc_pr_figure(f"{dataset} pixels", *pixel), f"pixel ROC/PR {dataset}")
            )
        losses = loss_curves(store, {k: r for k, (r, _) in preds.items()})
        if losses:
            title = f"{dataset}: training loss (seed of each row's first run)"
            parts.append(_img(plots.loss_figure(title, losses), f"training loss {dataset}"))
        with_maps = [(k, r, p) for k, (r, p) in preds.items() if p.maps is not None]
        if with_maps:
            best = max(with_maps, key=lambda t: summary.values[(t[0], dataset, "image_auroc")].mean)
            parts.append(f"<h3>Gallery: {html.escape(best[0])}</h3>")
            parts.append(_gallery(store, best[1], best[2], data_root))

    def half_width(row: RunRow) -> float | None:
        found = interval(row, "image_auroc")
        return None if found is None else (found[1] - found[0]) / 2

    studies = _studies(done, "image_auroc", half_width)
    if studies:
        parts.append("<h2>Component studies</h2>")
        parts += studies
    failed = [r for r in rows if r.status == "failed"]
    if failed:
        parts.append("<h2>Failed runs</h2><ul>")
        parts += [
            f"<li><code>{html.escape(r.run_id)}</code>: {html.escape(r.error or '')}</li>"
            for r in failed
        ]
        parts.append("</ul>")

    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>medad report</title>"
        f"<style>{CSS}</style></head><body>{''.join(parts)}"
        "<script>window.addEventListener('load',function(){var n=0;"
        "document.querySelectorAll('img.plot').forEach(function(i){if(i.naturalWidth>0)n++;});"
        "document.body.setAttribute('data-plots-loaded',n);});</script></body></html>"
    )
    with output_dir(out, "report", overwrite=overwrite) as stage:
        (stage / "index.html").write_text(page, encoding="utf-8")
    return out / "index.html"
