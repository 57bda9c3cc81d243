"""Uncertainty of a run's metrics and paired comparisons of two methods on the same test images.

Everything is recomputed from the runs' saved ``predictions.npz`` (`medad.metrics.statistics`):
bootstrap intervals resample test images within each label (pixel metrics resample whole images),
DeLong's test compares image AUROCs, and a paired bootstrap (the same resampled images for both
runs) compares every other metric. Two runs are compared only when they scored the same test
images in the same order (same image ids), the condition of every paired test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medad import metrics
from medad.errors import MedadError
from medad.metrics.statistics import (
    N_BOOTSTRAP,
    Interval,
    bootstrap_auroc,
    bootstrap_metric,
    delong_test,
    paired_bootstrap,
)
from medad.predictions import Predictions
from medad.results.store import ResultsStore, RunRow
from medad.results.tables import Summary, add_intervals, add_test_sizes, row_label, run_labels

#: resamples for pixel metrics by default: each one re-sorts every test pixel, so far fewer than
#: for image metrics; 200 still gives stable 95 % percentile bounds to about a point
PIXEL_N_BOOTSTRAP = 200
PIXEL_METRICS = ("pixel_auroc", "pixel_ap", "best_dice", "best_dice_paper", "aupro")


def load_predictions(store: ResultsStore, row: RunRow) -> Predictions:
    """The saved predictions of a finished run, or a clear error naming the missing file."""
    folder = store.run_path(row)
    if folder is None:
        raise MedadError(f"{row.run_id}: no run folder recorded in {store.path}")
    return Predictions.load(folder / "predictions.npz")


def count_test_images(store: ResultsStore, row: RunRow) -> tuple[int, int] | None:
    """(normal, abnormal) test images of a run, read from its predictions; None when missing."""
    folder = store.run_path(row)
    path = folder / "predictions.npz" if folder is not None else None
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            labels = z["labels"]
    except (OSError, ValueError, KeyError):
        return None
    n_abnormal = int(np.count_nonzero(labels))
    return labels.size - n_abnormal, n_abnormal


def _metric_on(pred: Predictions, metric: str) -> Callable[[np.ndarray], float]:
    """`metric` of `pred` restricted to the test images at some indices (repeats allowed)."""
    if metric == "image_auroc":
        return lambda i: metrics.image_auroc(pred.image_scores[i], pred.labels[i])
    if metric == "image_ap":
        return lambda i: metrics.image_ap(pred.image_scores[i], pred.labels[i])
    if pred.maps is None or pred.masks is None:
        raise MedadError(f"{metric}: this run has no anomaly maps and masks")
    if metric == "pixel_auroc":
        return lambda i: metrics.pixel_auroc(pred.maps[i], pred.masks[i])
    if metric == "pixel_ap":
        return lambda i: metrics.pixel_ap(pred.maps[i], pred.masks[i])
    if metric == "best_dice":
        return lambda i: metrics.best_dice(pred.maps[i], pred.masks[i])
    if metric == "best_dice_paper":
        return lambda i: metrics.best_dice(pred.maps[i], pred.masks[i], method="paper")
    if metric == "aupro":
        return lambda i: metrics.aupro(pred.maps[i], pred.masks[i])
    raise MedadError(f"no bootstrap interval for metric {metric!r}")


def run_interval(
    pred: Predictions,
    metric: str,
    *,
    n_boot: int = N_BOOTSTRAP,
    pixel_n_boot: int = PIXEL_N_BOOTSTRAP,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Stratified bootstrap interval of one metric of one run (pixel metrics: `pixel_n_boot`)."""
    if metric == "image_auroc":
        return bootstrap_auroc(
            pred.image_scores, pred.labels, n_boot=n_boot, level=level, seed=seed
        )
    boots = pixel_n_boot if metric in PIXEL_METRICS else n_boot
    return bootstrap_metric(
        _metric_on(pred, metric), pred.labels, n_boot=boots, level=level, seed=seed
    )


@dataclass
class MetricComparison:
    """A − B for one metric, its interval and the p-value of the test named in `test`."""

    metric: str
    a: float
    b: float
    difference: Interval
    p_value: float
    test: str  #: "DeLong" or "paired bootstrap"

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "a": self.a,
            "b": self.b,
            "difference": self.difference.estimate,
            "low": self.difference.low,
            "high": self.difference.high,
            "level": self.difference.level,
            "p_value": self.p_value,
            "test": self.test,
        }


@dataclass
class Comparison:
    """Two runs on the same test images (one dataset, one seed of each)."""

    dataset: str
    run_a: str
    run_b: str
    seed_a: int
    seed_b: int
    n_normal: int
    n_abnormal: int
    metrics: list[MetricComparison] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "run_a": self.run_a,
            "run_b": self.run_b,
            "seed_a": self.seed_a,
            "seed_b": self.seed_b,
            "n_normal": self.n_normal,
            "n_abnormal": self.n_abnormal,
            "metrics": [m.as_dict() for m in self.metrics],
        }


def compare_predictions(
    a: Predictions,
    b: Predictions,
    *,
    n_boot: int = N_BOOTSTRAP,
    pixel_n_boot: int = PIXEL_N_BOOTSTRAP,
    level: float = 0.95,
    seed: int = 0,
    pixel_metrics: tuple[str, ...] = ("pixel_auroc", "pixel_ap"),
) -> list[MetricComparison]:
    """DeLong for image AUROC, paired bootstrap for image AP and (when both runs have maps, the
    test set masks and `pixel_n_boot` > 0) `pixel_metrics`. Each pixel resample sorts every test
    pixel again (about a second per metric on BraTS-sized test sets), hence its own count."""
    if a.ids != b.ids or not np.array_equal(a.labels, b.labels):
        raise MedadError(
            "the two runs scored different test images (their image ids or labels differ); a "
            "paired comparison needs the same test set: same dataset and dataset options"
        )
    z = norm_quantile(level)
    d = delong_test(a.image_scores, b.image_scores, a.labels)
    se = float(np.sqrt(max(d.covariance[0, 0] + d.covariance[1, 1] - 2 * d.covariance[0, 1], 0)))
    delong_interval = Interval(
        d.difference, d.difference - z * se, d.difference + z * se, level, 0
    )  # normal approximation; n_boot 0: not a bootstrap
    out = [
        MetricComparison(
            "image_auroc", float(d.aurocs[0]), float(d.aurocs[1]), delong_interval, d.p_value,
            "DeLong",
        )
    ]  # fmt: skip
    names = ["image_ap"]
    with_pixels = a.maps is not None and b.maps is not None and a.masks is not None
    if pixel_n_boot > 0 and with_pixels and a.masks.any():
        names += list(pixel_metrics)
    for name in names:
        fa, fb = _metric_on(a, name), _metric_on(b, name)
        boots = pixel_n_boot if name in PIXEL_METRICS else n_boot
        diff, p = paired_bootstrap(fa, fb, a.labels, n_boot=boots, level=level, seed=seed)
        everything = np.arange(a.labels.size)
        out.append(
            MetricComparison(name, fa(everything), fb(everything), diff, p, "paired bootstrap")
        )
    return out


def norm_quantile(level: float) -> float:
    """The standard normal quantile of a two-sided `level` interval (1.96 for 0.95)."""
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


def select_runs(rows: list[RunRow], name: str) -> list[RunRow]:
    """Finished runs named `name`: a run id, a table row label (`run_labels`), a bench label or
    a method name, tried in that order."""
    done = [r for r in rows if r.status == "done"]
    labels = run_labels(done)
    for match in (
        lambda r: r.run_id == name,
        lambda r: labels[r.run_id] == name,
        lambda r: row_label(r) == name,
        lambda r: r.method == name,
    ):
        found = [r for r in done if match(r)]
        if found:
            return found
    known = sorted({labels[r.run_id] for r in done})
    raise MedadError(
        f"no finished run named {name!r} (a run id, row label or method); rows: "
        + ", ".join(known[:20])
    )


def _by_cell(runs: list[RunRow], name: str) -> dict[tuple[str, int], RunRow]:
    cells: dict[tuple[str, int], RunRow] = {}
    for r in runs:
        key = (r.dataset, r.seed)
        if key in cells and cells[key].config_hash != r.config_hash:
            raise MedadError(
                f"{name!r} names runs of several configurations on {r.dataset} (seed {r.seed}); "
                "use the table's row label (`medad table`) or a run id instead"
            )
        cells[key] = r
    return cells


def compare(
    results: Path,
    a: str,
    b: str,
    *,
    dataset: str | None = None,
    n_boot: int = N_BOOTSTRAP,
    pixel_n_boot: int = PIXEL_N_BOOTSTRAP,
    level: float = 0.95,
    seed: int = 0,
) -> list[Comparison]:
    """Compare runs `a` and `b` of the results store in `results`, per dataset and seed they
    share (a single run id on either side is paired with the other side's runs on its dataset).
    """
    from medad.results.store import ReadOnlyStore

    store = ReadOnlyStore(results)
    rows = store.rows()
    runs_a, runs_b = select_runs(rows, a), select_runs(rows, b)
    if dataset is not None:
        runs_a = [r for r in runs_a if r.dataset == dataset]
        runs_b = [r for r in runs_b if r.dataset == dataset]
    cells_a, cells_b = _by_cell(runs_a, a), _by_cell(runs_b, b)
    if len(runs_a) == 1 or len(runs_b) == 1:
        pairs = [(ra, rb) for ra in runs_a for rb in runs_b if ra.dataset == rb.dataset]
    else:
        pairs = [(cells_a[k], cells_b[k]) for k in cells_a if k in cells_b]
    pairs = [(ra, rb) for ra, rb in pairs if ra.run_id != rb.run_id]
    if not pairs:
        raise MedadError(
            f"{a!r} and {b!r} share no dataset and seed in {results}; a paired comparison needs "
            "both on the same test images"
        )
    out = []
    for ra, rb in sorted(pairs, key=lambda p: (p[0].dataset, p[0].seed)):
        pa, pb = load_predictions(store, ra), load_predictions(store, rb)
        n_abnormal = int(np.count_nonzero(pa.labels))
        found = compare_predictions(
            pa, pb, n_boot=n_boot, pixel_n_boot=pixel_n_boot, level=level, seed=seed
        )
        out.append(
            Comparison(
                ra.dataset, ra.run_id, rb.run_id, ra.seed, rb.seed,
                pa.labels.size - n_abnormal, n_abnormal, found,
            )
        )  # fmt: skip
    return out


def annotate_summary(
    summary: Summary,
    store: ResultsStore,
    *,
    intervals: bool = False,
    n_boot: int = N_BOOTSTRAP,
    pixel_n_boot: int = PIXEL_N_BOOTSTRAP,
    level: float = 0.95,
    seed: int = 0,
) -> None:
    """Add test-set sizes to a table and, with `intervals`, each single run's bootstrap interval
    (recomputed from its saved predictions)."""
    add_test_sizes(summary, lambda r: count_test_images(store, r))
    if not intervals:
        return
    loaded: dict[str, Predictions | None] = {}

    def interval(row: RunRow, metric: str) -> tuple[float, float] | None:
        if row.run_id not in loaded:
            try:
                loaded[row.run_id] = load_predictions(store, row)
            except MedadError:
                loaded[row.run_id] = None
        pred = loaded[row.run_id]
        if pred is None:
            return None
        found = run_interval(
            pred, metric, n_boot=n_boot, pixel_n_boot=pixel_n_boot, level=level, seed=seed
        )
        return found.low, found.high

    add_intervals(summary, interval, level)
