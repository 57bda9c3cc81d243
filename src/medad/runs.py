"""A run: (method, dataset, config, seed) → a run folder and a row in the results store.

Run folder ``OUT/runs/<dataset>/<method>/<config-hash>-seed<k>/``::

    config.yaml        the resolved configuration (method config with every default filled in)
    predictions.npz    ids, labels, image scores, maps and masks of the test split
    metrics.json       the metrics computed from predictions.npz
    checkpoint.pt      the trained method's state dict
    train.json         loss per epoch, steps and time
    log.txt            what happened, line by line

The folder is built under ``OUT/runs/.tmp/`` and renamed into place only when complete, so a
crashed or killed run never leaves a half-written result; the store row is written last.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

import medad
from medad import engine
from medad.data.base import get_dataset
from medad.data.loading import load_split
from medad.errors import MedadError
from medad.evaluation import evaluate
from medad.methods.base import build_config, method_class
from medad.predictions import Predictions
from medad.results.store import STORE_NAME, ResultsStore, RunRow

DEFAULT_OUT = Path("medad-runs")


def default_data_root() -> Path | None:
    """``$MEDAD_DATA`` if set: the folder under which named datasets live."""
    value = os.environ.get("MEDAD_DATA")
    return Path(value) if value else None


@dataclass
class RunSpec:
    """Everything that defines a run. `overrides` are method-config fields (e.g. latent_size)."""

    method: str
    dataset: str
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    metrics: dict[str, float]
    config: dict[str, Any]
    seconds: float


def resolve(spec: RunSpec, data_root: Path | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """Build the dataset and the validated method config; returns (dataset, config, resolved)."""
    cls = method_class(spec.method)
    dataset = get_dataset(spec.dataset, data_root, **spec.dataset_options)
    values = dict(spec.overrides)
    if "epochs" not in values and dataset.default_epochs is not None:
        values["epochs"] = dataset.default_epochs
    config = build_config(cls, values)
    resolved = {
        "method": spec.method,
        "dataset": spec.dataset,
        "dataset_options": dict(sorted(spec.dataset_options.items())),
        "config": config.model_dump(),
    }
    return dataset, config, resolved


def config_hash(resolved: dict[str, Any]) -> str:
    """A short stable hash of the resolved configuration (the seed is not part of it)."""
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:10]


def run_id_of(spec: RunSpec, chash: str) -> str:
    return f"{spec.dataset}/{spec.method}/{chash}-seed{spec.seed}"


def execute(
    spec: RunSpec,
    out: Path = DEFAULT_OUT,
    *,
    data_root: Path | None = None,
    device: str | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    tag: str | None = None,
) -> RunResult:
    """Train, score and evaluate one run; write its folder and its row in ``OUT/results.sqlite``."""
    out = Path(out)
    data_root = data_root if data_root is not None else default_data_root()
    dataset, config, resolved = resolve(spec, data_root)
    chash = config_hash(resolved)
    run_id = run_id_of(spec, chash)
    cls = method_class(spec.method)
    dev = engine.resolve_device(device)
    store = ResultsStore(out)
    row = RunRow(run_id, spec.method, spec.dataset, spec.seed, chash, "running", tag=tag,
                 config={**resolved, "seed": spec.seed})  # fmt: skip
    store.mark_running(row)

    tmp = out / "runs" / ".tmp" / f"{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    log_lines: list[str] = []

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        log_lines.append(line)
        with open(tmp / "log.txt", "a") as fh:
            fh.write(line + "\n")
        if echo is not None:
            echo(msg)

    start = time.perf_counter()
    try:
        log(f"medad {medad.__version__} run {run_id} on {dev}")
        (tmp / "config.yaml").write_text(
            yaml.safe_dump({**resolved, "seed": spec.seed, "device": str(dev)}, sort_keys=False)
        )
        pre = cls.preprocess(config, dataset.channels)
        cache = out / ".cache"
        train_split = load_split(dataset, "train", pre, cache)
        test_split = load_split(dataset, "test", pre, cache)
        log(f"data {spec.dataset}: train {len(train_split)}, test {len(test_split)} "
            f"({int(test_split.labels.sum())} abnormal), {pre.size}px, {pre.channels} channel(s)")  # fmt: skip
        method = engine.create_method(cls, config, dataset.channels, spec.seed)
        history = engine.train(method, train_split, pre, seed=spec.seed, device=dev,
                               progress=progress, log=log)  # fmt: skip
        log(f"trained {history.steps} steps in {history.seconds:.1f}s")
        torch.save(method.state_dict(), tmp / "checkpoint.pt")
        (tmp / "train.json").write_text(json.dumps(history.__dict__, indent=1))
        pred = engine.predict(method, test_split, pre, device=dev)
        pred.save(tmp / "predictions.npz")
        metrics = evaluate(pred)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        log("metrics " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        final = out / "runs" / spec.dataset / spec.method / f"{chash}-seed{spec.seed}"
        _replace_dir(tmp, final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        row.status, row.error, row.finished = "failed", f"{type(exc).__name__}: {exc}", time.time()
        store.put(row)
        raise
    seconds = time.perf_counter() - start
    row.status, row.metrics, row.finished, row.seconds = "done", metrics, time.time(), seconds
    row.run_dir = final.relative_to(out).as_posix()
    store.put(row)
    return RunResult(run_id, final, metrics, {**resolved, "seed": spec.seed}, seconds)


def _replace_dir(src: Path, dst: Path) -> None:
    """Move the finished folder `src` to `dst`, replacing an earlier result only once complete."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def evaluate_run(run_dir: Path) -> dict[str, float]:
    """Recompute a run's metrics from its saved predictions and rewrite ``metrics.json``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MedadError(f"{run_dir}: run folder not found")
    metrics = evaluate(Predictions.load(run_dir / "predictions.npz"))
    tmp = run_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2))
    os.replace(tmp, run_dir / "metrics.json")
    _update_store_metrics(run_dir, metrics)
    return metrics


def _update_store_metrics(run_dir: Path, metrics: dict[str, float]) -> None:
    """If `run_dir` sits in an output root (OUT/runs/<dataset>/<method>/<name>), update its row."""
    parents = run_dir.resolve().parents
    if len(parents) < 4 or not (parents[3] / STORE_NAME).is_file():
        return
    store = ResultsStore(parents[3])
    rel = run_dir.resolve().relative_to(parents[3]).as_posix()
    for row in store.rows(status="done"):
        if row.run_dir == rel:
            row.metrics = metrics
            store.put(row)
