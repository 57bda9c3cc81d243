"""``medad report``: one self-contained static HTML page (plots inlined), no server needed.

Sections: the results tables (mean ± std over seeds, best per column in bold); per dataset, ROC and
precision-recall curves and score histograms (normal vs abnormal) of every method, and a gallery of
test images with their anomaly maps and mask outlines for the best method's most and least
convincing cases; the component-study plots (a metric against the one config field that varies
between runs of the same method, e.g. AUROC vs latent size); and failed runs with their errors.
"""

from __future__ import annotations

import base64
import html
import math
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from medad.errors import MedadError
from medad.evaluation import HEADLINE_METRICS
from medad.outputs import check_output_dir, output_dir
from medad.predictions import Predictions
from medad.report import plots
from medad.results.store import STORE_NAME, ReadOnlyStore, ResultsStore, RunRow
from medad.results.tables import METRIC_NAMES, Summary, row_label, run_labels, summarize

CSS = " ".join(
    [
        "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1150px;color:#222;",
        "padding:0 1em}h1{margin-bottom:.2em}",
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
            text = f"{100 * s.mean:.1f} ± {100 * s.std:.1f}" if s.n > 1 else f"{100 * s.mean:.1f}"
            best = summary.best(d, metric)
            cls = ' class="best"' if best is not None and math.isclose(s.mean, best) else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append(f"<tr><td>{html.escape(label)}</td>{''.join(cells)}</tr>")
    return (
        f'<table class="results" data-metric="{metric}"><caption>{METRIC_NAMES[metric]} (%)'
        f"</caption><tr><th>method</th>{head}</tr>{''.join(body)}</table>"
    )


def _first_seed_runs(rows: list[RunRow]) -> dict[tuple[str, str], RunRow]:
    """One representative run per (table row, dataset): the lowest seed (rows as `run_labels`)."""
    labels = run_labels(rows)
    chosen: dict[tuple[str, str], RunRow] = {}
    for r in sorted(rows, key=lambda r: r.seed):
        chosen.setdefault((labels[r.run_id], r.dataset), r)
    return chosen


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


def _studies(rows: list[RunRow], metric: str) -> list[str]:
    """A plot for each config field a method's runs vary (see `_study_groups`)."""
    out = []
    for method, param, group in _study_groups(rows):
        configs = [r.config.get("config", {}) for r in group]
        cells: dict[tuple[str, Any], list[float]] = defaultdict(list)
        for r, c in zip(group, configs, strict=True):
            if metric in r.metrics:
                cells[(r.dataset, c.get(param))].append(r.metrics[metric])
        values = {k for _, k in cells}
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        title = f"{method}: {METRIC_NAMES[metric]} vs {param}"
        if numeric:
            series: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
            for (d, v), vals in cells.items():
                series[d].append((float(v), float(np.mean(vals)), float(np.std(vals))))
            out.append(
                _img(plots.study_figure(title, param, dict(series), METRIC_NAMES[metric]), title)
            )
        else:
            for d in sorted({d for d, _ in cells}):
                bars = {
                    str(v): (float(np.mean(vals)), float(np.std(vals)))
                    for (dd, v), vals in cells.items()
                    if dd == d
                }
                out.append(
                    _img(plots.bar_figure(f"{title} ({d})", bars, METRIC_NAMES[metric]), title)
                )
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
    metrics = [m for m in HEADLINE_METRICS if any(m in r.metrics for r in done)]
    summary = summarize(done, metrics)
    parts = [
        f"<h1>medad report</h1><p class='note'>{len(done)} finished runs in "
        f"<code>{html.escape(str(results))}</code>, {time.strftime('%Y-%m-%d %H:%M')}. "
        "Values in %, mean ± sample std over seeds; best per dataset in bold. Best Dice "
        "chooses its threshold on the test masks: an oracle ceiling.</p>"
    ]
    parts.append("<h2>Results</h2>")
    parts += [summary_html(summary, m) for m in summary.metrics]

    chosen = _first_seed_runs(done)
    for dataset in summary.datasets:
        parts.append(f"<h2>{html.escape(dataset)}</h2>")
        preds = {}
        for label in summary.methods:
            row = chosen.get((label, dataset))
            pred = _load_predictions(store, row) if row is not None else None
            if pred is not None:
                preds[label] = (row, pred)
        if not preds:
            parts.append('<p class="note">no saved predictions</p>')
            continue
        curves = {k: (p.image_scores, p.labels) for k, (_, p) in preds.items()}
        parts.append(_img(plots.roc_pr_figure(dataset, curves), f"ROC and PR curves {dataset}"))
        parts.append(_img(plots.histogram_figure(dataset, curves), f"histograms {dataset}"))
        with_maps = [(k, r, p) for k, (r, p) in preds.items() if p.maps is not None]
        if with_maps:
            best = max(with_maps, key=lambda t: summary.values[(t[0], dataset, "image_auroc")].mean)
            parts.append(f"<h3>Gallery: {html.escape(best[0])}</h3>")
            parts.append(_gallery(store, best[1], best[2], data_root))

    studies = _studies(done, "image_auroc")
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
