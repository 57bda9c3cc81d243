"""Time medad's pixel metrics against straightforward references on a test-set-sized input.

    python benchmarks/metrics.py [--n 400 --size 256 --repeat 1 --seed 0]

Builds `n` anomaly maps of `size`² pixels (400 × 256² = 26 M pixels by default): half the images
carry 1-3 random elliptic lesions, the others are normal; maps are blurred masks plus Gaussian
noise, float32, so every metric is far from trivial. Each metric is timed for medad and for a
reference in the same run (best of `repeat`), and the table shows both times, their ratio and
the absolute difference of the values.

References:

* pixel AUROC / AP: `sklearn.metrics.roc_auc_score` / `average_precision_score` on the
  flattened arrays.
* best Dice (paper variant): MedIAnomaly's search, one threshold at a time: the order statistics
  at sorted indices 0, step, 2·step, ... (step = N // 200), each binarised (map > t) over all
  pixels and scored with numpy. Two loops: "as published" follows the per-threshold steps of
  the public code (integer predictions via `np.where`, masked sum of the predictions over the
  lesion pixels, plain sums; without its process pool and its per-call 0/1 checks), "lean"
  counts with `np.count_nonzero` on bool arrays, the fastest plain loop we know.
* AUPRO: the algorithm of the MVTec AD evaluation code (Bergmann et al. 2021), written out: label
  each mask with 8-connectivity and give every pixel its change of FP count (anomaly-free) or
  of PRO (1 / region size), `argsort` all scores, cumulative sums, keep the last point of each
  run of tied scores, trapezoid up to the FPR limit with linear interpolation there. This is the
  exact curve over every distinct threshold, as medad's is; it is computed in float64 (the
  published code accumulates the FPR in float32, which would differ by ~1e-7). A loop that
  binarises the maps once per threshold could not cover all distinct thresholds of 26 M pixels
  (millions of them) in reasonable time, so it is not used as the reference here; the tests
  compare medad against such a loop on small inputs.

No timings are stored anywhere; they depend on the machine and are only printed.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from medad.metrics import aupro, best_dice, pixel_ap, pixel_auroc

FPR_LIMIT = 0.3


def make_maps(n_images: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Float32 maps [n, size, size] and bool masks: half the images have 1-3 elliptic lesions."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_images, size, size), dtype=bool)
    rows, cols = np.mgrid[:size, :size].astype(np.float32)
    for image in rng.permutation(n_images)[: n_images // 2]:
        for _ in range(rng.integers(1, 4)):
            center_row, center_col = rng.uniform(0.15, 0.85, size=2) * size
            radius_row, radius_col = rng.uniform(0.02, 0.12, size=2) * size
            angle = rng.uniform(0.0, np.pi)
            d_row, d_col = rows - center_row, cols - center_col
            along = (d_col * np.cos(angle) + d_row * np.sin(angle)) / radius_col
            across = (-d_col * np.sin(angle) + d_row * np.cos(angle)) / radius_row
            masks[image] |= along**2 + across**2 <= 1.0
    maps = ndimage.gaussian_filter(masks.astype(np.float32), sigma=(0, 3, 3))
    maps += 0.3 * rng.standard_normal(maps.shape, dtype=np.float32)
    return maps, masks


def reference_best_dice_paper_as_published(maps: np.ndarray, masks: np.ndarray) -> float:
    """201-threshold loop with the public code's per-threshold steps (see module docstring)."""
    scores, targets = maps.ravel(), masks.ravel()
    step = max(scores.size // 200, 1)
    thresholds = np.sort(scores)[::step]
    best = 0.0
    for threshold in thresholds:
        predictions = np.where(scores > threshold, 1, 0)
        value = 2 * np.sum(predictions[targets]) / (np.sum(predictions) + np.sum(targets))
        best = max(best, value)
    return best


def reference_best_dice_paper_lean(maps: np.ndarray, masks: np.ndarray) -> float:
    """The same 201-threshold loop, counting with `np.count_nonzero` on bool arrays."""
    scores, targets = maps.ravel(), masks.ravel()
    step = max(scores.size // 200, 1)
    thresholds = np.sort(scores)[::step]
    n_targets = np.count_nonzero(targets)
    best = 0.0
    for threshold in thresholds:
        predictions = scores > threshold
        overlap = np.count_nonzero(predictions & targets)
        best = max(best, 2 * overlap / (np.count_nonzero(predictions) + n_targets))
    return best


def _area_with_cut(fprs: np.ndarray, pros: np.ndarray, limit: float) -> float:
    """Trapezoid area up to `limit`, interpolating on the segment that crosses it."""
    below = fprs <= limit
    area = float(np.sum(0.5 * (pros[1:] + pros[:-1]) * np.diff(fprs) * below[1:]))
    crossing = int(np.argmax(~below))  # first point past the limit
    if not below[crossing] and fprs[crossing - 1] < limit:
        x0, x1 = fprs[crossing - 1], fprs[crossing]
        y0, y1 = pros[crossing - 1], pros[crossing]
        y_cut = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        area += 0.5 * (y0 + y_cut) * (limit - x0)
    return area


def reference_aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = FPR_LIMIT) -> float:
    """The MVTec AD evaluation algorithm: per-pixel curve increments, one argsort, cumsums."""
    fp_change = np.zeros(maps.shape, dtype=np.int64)
    pro_change = np.zeros(maps.shape, dtype=np.float64)
    n_regions = 0
    for image, mask in enumerate(masks):
        labelled, n_components = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
        n_regions += n_components
        fp_change[image][labelled == 0] = 1
        for region in range(1, n_components + 1):
            inside = labelled == region
            pro_change[image][inside] = 1.0 / np.sum(inside)
    n_normal = int(fp_change.sum())
    order = np.argsort(maps.ravel())[::-1]
    sorted_scores = maps.ravel()[order]
    fp_counts = np.cumsum(fp_change.ravel()[order])
    pro_sums = np.cumsum(pro_change.ravel()[order])
    del order
    last_of_run = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    fprs = np.concatenate(([0.0], fp_counts[last_of_run] / n_normal))
    pros = np.concatenate(([0.0], np.minimum(pro_sums[last_of_run] / n_regions, 1.0)))
    return _area_with_cut(fprs, pros, fpr_limit) / fpr_limit


@dataclass
class Comparison:
    name: str
    ours: Callable[[], float]
    reference: Callable[[], float]
    reference_name: str


def best_of(function: Callable[[], float], repeat: int) -> tuple[float, float]:
    """(value, best wall time in seconds over `repeat` calls)."""
    times, value = [], float("nan")
    for _ in range(repeat):
        start = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - start)
    return value, min(times)


def print_table(rows: list[tuple[str, str, float, float, float]]) -> None:
    """Rows of (metric, reference, ours (s), reference (s), |difference|), as Rich or plain text."""
    header = ("metric", "reference", "ours (s)", "reference (s)", "ratio", "|difference|")
    cells = [
        (name, ref, f"{ours:.3f}", f"{reference:.3f}", f"{reference / ours:.1f}x", f"{diff:.1e}")
        for name, ref, ours, reference, diff in rows
    ]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
        for row in [header, *cells]:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        return
    table = Table(title="medad metrics vs references")
    for column in header:
        table.add_column(column, justify="left" if column in ("metric", "reference") else "right")
    for row in cells:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:  # piped output: do not squeeze the table into 80 columns
        console = Console(width=140)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="number of images")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--repeat", type=int, default=1, help="timed calls per function (best)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    args = parser.parse_args()

    maps, masks = make_maps(args.n, args.size, args.seed)
    flat_maps, flat_masks = maps.ravel(), masks.ravel()
    print(
        f"{maps.size:,} pixels ({args.n} maps of {args.size}², float32), "
        f"{masks.mean():.2%} abnormal, {os.cpu_count()} CPUs"
    )
    comparisons = [
        Comparison(
            "pixel AUROC",
            lambda: pixel_auroc(maps, masks),
            lambda: roc_auc_score(flat_masks, flat_maps),
            "sklearn roc_auc_score",
        ),
        Comparison(
            "pixel AP",
            lambda: pixel_ap(maps, masks),
            lambda: average_precision_score(flat_masks, flat_maps),
            "sklearn average_precision_score",
        ),
        Comparison(
            "best Dice (paper)",
            lambda: best_dice(maps, masks, method="paper"),
            lambda: reference_best_dice_paper_as_published(maps, masks),
            "201-threshold loop, as published",
        ),
        Comparison(
            "best Dice (paper)",
            lambda: best_dice(maps, masks, method="paper"),
            lambda: reference_best_dice_paper_lean(maps, masks),
            "201-threshold loop, lean",
        ),
        Comparison(
            f"AUPRO (FPR ≤ {FPR_LIMIT})",
            lambda: aupro(maps, masks, fpr_limit=FPR_LIMIT),
            lambda: reference_aupro(maps, masks, FPR_LIMIT),
            "MVTec AD algorithm (argsort + cumsum)",
        ),
    ]
    rows = []
    for comparison in comparisons:
        our_value, our_time = best_of(comparison.ours, args.repeat)
        reference_value, reference_time = best_of(comparison.reference, args.repeat)
        difference = abs(our_value - reference_value)
        rows.append(
            (comparison.name, comparison.reference_name, our_time, reference_time, difference)
        )
        print(f"{comparison.name}: {our_value:.12f} (reference {reference_value:.12f})")
    exact_value, exact_time = best_of(lambda: best_dice(maps, masks, method="exact"), args.repeat)
    print(f"best Dice (exact, all thresholds): {exact_value:.12f} in {exact_time:.3f} s")
    print_table(rows)


if __name__ == "__main__":
    main()
