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
import socket
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
from medad.atomic import replace_dir, write_text
from medad.data.base import dataset_infos, get_dataset
from medad.data.loading import load_split
from medad.errors import MedadError
from medad.evaluation import evaluate
from medad.methods.base import build_config, method_class
from medad.methods.budgets import budget_epochs
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


def resolve_config(spec: RunSpec) -> tuple[Any, dict[str, Any]]:
    """The validated method config (the family's epoch budget on this dataset unless `epochs` is
    overridden) and the resolved record the run id hashes; opens no data."""
    cls = method_class(spec.method)
    values = dict(spec.overrides)
    if "epochs" not in values and (epochs := budget_epochs(cls, spec.dataset)) is not None:
        values["epochs"] = epochs  # `medad.methods.budgets`
    config = build_config(cls, values)
    resolved = {
        "method": spec.method,
        "dataset": spec.dataset,
        "dataset_options": dict(sorted(spec.dataset_options.items())),
        "config": config.model_dump(),
    }
    return config, resolved


def resolve(spec: RunSpec, data_root: Path | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """Build the dataset and the validated method config; returns (dataset, config, resolved)."""
    config, resolved = resolve_config(spec)
    dataset = get_dataset(spec.dataset, data_root, **spec.dataset_options)
    return dataset, config, resolved


def config_hash(resolved: dict[str, Any]) -> str:
    """A short stable hash of the resolved configuration (the seed is not part of it)."""
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:10]


def run_id_of(spec: RunSpec, chash: str) -> str:
    return f"{spec.dataset}/{spec.method}/{chash}-seed{spec.seed}"


@dataclass
class PlannedRun:
    """A run whose configuration has been resolved and validated, before anything is trained."""

    spec: RunSpec
    run_id: str
    chash: str
    resolved: dict[str, Any]
    dataset: Any
    config: Any

    @property
    def rel_dir(self) -> str:
        """The run folder relative to the output root."""
        s = self.spec
        return f"runs/{s.dataset}/{s.method}/{self.chash}-seed{s.seed}"

    def row(self, status: str, tag: str | None = None) -> RunRow:
        s = self.spec
        return RunRow(
            self.run_id,
            s.method,
            s.dataset,
            s.seed,
            self.chash,
            status,
            tag=tag,
            config={**self.resolved, "seed": s.seed},
        )


def plan(spec: RunSpec, data_root: Path | None = None, *, open_data: bool = True) -> PlannedRun:
    """Resolve and validate `spec` (method, dataset, config) without training anything.

    With ``open_data=False`` the dataset is only checked to be registered, not opened (its
    `dataset` is None), so a grid can be planned on a machine without the data."""
    if not open_data:
        if spec.dataset not in {i.name for i in dataset_infos()}:
            known = ", ".join(sorted(i.name for i in dataset_infos()))
            raise MedadError(f"unknown dataset {spec.dataset!r}; known datasets: {known}")
        config, resolved = resolve_config(spec)
        chash = config_hash(resolved)
        return PlannedRun(spec, run_id_of(spec, chash), chash, resolved, None, config)
    data_root = data_root if data_root is not None else default_data_root()
    dataset, config, resolved = resolve(spec, data_root)
    chash = config_hash(resolved)
    return PlannedRun(spec, run_id_of(spec, chash), chash, resolved, dataset, config)


def produce(
    planned: PlannedRun,
    folder: Path,
    *,
    cache_dir: Path | None,
    device: str | torch.device | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> tuple[dict[str, float], float]:
    """Train, score and evaluate `planned`, writing every file of the run folder into `folder`.

    Returns (metrics, seconds). Touches nothing outside `folder` and `cache_dir`, so it can run on a
    remote worker whose folder is shipped back.
    """
    spec, config, dataset = planned.spec, planned.config, planned.dataset
    cls = method_class(spec.method)
    dev = device if isinstance(device, torch.device) else engine.resolve_device(device)
    folder.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        with open(folder / "log.txt", "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")
        if echo is not None:
            echo(msg)

    start = time.perf_counter()
    log(f"medad {medad.__version__} run {planned.run_id} on {dev}")
    (folder / "config.yaml").write_text(
        yaml.safe_dump(
            {
                **planned.resolved,
                "seed": spec.seed,
                "channels": dataset.channels,
                "device": str(dev),
            },
            sort_keys=False,
        )
    )
    pre = cls.preprocess(config, dataset.channels)
    train_split = load_split(dataset, "train", pre, cache_dir)
    test_split = load_split(dataset, "test", pre, cache_dir)
    log(
        f"data {spec.dataset}: train {len(train_split)}, test {len(test_split)} "
        f"({int(test_split.labels.sum())} abnormal), {pre.size}px, {pre.channels} channel(s)"
    )
    method = engine.create_method(cls, config, dataset.channels, spec.seed)
    history = engine.train(
        method, train_split, pre, seed=spec.seed, device=dev, progress=progress, log=log
    )
    log(f"trained {history.steps} steps in {history.seconds:.1f}s")
    torch.save(method.state_dict(), folder / "checkpoint.pt")
    (folder / "train.json").write_text(json.dumps(history.__dict__, indent=1))
    pred = engine.predict(method, test_split, pre, device=dev)
    pred.save(folder / "predictions.npz")
    metrics = evaluate(pred)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log("metrics " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return metrics, time.perf_counter() - start


def new_tmp_dir(out: Path) -> Path:
    """A fresh folder under ``OUT/runs/.tmp`` (same file system as the final run folders), named
    after this process so that `remove_stale_tmp` can tell abandoned folders from live ones."""
    tmp = Path(out) / "runs" / ".tmp" / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    return tmp


def remove_stale_tmp(out: Path) -> int:
    """Delete staging folders of processes of this host that no longer run (killed runs)."""
    removed = 0
    base = Path(out) / "runs" / ".tmp"
    host = socket.gethostname()
    for folder in base.glob(f"{host}-*-*") if base.is_dir() else []:
        pid = folder.name[len(host) + 1 :].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def commit(
    out: Path,
    planned: PlannedRun,
    folder: Path,
    metrics: dict[str, float],
    seconds: float,
    tag: str | None = None,
) -> RunResult:
    """Move a finished run folder into place, then record it as done (the store row comes last)."""
    out = Path(out)
    final = out / planned.rel_dir
    replace_dir(folder, final)
    row = planned.row("done", tag)
    row.run_dir, row.metrics, row.seconds = planned.rel_dir, metrics, seconds
    row.started, row.finished = time.time() - seconds, time.time()
    ResultsStore(out).put(row)
    return RunResult(
        planned.run_id, final, metrics, {**planned.resolved, "seed": planned.spec.seed}, seconds
    )


def record_failure(
    out: Path, planned: PlannedRun, error: BaseException | str, tag: str | None = None
) -> None:
    row = planned.row("failed", tag)
    row.error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    row.finished = time.time()
    ResultsStore(out).put(row)


def execute(
    spec: RunSpec,
    out: Path = DEFAULT_OUT,
    *,
    data_root: Path | None = None,
    device: str | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    tag: str | None = None,
    planned: PlannedRun | None = None,
) -> RunResult:
    """Train, score and evaluate one run; write its folder and its row in ``OUT/results.sqlite``.

    `planned` (from `plan`) skips resolving the spec again.
    """
    out = Path(out)
    planned = planned if planned is not None else plan(spec, data_root)
    dev = engine.resolve_device(device)
    ResultsStore(out).mark_running(planned.row("running", tag))
    tmp = new_tmp_dir(out)
    try:
        metrics, seconds = produce(
            planned, tmp, cache_dir=out / ".cache", device=dev, progress=progress, echo=echo
        )
        return commit(out, planned, tmp, metrics, seconds, tag)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        record_failure(out, planned, exc, tag)
        raise


def evaluate_run(run_dir: Path) -> dict[str, float]:
    """Recompute a run's metrics from its saved predictions and rewrite ``metrics.json``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MedadError(f"{run_dir}: run folder not found")
    metrics = evaluate(Predictions.load(run_dir / "predictions.npz"))
    write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
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
