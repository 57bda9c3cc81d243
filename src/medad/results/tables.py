"""Tables of results: mean ± std over seeds, methods × datasets, in the paper's layout.

A row is one configuration: runs that differ in anything but the seed are never averaged together
(`run_labels` names each row after what differs).

Values are percentages with one decimal, as in PAPER.md's tables; the standard deviation is the
sample standard deviation over seeds (ddof = 1; 0 for a single seed). The best mean of each column
is marked (bold in Markdown and LaTeX, bold green in the terminal); every metric here is
higher-is-better.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from rich.table import Table

from medad.errors import MedadError
from medad.results.store import RunRow

METRIC_NAMES = {
    "image_auroc": "Image AUROC",
    "image_ap": "Image AP",
    "pixel_auroc": "Pixel AUROC",
    "pixel_ap": "Pixel AP",
    "best_dice": "Best Dice*",
    "best_dice_paper": "Best Dice* (paper)",
    "aupro": "AUPRO@0.3",
}
FORMATS = ("rich", "md", "csv", "latex")


@dataclass
class Stat:
    mean: float
    std: float
    n: int


@dataclass
class Summary:
    methods: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    values: dict[tuple[str, str, str], Stat] = field(default_factory=dict)

    def best(self, dataset: str, metric: str) -> float | None:
        means = [s.mean for (m, d, k), s in self.values.items() if d == dataset and k == metric]
        return max(means) if means else None


def row_label(row: RunRow) -> str:
    """The label a run was given (its bench entry's label), else its method name."""
    return row.tag or row.method


def _config_fields(row: RunRow) -> dict[str, Any]:
    """The resolved method config and dataset options of a run, one flat mapping; nested mappings
    become dotted keys (``anomaly_params.blend``), as ``--set`` writes them."""
    cfg = row.config or {}

    def flat(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in mapping.items():
            if isinstance(value, dict) and value:
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    return {**flat(cfg.get("dataset_options") or {}), **flat(cfg.get("config") or {})}


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def run_labels(rows: list[RunRow]) -> dict[str, str]:
    """The table label of each run (by run id): runs are grouped by configuration, not by name.

    Runs sharing a label and a dataset but not a configuration (``config_hash``: everything but
    the seed) would otherwise be averaged as if they were seeds, e.g. a 3-epoch ``medad run`` next
    to a 30-epoch bench run. Such runs get the fields that differ among them added to the label,
    ``ae (epochs=3)`` and ``ae (epochs=30)``, for every dataset the label appears on, so rows stay
    aligned; the config hash is added when no recorded field tells them apart.
    """
    groups: dict[tuple[str, str], list[RunRow]] = defaultdict(list)
    for r in rows:
        groups[(row_label(r), r.dataset)].append(r)
    differing: dict[str, set[str]] = defaultdict(set)
    for (label, _), group in groups.items():
        if len({r.config_hash for r in group}) > 1:
            configs = [_config_fields(r) for r in group]
            keys = {k for c in configs for k in c}
            differing[label] |= {
                k for k in keys if len({_value_text(c.get(k, "–")) for c in configs}) > 1
            }
    labels: dict[str, str] = {}
    for r in rows:
        base, fields = row_label(r), _config_fields(r)
        parts = [f"{k}={_value_text(fields.get(k, '–'))}" for k in sorted(differing[base])]
        labels[r.run_id] = f"{base} ({', '.join(parts)})" if parts else base
    shown: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in rows:
        shown[(labels[r.run_id], r.dataset)].add(r.config_hash)
    for r in rows:
        if len(shown[(labels[r.run_id], r.dataset)]) > 1:
            labels[r.run_id] += f" [config {r.config_hash}]"
    return labels


def summarize(rows: list[RunRow], metrics: list[str]) -> Summary:
    """Group finished runs by configuration and dataset (labelled by `run_labels`) and aggregate
    each metric over their seeds."""
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        raise MedadError(f"unknown metric {unknown[0]!r}; known: {', '.join(METRIC_NAMES)}")
    summary = Summary(metrics=list(metrics))
    done = [row for row in rows if row.status == "done"]
    labels = run_labels(done)
    groups: dict[tuple[str, str], list[RunRow]] = {}
    for row in done:
        key = (labels[row.run_id], row.dataset)
        groups.setdefault(key, []).append(row)
        if key[0] not in summary.methods:
            summary.methods.append(key[0])
        if key[1] not in summary.datasets:
            summary.datasets.append(key[1])
    for (label, dataset), group in groups.items():
        for metric in metrics:
            vals = np.array([r.metrics[metric] for r in group if metric in r.metrics], float)
            if len(vals):
                std = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
                summary.values[(label, dataset, metric)] = Stat(float(vals.mean()), std, len(vals))
    summary.metrics = [m for m in metrics if any(k[2] == m for k in summary.values)]
    if not summary.values:
        raise MedadError("no finished runs with these metrics in the results store")
    return summary


def _cell(s: Stat | None) -> str:
    if s is None:
        return "–"
    return f"{100 * s.mean:.1f} ± {100 * s.std:.1f}" if s.n > 1 else f"{100 * s.mean:.1f}"


def _columns(summary: Summary) -> list[tuple[str, str]]:
    return [(d, m) for d in summary.datasets for m in summary.metrics]


def _is_best(summary: Summary, label: str, dataset: str, metric: str) -> bool:
    s = summary.values.get((label, dataset, metric))
    best = summary.best(dataset, metric)
    return s is not None and best is not None and math.isclose(s.mean, best)


def _header(dataset: str, metric: str, summary: Summary) -> str:
    return f"{dataset} {METRIC_NAMES[metric]}" if len(summary.metrics) > 1 else dataset


def to_rich(summary: Summary, title: str | None = None) -> Table:
    table = Table(title=title, caption=_caption(summary))
    table.add_column("method", style="bold")
    for d, m in _columns(summary):
        table.add_column(_header(d, m, summary), justify="right")
    for label in summary.methods:
        cells = []
        for d, m in _columns(summary):
            text = _cell(summary.values.get((label, d, m)))
            cells.append(f"[bold green]{text}[/]" if _is_best(summary, label, d, m) else text)
        table.add_row(label, *cells)
    return table


def _caption(summary: Summary) -> str:
    what = "mean ± std over seeds, %" if any(s.n > 1 for s in summary.values.values()) else "%"
    if len(summary.metrics) == 1:
        what = f"{METRIC_NAMES[summary.metrics[0]]}, {what}"
    if any(m.startswith("best_dice") for m in summary.metrics):
        what += "; * threshold chosen on the test masks (oracle)"
    return what


def to_markdown(summary: Summary) -> str:
    cols = _columns(summary)
    lines = [
        "| method | " + " | ".join(_header(d, m, summary) for d, m in cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for label in summary.methods:
        cells = []
        for d, m in cols:
            text = _cell(summary.values.get((label, d, m)))
            cells.append(f"**{text}**" if _is_best(summary, label, d, m) else text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{_caption(summary)}\n"


def to_csv(summary: Summary) -> str:
    """Long form: one line per (method, dataset, metric) with mean, std and number of seeds."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", "dataset", "metric", "mean", "std", "n"])
    for (label, dataset, metric), s in summary.values.items():
        writer.writerow([label, dataset, metric, f"{s.mean:.6f}", f"{s.std:.6f}", s.n])
    return buf.getvalue()


_LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {"\\": r"\textbackslash{}", "~": r"\~{}"}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def to_latex(summary: Summary) -> str:
    cols = _columns(summary)
    out = [r"\begin{tabular}{l" + "r" * len(cols) + "}", r"\toprule"]
    out.append(
        "Method & " + " & ".join(_latex_escape(_header(d, m, summary)) for d, m in cols) + r" \\"
    )
    out.append(r"\midrule")
    for label in summary.methods:
        cells = []
        for d, m in cols:
            text = _cell(summary.values.get((label, d, m))).replace("±", r"$\pm$")
            text = text.replace("–", "--")
            cells.append(rf"\textbf{{{text}}}" if _is_best(summary, label, d, m) else text)
        out.append(_latex_escape(label) + " & " + " & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", f"% {_caption(summary)}"]
    return "\n".join(out) + "\n"


def render_text(summary: Summary, fmt: str) -> str:
    """The table as Markdown, CSV or LaTeX text."""
    if fmt == "md":
        return to_markdown(summary)
    if fmt == "csv":
        return to_csv(summary)
    if fmt == "latex":
        return to_latex(summary)
    raise MedadError(f"unknown table format {fmt!r}; use one of {', '.join(FORMATS)}")


def to_records(summary: Summary) -> list[dict[str, Any]]:
    """The table as plain records, one per (row, dataset, metric): for ``--json``."""
    return [
        {"run": label, "dataset": dataset, "metric": metric, **asdict(stat)}
        for (label, dataset, metric), stat in summary.values.items()
    ]
