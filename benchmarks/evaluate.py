"""Time what follows training, today's path against the previous one, in the same run.

    python benchmarks/evaluate.py [--n 2776 --size 256 --seed 0]

Builds `n` anomaly maps of `size`² (BraTS2021's test set by default: 2,776 maps of 256²,
182 M pixels; half carry lesions, see `benchmarks/metrics.py`) and times three steps:

* collect: filling the maps batch by batch (batches of 32) into a preallocated array (now)
  against a list of batches concatenated at the end (before; twice the memory at the peak);
* save: `Predictions.save` uncompressed (now) against ``compress=True`` (the previous default,
  `numpy.savez_compressed`), into a temporary folder next to the system's temp files;
* evaluate: `medad.evaluation.evaluate` (one sort per class for all pixel metrics, the
  negatives sorted as parallel parts, one per thread) against the previous evaluator, the image
  metrics and each pixel metric called on its own (each sorting the pixels again, in one
  thread). The values of both are printed and must be equal.

No timings are stored anywhere; they depend on the machine and are only printed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from medad import metrics
from medad.evaluation import evaluate
from medad.metrics import _sorted_classes as sorted_classes
from medad.predictions import Predictions
from metrics import make_maps


def previous_evaluate(pred: Predictions) -> dict[str, float]:
    """The evaluator before the shared sort: every pixel metric checks and sorts on its own, in
    one thread (the sorts of the negatives in parallel parts came later)."""
    parallel_from = sorted_classes.PARALLEL_MIN_SCORES
    sorted_classes.PARALLEL_MIN_SCORES = 1 << 62
    try:
        return _each_on_its_own(pred)
    finally:
        sorted_classes.PARALLEL_MIN_SCORES = parallel_from


def _each_on_its_own(pred: Predictions) -> dict[str, float]:
    out = {
        "image_auroc": metrics.image_auroc(pred.image_scores, pred.labels),
        "image_ap": metrics.image_ap(pred.image_scores, pred.labels),
        "pixel_auroc": metrics.pixel_auroc(pred.maps, pred.masks),
        "pixel_ap": metrics.pixel_ap(pred.maps, pred.masks),
        "best_dice": metrics.best_dice(pred.maps, pred.masks, method="exact"),
        "best_dice_paper": metrics.best_dice(pred.maps, pred.masks, method="paper"),
        "aupro": metrics.aupro(pred.maps, pred.masks, fpr_limit=0.3),
    }
    return {k: float(v) for k, v in out.items()}


def collect_list(maps: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.concatenate([maps[i : i + batch].copy() for i in range(0, len(maps), batch)])


def collect_preallocated(maps: np.ndarray, batch: int = 32) -> np.ndarray:
    out = np.empty_like(maps)
    for i in range(0, len(maps), batch):
        out[i : i + batch] = maps[i : i + batch]
    return out


def timed(function, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2776, help="number of maps (BraTS2021 test)")
    parser.add_argument("--size", type=int, default=256, help="map side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    args = parser.parse_args()

    maps, masks = make_maps(args.n, args.size, args.seed)
    labels = masks.any(axis=(1, 2)).astype(np.int64)
    image_scores = maps.reshape(len(maps), -1).max(axis=1).astype(np.float64)
    print(
        f"{maps.size:,} pixels ({args.n} maps of {args.size}², float32, "
        f"{maps.nbytes / 2**20:.0f} MiB), {os.cpu_count()} CPUs, "
        f"{sorted_classes.sort_workers()} sort threads"
    )
    rows = []
    _, before = timed(collect_list, maps)
    _, now = timed(collect_preallocated, maps)
    rows.append(("collect maps", now, before))
    pred = Predictions([f"{i}" for i in range(args.n)], labels, image_scores, maps, masks)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "predictions.npz"
        _, before = timed(pred.save, path, compress=True)
        size_before = path.stat().st_size
        _, now = timed(pred.save, path)
        size_now = path.stat().st_size
    rows.append(("save predictions.npz", now, before))
    print(f"file size: {size_now / 2**20:.0f} MiB now, {size_before / 2**20:.0f} MiB compressed")
    values_before, before = timed(previous_evaluate, pred)
    values_now, now = timed(evaluate, pred)
    rows.append(("evaluate", now, before))
    for key, value in values_before.items():
        print(f"{key}: {values_now[key]:.12f} (before {value:.12f})")
    if {k: values_now[k] for k in values_before} != values_before:
        raise SystemExit("the evaluators disagree")
    extra = sorted(set(values_now) - set(values_before))
    if extra:  # computed now besides the study's metrics (included in "now")
        print(f"evaluate now also computes: {', '.join(extra)}")
    total_now = sum(r[1] for r in rows[1:])
    total_before = sum(r[2] for r in rows[1:])
    rows.append(("save + evaluate", total_now, total_before))
    print(f"{'step':<22}{'now (s)':>10}{'before (s)':>12}{'ratio':>8}")
    for name, now, before in rows:
        print(f"{name:<22}{now:>10.2f}{before:>12.2f}{before / now:>7.1f}x")


if __name__ == "__main__":
    main()
