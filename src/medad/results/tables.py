"""Tables of results: mean ± std over seeds, methods × datasets, in the paper's layout.

A row is one configuration: runs that differ in anything but the seed are never averaged together
(`run_labels` names each row after what differs).

Values are percentages with one decimal, as in PAPER.md's tables; the standard deviation is the
sample standard deviation over seeds (ddof = 1), shown only where there are several seeds, with
their count. A single run can instead carry a bootstrap confidence interval (`add_intervals`,
``67.5 [65.1, 69.8]``), and each dataset its test-set size ``n`` (normal + abnormal,
`add_test_sizes`). The best mean of each column is marked (bold in Markdown and LaTeX, bold green
in the terminal); every metric here is higher-is-better.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich.markup import escape
from rich.table import Table

from medad.errors import MedadError
from medad.results.store import RunRow

METRIC_NAMES = {
    "image_auroc": "Image AUROC",
    "image_ap": "Image AP",
    "volume_auroc": "Volume AUROC",
    "volume_ap": "Volume AP",
    "pixel_auroc": "Pixel AUROC",
    "pixel_ap": "Pixel AP",
    "best_dice": "Best Dice*",
    "best_dice_paper": "Best Dice* (paper)",
    "aupro": "AUPRO@0.3",
    "sens_at_95spec": "Sens@95%Spec",
    "image_sensitivity_thr": "Image sens.@thr",
    "image_specificity_thr": "Image spec.@thr",
    "dice_thr": "Dice@thr",
    "pixel_sensitivity_thr": "Pixel sens.@thr",
    "pixel_specificity_thr": "Pixel spec.@thr",
}
#: the per-run tables of `medad run` / `results` / `evaluate` (the rest: `--json`, `medad table`)
RUN_COLUMNS = (
    "image_auroc",
    "image_ap",
    "pixel_auroc",
    "pixel_ap",
    "best_dice",
    "best_dice_paper",
    "aupro",
)
FORMATS = ("rich", "md", "csv", "latex", "json")


@dataclass
class Stat:
    mean: float
    std: float
    n: int  #: seeds (runs) averaged
    #: bootstrap interval (low, high) of a single run, when asked for (`add_intervals`)
    ci: tuple[float, float] | None = None


@dataclass
class Summary:
    methods: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    values: dict[tuple[str, str, str], Stat] = field(default_factory=dict)
    #: the runs behind each (row label, dataset)
    runs: dict[tuple[str, str], list[RunRow]] = field(default_factory=dict)
    #: test images (normal, abnormal) per dataset; None when the runs disagree or it is unknown
    test_sizes: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    ci_level: float | None = None  #: level of the intervals in `Stat.ci`

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

    return {
        **flat(cfg.get("dataset_options") or {}),
        **flat(cfg.get("config") or {}),
        **flat(cfg.get("protocol") or {}),
    }


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
    summary.runs = groups
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


def add_test_sizes(summary: Summary, sizes: Callable[[RunRow], tuple[int, int] | None]) -> None:
    """Record each dataset's test-set size, `sizes(run)` = (normal, abnormal) or None; a dataset
    whose runs saw different test sets gets None (shown as "n varies")."""
    for dataset in summary.datasets:
        found = {sizes(r) for (_, d), group in summary.runs.items() if d == dataset for r in group}
        summary.test_sizes[dataset] = found.pop() if len(found) == 1 else None


def add_intervals(
    summary: Summary,
    interval: Callable[[RunRow, str], tuple[float, float] | None],
    level: float,
) -> None:
    """Give every single-run cell its interval `interval(run, metric)` = (low, high) (or None when
    the run's predictions are gone); cells over several seeds keep mean ± std."""
    summary.ci_level = level
    for (label, dataset, metric), stat in summary.values.items():
        group = summary.runs[(label, dataset)]
        if stat.n == 1 and len(group) == 1:
            stat.ci = interval(group[0], metric)


def _seed_counts(summary: Summary) -> set[int]:
    return {s.n for s in summary.values.values()}


def _cell(s: Stat | None, mixed_seeds: bool = False) -> str:
    if s is None:
        return "–"
    if s.n > 1:
        text = f"{100 * s.mean:.1f} ± {100 * s.std:.1f}"
        return f"{text} ({s.n})" if mixed_seeds else text
    if s.ci is not None:
        return f"{100 * s.mean:.1f} [{100 * s.ci[0]:.1f}, {100 * s.ci[1]:.1f}]"
    return f"{100 * s.mean:.1f}"


def cell_text(summary: Summary, label: str, dataset: str, metric: str) -> str:
    """One cell as the tables show it (mean ± std, a single run's interval, or its value)."""
    mixed = len(_seed_counts(summary)) > 1
    return _cell(summary.values.get((label, dataset, metric)), mixed)


def _cells(summary: Summary, label: str) -> list[tuple[str, bool]]:
    """(text, is best) of each column of a row."""
    mixed = len(_seed_counts(summary)) > 1
    return [
        (_cell(summary.values.get((label, d, m)), mixed), _is_best(summary, label, d, m))
        for d, m in _columns(summary)
    ]


def _columns(summary: Summary) -> list[tuple[str, str]]:
    return [(d, m) for d in summary.datasets for m in summary.metrics]


def _dataset_title(summary: Summary, dataset: str) -> str:
    if dataset not in summary.test_sizes:
        return dataset
    sizes = summary.test_sizes[dataset]
    return f"{dataset} (n={sizes[0]}+{sizes[1]})" if sizes else f"{dataset} (n varies)"


def _is_best(summary: Summary, label: str, dataset: str, metric: str) -> bool:
    s = summary.values.get((label, dataset, metric))
    best = summary.best(dataset, metric)
    return s is not None and best is not None and math.isclose(s.mean, best)


def _header(dataset: str, metric: str, summary: Summary) -> str:
    title = _dataset_title(summary, dataset)
    return f"{title} {METRIC_NAMES[metric]}" if len(summary.metrics) > 1 else title


def to_rich(summary: Summary, title: str | None = None) -> Table:
    table = Table(title=title, caption=escape(caption(summary)))
    table.add_column("method", style="bold")
    for d, m in _columns(summary):
        table.add_column(_header(d, m, summary), justify="right")
    for label in summary.methods:
        texts = _cells(summary, label)
        cells = [f"[bold green]{escape(t)}[/]" if best else escape(t) for t, best in texts]
        table.add_row(escape(label), *cells)
    return table


def caption(summary: Summary) -> str:
    """What the numbers are: %, over how many seeds, which intervals, test-set sizes, oracles."""
    counts = _seed_counts(summary)
    if counts == {1}:
        what = "%, one seed"
    elif len(counts) == 1:
        what = f"%, mean ± sample std over {counts.pop()} seeds"
    else:
        what = "%, mean ± sample std over seeds (count in parentheses); one seed: the value"
    if summary.ci_level is not None and any(s.ci for s in summary.values.values()):
        what += (
            f"; [low, high]: {100 * summary.ci_level:g} % bootstrap interval of a single run "
            "(test images resampled within each label)"
        )
    if summary.test_sizes:
        what += "; n = test images normal + abnormal"
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
        cells = [f"**{t}**" if best else t for t, best in _cells(summary, label)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{caption(summary)}\n"


def records(summary: Summary) -> list[dict[str, Any]]:
    """Long form: one record per (method, dataset, metric) with mean, std, number of seeds, the
    test set's normal and abnormal counts and a single run's interval (None where absent)."""
    out = []
    for (label, dataset, metric), s in summary.values.items():
        sizes = summary.test_sizes.get(dataset)
        out.append(
            {
                "method": label,
                "dataset": dataset,
                "metric": metric,
                "mean": s.mean,
                "std": s.std if s.n > 1 else None,
                "seeds": s.n,
                "n_normal": sizes[0] if sizes else None,
                "n_abnormal": sizes[1] if sizes else None,
                "ci_low": s.ci[0] if s.ci else None,
                "ci_high": s.ci[1] if s.ci else None,
                "ci_level": summary.ci_level if s.ci else None,
            }
        )
    return out


def to_csv(summary: Summary) -> str:
    """`records` as CSV (empty fields where a value is absent)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    rows = records(summary)
    columns = list(rows[0]) if rows else ["method"]
    writer.writerow(columns)
    for record in rows:
        values = record.values()
        writer.writerow(
            ["" if v is None else f"{v:.6f}" if isinstance(v, float) else v for v in values]
        )
    return buf.getvalue()


def to_json(summary: Summary) -> str:
    """`records` and the caption as one JSON object."""
    return json.dumps({"caption": caption(summary), "rows": records(summary)}, indent=1) + "\n"


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
        for text, best in _cells(summary, label):
            text = text.replace("±", r"$\pm$").replace("–", "--")
            cells.append(rf"\textbf{{{text}}}" if best else text)
        out.append(_latex_escape(label) + " & " + " & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", f"% {caption(summary)}"]
    return "\n".join(out) + "\n"


def render_text(summary: Summary, fmt: str) -> str:
    """The table as Markdown, CSV, LaTeX or JSON text."""
    if fmt == "md":
        return to_markdown(summary)
    if fmt == "csv":
        return to_csv(summary)
    if fmt == "latex":
        return to_latex(summary)
    if fmt == "json":
        return to_json(summary)
    raise MedadError(f"unknown table format {fmt!r}; use one of {', '.join(FORMATS)}")
