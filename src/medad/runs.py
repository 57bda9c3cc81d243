"""A run: (method, dataset, config, seed) → a run folder and a row in the results store.

Run folder ``OUT/runs/<dataset>/<method>/<config-hash>-seed<k>/``::

    config.yaml        the resolved configuration (method config with every default filled in)
    predictions.npz    ids, labels, image scores, maps and masks of the test split
    metrics.json       the metrics computed from predictions.npz
    checkpoint.pt      the trained method's state dict
    input_profile.json channels, sizes and intensities of the training images (`medad.data.profile`)
    train.json         loss per epoch, steps and time
    log.txt            what happened, line by line

The folder is built under ``OUT/runs/.tmp/`` and renamed into place only when complete, so a
crashed or killed run never leaves a half-written result; the store row is written last.

A finished run is reused, not retrained, unless asked (`force`); then the new run replaces the old
one only once complete. A run another live process is working on (its lease in the store) is not
started twice: `RunningElsewhere` says who holds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

import medad
from medad import engine
from medad.atomic import (
    prune_empty_parents,
    remove_dead_staging,
    remove_staging,
    replace_dir,
    write_text,
)
from medad.data.base import dataset_infos, get_dataset
from medad.data.loading import ArraySplit, load_split
from medad.data.profile import InputProfile
from medad.errors import MedadError, no_space_error
from medad.evaluation import (
    MAX_TRAIN_IMAGES_SCORED,
    Protocol,
    Thresholds,
    evaluate,
    fit_thresholds,
    split_protocol,
    validation_indices,
)
from medad.methods.base import build_config, method_class
from medad.methods.budgets import budget_epochs
from medad.predictions import Predictions
from medad.reproducibility import deterministic_mode, environment
from medad.results.store import (
    LEASE_TIMEOUT,
    STORE_NAME,
    Lease,
    ResultsStore,
    RunRow,
)

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
    #: precision and compilation of training (`engine.TrainOptions`); non-default values change
    #: the numbers, so they enter the run id (defaults leave the ids of earlier runs unchanged)
    train_options: engine.TrainOptions = field(default_factory=engine.TrainOptions)


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    metrics: dict[str, float]
    config: dict[str, Any]
    seconds: float
    #: True when the run was already finished and returned as it was, not trained again
    reused: bool = False


class RunningElsewhere(MedadError):
    """Another live process holds the run's lease (it is training it right now)."""

    def __init__(self, run_id: str, lease: Lease) -> None:
        super().__init__(f"{run_id}: running elsewhere ({lease})")
        self.lease = lease


def resolve_config(spec: RunSpec) -> tuple[Any, dict[str, Any]]:
    """The validated method config (the family's epoch budget on this dataset unless `epochs` is
    overridden) and the resolved record the run id hashes; opens no data."""
    cls = method_class(spec.method)
    protocol, values = split_protocol(dict(spec.overrides))
    if "epochs" not in values and (epochs := budget_epochs(cls, spec.dataset)) is not None:
        values["epochs"] = epochs  # `medad.methods.budgets`
    config = build_config(cls, values)
    resolved = {
        "method": spec.method,
        "dataset": spec.dataset,
        "dataset_options": dict(sorted(spec.dataset_options.items())),
        "config": config.model_dump(),
    }
    changed = protocol.model_dump(exclude_defaults=True)
    if changed:  # only then: the study's protocol keeps its run ids
        resolved["protocol"] = changed
    training = spec.train_options.model_dump(exclude_defaults=True, exclude={"check_every"})
    if training:
        resolved["training"] = training
    return config, resolved


def resolve(spec: RunSpec, data_root: Path | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """Build the dataset and the validated method config; returns (dataset, config, resolved)."""
    config, resolved = resolve_config(spec)
    dataset = open_dataset(spec, data_root)
    return dataset, config, resolved


def open_dataset(spec: RunSpec, data_root: Path | None) -> Any:
    """The dataset of `spec` under `data_root` (opening lists its files and digests their names
    and sizes for the run id, so a grid opens each dataset once: `DatasetCache`)."""
    return get_dataset(spec.dataset, data_root, **spec.dataset_options)


class DatasetCache:
    """Opened datasets by (name, data root, options), so planning a grid of many methods and
    seeds opens (lists and digests) each dataset once, not once per cell."""

    def __init__(self) -> None:
        self._open: dict[str, Any] = {}

    def __call__(self, spec: RunSpec, data_root: Path | None) -> Any:
        key = json.dumps([spec.dataset, str(data_root), spec.dataset_options], sort_keys=True)
        if key not in self._open:
            self._open[key] = open_dataset(spec, data_root)
        return self._open[key]


def config_hash(resolved: dict[str, Any]) -> str:
    """A short stable hash of the resolved configuration (the seed is not part of it)."""
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:10]


def run_id_of(spec: RunSpec, chash: str) -> str:
    return f"{spec.dataset}/{spec.method}/{chash}-seed{spec.seed}"


@dataclass
class PlannedRun:
    """A run whose configuration has been resolved and validated, before anything is trained."""

    spec: RunSpec
    #: None only for a plan made without its data on disk (`plan(..., open_data=False)`)
    run_id: str | None
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


def plan(
    spec: RunSpec,
    data_root: Path | None = None,
    *,
    open_data: bool = True,
    datasets: DatasetCache | None = None,
) -> PlannedRun:
    """Resolve and validate `spec` (method, dataset, config) without training anything.

    With ``open_data=False`` (`medad bench --plan`) a grid can be planned on a machine without the
    data: a dataset on disk is opened only if it is there, since its identity (folder, file names
    and sizes) is part of the run id. When it is not, `dataset` is None and so is `run_id`: the id
    is known only once the data is read, and no other id is made up in its place. `datasets`
    reuses the datasets a grid has already opened (`DatasetCache`)."""
    data_root = data_root if data_root is not None else default_data_root()
    opener = datasets or open_dataset
    if open_data:
        config, resolved = resolve_config(spec)
        dataset = opener(spec, data_root)
    else:
        infos = {i.name: i for i in dataset_infos()}
        if spec.dataset not in infos:
            known = ", ".join(sorted(infos))
            raise MedadError(f"unknown dataset {spec.dataset!r}; known datasets: {known}")
        config, resolved = resolve_config(spec)
        dataset = None
        if infos[spec.dataset].needs_root:
            try:
                dataset = opener(spec, data_root)
            except MedadError:
                chash = config_hash(resolved)
                return PlannedRun(spec, None, chash, resolved, None, config)
    identity = dataset.identity() if dataset is not None else None
    if identity is not None:  # data on disk: two folders are two datasets, never one run id
        resolved["data"] = identity
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
    deterministic: bool = False,
    compress_predictions: bool = False,
    on_epoch: engine.EpochHook | None = None,
) -> tuple[dict[str, float], float]:
    """Train, score and evaluate `planned`, writing every file of the run folder into `folder`.

    Returns (metrics, seconds). Touches nothing outside `folder` and `cache_dir`, so it can run on a
    remote worker whose folder is shipped back. `deterministic`: see `medad.reproducibility`;
    `compress_predictions`: see `Predictions.save`.
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
    protocol = Protocol(**planned.resolved.get("protocol", {}))
    held_out = validation_indices(len(train_split), protocol.validation_fraction, spec.seed)
    train_split, normal_split = _hold_out(
        train_split, held_out, spec.seed, protocol.threshold_images
    )
    InputProfile.of(train_split).save(folder)  # `medad predict` warns on inputs unlike these
    log(
        f"data {spec.dataset}: train {len(train_split)}, test {len(test_split)} "
        f"({int(test_split.labels.sum())} abnormal), {pre.size}px, {pre.channels} channel(s)"
        + (f", {len(held_out)} normal images held out for thresholds" if len(held_out) else "")
    )
    with deterministic_mode(dev, deterministic):
        method = engine.create_method(cls, config, dataset.channels, spec.seed)
        history = engine.train(
            method,
            train_split,
            pre,
            seed=spec.seed,
            device=dev,
            progress=progress,
            log=log,
            options=spec.train_options,
            label=f"{spec.method} on {spec.dataset}",
            on_epoch=on_epoch,
        )
        # as training ran (not hashed into the run id): appended to config.yaml and the store row
        with open(folder / "config.yaml", "a") as fh:
            fh.write(
                yaml.safe_dump({"environment": environment(dev, deterministic)}, sort_keys=False)
            )
        log(f"trained {history.steps} steps in {history.seconds:.1f}s")
        torch.save(method.state_dict(), folder / "checkpoint.pt")
        (folder / "train.json").write_text(json.dumps(history.__dict__, indent=1))
        pred = engine.predict(method, test_split, pre, device=dev)
        normal_pred = engine.predict(method, normal_split, pre, device=dev)
    pred.save(folder / "predictions.npz", compress=compress_predictions)
    thresholds = fit_thresholds(
        normal_pred, protocol.threshold_fpr, "validation" if len(held_out) else "train"
    )
    thresholds.save(folder)
    metrics = evaluate(pred, thresholds=thresholds)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log("metrics " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return metrics, time.perf_counter() - start


def _hold_out(
    train: ArraySplit,
    held_out: np.ndarray,
    seed: int,
    most: int = MAX_TRAIN_IMAGES_SCORED,
) -> tuple[ArraySplit, ArraySplit]:
    """(images to train on, normal images to set thresholds on): the held-out ones when there
    are any, else up to `most` of the training images themselves (in-sample)."""

    def subset(idx: np.ndarray) -> ArraySplit:
        masks = train.masks[idx] if train.masks is not None else None
        return ArraySplit(train.images[idx], train.labels[idx], masks, [train.ids[i] for i in idx])

    if len(held_out):
        keep = np.setdiff1d(np.arange(len(train)), held_out)
        return subset(keep), subset(held_out)
    n = min(len(train), most)
    scored = np.sort(np.random.default_rng([seed, 7919]).choice(len(train), n, replace=False))
    return train, subset(scored)


def new_tmp_dir(out: Path) -> Path:
    """A fresh folder under ``OUT/runs/.tmp`` (same file system as the final run folders), named
    after this process so that `remove_stale_tmp` can tell abandoned folders from live ones."""
    tmp = Path(out) / "runs" / ".tmp" / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
    try:
        tmp.mkdir(parents=True)
    except FileNotFoundError:  # another process pruned an empty parent meanwhile: once more
        tmp.mkdir(parents=True)
    return tmp


def remove_stale_tmp(out: Path) -> int:
    """Delete staging folders of processes of this host that no longer run (killed runs)."""
    base = Path(out) / "runs" / ".tmp"
    return remove_dead_staging(base, f"{socket.gethostname()}-")


def commit(
    out: Path,
    planned: PlannedRun,
    folder: Path,
    metrics: dict[str, float],
    seconds: float,
    tag: str | None = None,
    *,
    store: ResultsStore | None = None,
) -> RunResult:
    """Move a finished run folder into place, then record it as done (the store row comes last)."""
    out = Path(out)
    final = out / planned.rel_dir
    written = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    replace_dir(folder, final)
    prune_empty_parents(folder.parent, out)  # OUT/runs/.tmp when no other run is staged there
    row = planned.row("done", tag)
    row.run_dir, row.metrics, row.seconds = planned.rel_dir, metrics, seconds
    row.environment = written.get("environment") or {}
    row.started, row.finished = time.time() - seconds, time.time()
    (store or ResultsStore(out)).finish(row)
    return RunResult(
        planned.run_id, final, metrics, {**planned.resolved, "seed": planned.spec.seed}, seconds
    )


def record_failure(
    out: Path,
    planned: PlannedRun,
    error: BaseException | str,
    tag: str | None = None,
    *,
    store: ResultsStore | None = None,
) -> None:
    """Mark the run failed, unless it is done or another live process now works on it. Best
    effort: when the store cannot be written (a full disk), the row stays as it was."""
    row = planned.row("failed", tag)
    if isinstance(error, str | MedadError):
        row.error = str(error)
    else:
        row.error = f"{type(error).__name__}: {error}"
    row.finished = time.time()
    try:
        (store or ResultsStore(out)).finish(row)
    except MedadError:
        # the store cannot be written (e.g. a full disk): the caller raises the run's own error,
        # which says more than a failure to record it; only the failed row is missing
        pass


def reused_result(store: ResultsStore, row: RunRow) -> RunResult:
    """The RunResult of a finished run recorded in `store`."""
    assert row.run_dir is not None
    return RunResult(
        row.run_id, store.root / row.run_dir, row.metrics, row.config, row.seconds or 0.0, True
    )


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
    force: bool = False,
    lease_timeout: float = LEASE_TIMEOUT,
    on_start: Callable[[], None] | None = None,
    deterministic: bool = False,
    compress_predictions: bool = False,
    on_epoch: engine.EpochHook | None = None,
) -> RunResult:
    """Train, score and evaluate one run; write its folder and its row in ``OUT/results.sqlite``.

    A run already finished in `out` is returned as it is (``reused``) unless `force`; then it is
    replaced once the new one is complete. Raises `RunningElsewhere` when another live process
    holds the run (`lease_timeout`: see `ResultsStore`). `planned` (from `plan`) skips resolving
    the spec again; `on_start` is called once the run is claimed, before training.
    `deterministic`: repeatable CUDA kernels (see `medad.reproducibility`). `on_epoch` hears
    every training epoch (`medad.engine.EpochHook`).
    """
    out = Path(out)
    planned = planned if planned is not None else plan(spec, data_root)
    dev = engine.resolve_device(device)
    store = ResultsStore(out, lease_timeout=lease_timeout)
    claim = store.claim(planned.row("running", tag), force=force)
    if claim.outcome == "done":
        assert claim.row is not None
        return reused_result(store, claim.row)
    if claim.outcome == "elsewhere":
        assert claim.lease is not None
        raise RunningElsewhere(planned.run_id, claim.lease)
    tmp: Path | None = None
    try:
        if on_start is not None:
            on_start()
        with store.keep_alive():
            tmp = new_tmp_dir(out)
            metrics, seconds = produce(
                planned,
                tmp,
                cache_dir=out / ".cache",
                device=dev,
                progress=progress,
                echo=echo,
                deterministic=deterministic,
                compress_predictions=compress_predictions,
                on_epoch=on_epoch,
            )
            return commit(out, planned, tmp, metrics, seconds, tag, store=store)
    except BaseException as exc:
        if tmp is not None:
            remove_staging(tmp, out)
        full = no_space_error(exc, out)
        record_failure(out, planned, full or exc, tag, store=store)
        if full is not None:
            raise full from exc
        raise


def evaluate_run(run_dir: Path) -> dict[str, float]:
    """Recompute a run's metrics from its saved predictions and rewrite ``metrics.json``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MedadError(f"{run_dir}: run folder not found")
    metrics = evaluate(
        Predictions.load(run_dir / "predictions.npz"), thresholds=Thresholds.load(run_dir)
    )
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
