"""One AE cell alone against K cells at once on one GPU: the grid's throughput with K runs per GPU.

    python benchmarks/gpu_grid.py                       # CUDA: K = 2, 4, 8 (issue 16: >= 4x)
    python benchmarks/gpu_grid.py --device cpu --epochs 1 --n-train 64 --k 2   # smoke run

The paper AE (250 epochs on 4,000 synthetic brain images at 64², issue 16) as cells of a grid run
by `medad.bench.run_grid` with the ``process`` executor, as ``medad bench --executor process
--workers K --device cuda`` runs them: first one cell with one worker, then K cells (other seeds)
with K workers, each timed end to end (worker start-up, the memory probe on CUDA, training,
scoring, evaluation, writing). When the probe finds that K cells do not fit, the grid runs fewer
and says so; that note is printed. Throughput is cells per hour; the ratio is K cells' throughput
over one cell's. On the CPU each of K workers gets 1/K of the cores, so the ratio there says little
about a GPU: the CPU run only shows that the script works.

Data: the embedded ``synth-brain`` dataset (cached once before any timing, as a grid's first cell
would). Runs go to a temporary folder; nothing is written in the repository, figures are printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

import medad
from medad.bench import plan_cells, run_grid
from medad.bench.config import DatasetEntry, Experiment, MethodEntry
from medad.data.loading import load_split
from medad.methods.base import method_class
from medad.results.store import ResultsStore


def cells_of(seeds: list[int], epochs: int, n_train: int, n_test: int) -> list:
    exp = Experiment(
        name="gpu-grid",
        methods=[MethodEntry(name="ae", set={"epochs": epochs})],
        datasets=[
            DatasetEntry(
                name="synth-brain",
                options={
                    "n_train": n_train,
                    "n_test_normal": n_test,
                    "n_test_abnormal": n_test,
                    "size": 64,
                },
            )
        ],
        seeds=seeds,
    )
    return plan_cells(exp)


def warm_cache(cell, out: Path) -> None:
    """Load (and so cache) the cell's splits as its run will (`medad.runs.produce`)."""
    planned = cell.planned
    pre = method_class(planned.spec.method).preprocess(planned.config, planned.dataset.channels)
    for split in ("train", "test"):
        load_split(planned.dataset, split, pre, out / ".cache")


def timed_grid(cells: list, out: Path, workers: int, device: str) -> tuple[float, float]:
    """(wall seconds of the grid, mean seconds of a cell inside its worker)."""
    start = time.perf_counter()
    summary = run_grid(
        cells,
        out,
        executor="process",
        workers=workers,
        device=device,
        log=lambda note: print(f"  grid: {note}"),
    )
    wall = time.perf_counter() - start
    if summary.failed:
        raise SystemExit(f"cells failed: {summary.failed}")
    ids = {c.run_id for c in cells}
    seconds = [r.seconds or 0.0 for r in ResultsStore(out).rows() if r.run_id in ids]
    return wall, sum(seconds) / len(seconds)


def describe(device: str) -> str:
    dev = torch.device(device)
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        name = f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
    else:
        name = f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    return (
        f"{name}; medad {medad.__version__}, torch {torch.__version__}, "
        f"Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--k", type=int, nargs="+", default=[2, 4, 8], help="cells at once")
    parser.add_argument("--epochs", type=int, default=250)
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--n-test", type=int, default=200, help="normal and abnormal, each")
    args = parser.parse_args()
    print(describe(args.device))
    print(f"AE, {args.epochs} epochs, {args.n_train} synth-brain images at 64², one cell vs K")
    with tempfile.TemporaryDirectory(prefix="medad-gpu-grid-") as tmp:
        out = Path(tmp)
        single = cells_of([0], args.epochs, args.n_train, args.n_test)
        warm_cache(single[0], out)
        wall1, cell1 = timed_grid(single, out, 1, args.device)
        head = ("cells at once", "wall (s)", "per cell (s)", "cells/h", "ratio")
        print(f"{head[0]:<14}{head[1]:>10}{head[2]:>14}{head[3]:>10}{head[4]:>8}")
        print(f"{1:<14}{wall1:>10.1f}{cell1:>14.1f}{3600 / wall1:>10.1f}{1.0:>7.2f}x")
        for k in args.k:
            seeds = list(range(1000 * k, 1000 * k + k))  # new cells: nothing is reused
            cells = cells_of(seeds, args.epochs, args.n_train, args.n_test)
            wall, cell = timed_grid(cells, out, k, args.device)
            ratio = (k / wall) / (1 / wall1)
            print(f"{k:<14}{wall:>10.1f}{cell:>14.1f}{3600 * k / wall:>10.1f}{ratio:>7.2f}x")


if __name__ == "__main__":
    main()
