"""Run every (method, dataset, seed) cell of an experiment, resumably, on an executor.

Resuming rests on two facts: a run's folder appears (by rename) only once complete, and its store
row turns ``done`` only after that. So a cell is finished exactly when its row is ``done`` and its
folder exists; anything else (never started, ``running`` left by a killed process, ``failed`` when
asked to retry) runs again, and a re-run replaces rather than duplicates (the run id is the key).
Several grids may share one output root: each cell is claimed in the store first (a lease, see
`medad.results.store`), so a cell another live process works on is skipped ("running elsewhere")
and one left by a killed process is taken over.

Executors: ``local`` (one after another, in this process), ``process`` (a local pool of worker
processes, each writing its own result; on CUDA one pool per GPU, K cells per GPU when their
measured memory fits: `medad.bench.placement`) and ``ray`` (each cell a Ray task with its CPU/GPU
needs, a GPU share such as 0.25 included; the task ships its finished run folder back and the
driver writes it and the store row, so workers need no shared file system — only the data).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import signal
import tarfile
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

from medad import runs
from medad.bench import placement
from medad.bench.config import Experiment, check_gpu_share
from medad.data.base import dataset_infos
from medad.errors import MedadError
from medad.evaluation import Protocol
from medad.methods.base import method_class
from medad.methods.optimisation import optimisation_summary
from medad.results.store import LEASE_TIMEOUT, ResultsStore

Executor = Literal["local", "process", "ray"]


@dataclass
class Cell:
    planned: runs.PlannedRun
    label: str
    resources: dict[str, float] = field(default_factory=dict)
    data_root: Path | None = None

    @property
    def run_id(self) -> str:
        return self.planned.run_id


@dataclass
class GridSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    #: skipped cells that failed in an earlier run (kept failed; ``retry_failed`` runs them)
    failed_before: list[str] = field(default_factory=list)
    #: skipped cells another live process holds
    elsewhere: list[str] = field(default_factory=list)

    @property
    def any_failed(self) -> bool:
        """Whether a cell of the grid is failed now (this time or before)."""
        return bool(self.failed or self.failed_before)


def plan_cells(
    exp: Experiment, *, quick: bool = False, data_root: Path | None = None, open_data: bool = True
) -> list[Cell]:
    """Resolve and validate every cell before anything runs (a typo fails fast, not at cell 40).

    ``open_data=False`` plans without opening the datasets (`medad bench --plan`)."""
    embedded = {i.name for i in dataset_infos() if not i.needs_root}
    cells: dict[str, Cell] = {}
    datasets = runs.DatasetCache()  # each dataset listed and digested once, not once per cell
    for m in exp.methods:
        # method config fields and the evaluation protocol's (validation_fraction, threshold_fpr)
        fields = {*method_class(m.name).Config.model_fields, *Protocol.model_fields}
        for d in exp.datasets:
            root = (
                Path(d.data_root)
                if d.data_root
                else (Path(exp.data_root) if exp.data_root else data_root)
            )
            for seed in exp.seeds:
                shared = {k: v for k, v in exp.set.items() if k.split(".")[0] in fields}
                overrides, options = {**shared, **m.set}, dict(d.options)
                if quick:
                    overrides.update(
                        {k: v for k, v in exp.quick.set.items() if k.split(".")[0] in fields}
                    )
                    overrides["epochs"] = exp.quick.epochs
                    if d.name in embedded:
                        options = {**options, **exp.quick.dataset_options}
                spec = runs.RunSpec(m.name, d.name, seed, overrides, options)
                try:
                    planned = runs.plan(spec, root, open_data=open_data, datasets=datasets)
                except MedadError as exc:
                    raise MedadError(f"method {m.display!r} on dataset {d.name!r}: {exc}") from None
                # a plan without its data has no run id yet: one cell per (config, data folder)
                key = planned.run_id or f"{planned.rel_dir}@{root}"
                resources = m.resources.model_dump(exclude_none=True)
                cells.setdefault(key, Cell(planned, m.display, resources, root))
    return list(cells.values())


def plan_rows(cells: list[Cell]) -> list[dict[str, Any]]:
    """What each cell would run: method, label, dataset, seed, budget, input and optimisation."""
    rows = []
    for cell in cells:
        spec, config = cell.planned.spec, cell.planned.config
        optimiser, schedule = optimisation_summary(config)
        rows.append(
            {
                "method": spec.method,
                "label": cell.label,
                "dataset": spec.dataset,
                "seed": spec.seed,
                "epochs": config.epochs,
                "steps_per_epoch": getattr(config, "steps_per_epoch", None),
                "image_size": config.image_size,
                "batch_size": config.batch_size,
                "optimizer": getattr(config, "optimizer", "adam"),
                "lr": config.lr,
                "optimiser": optimiser,
                "schedule": schedule,
                "run_id": cell.run_id,
                "resolved": cell.planned.resolved,
            }
        )
    return rows


def cell_state(store: ResultsStore, cell: Cell) -> str:
    """``done`` (finished and on disk), ``failed``, or ``todo``."""
    row = store.get(cell.run_id)
    if row is None:
        return "todo"
    if row.status == "done" and row.run_dir and (store.root / row.run_dir).is_dir():
        return "done"
    return "failed" if row.status == "failed" else "todo"


def run_grid(
    cells: list[Cell],
    out: Path,
    *,
    executor: Executor = "local",
    workers: int | Literal["auto"] = 1,
    gpus_per_cell: float | None = None,
    address: str | None = None,
    retry_failed: bool = False,
    force: bool = False,
    device: str | None = None,
    lease_timeout: float = LEASE_TIMEOUT,
    deterministic: bool = False,
    on_event: Callable[[str, Cell, str], None] | None = None,
    on_epoch: Callable[[Cell, dict[str, Any]], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> GridSummary:
    """Run the unfinished cells (`force`: every cell again); `on_event(kind, cell, detail)` hears
    start/done/failed/skip. Cells another live process holds are skipped (``summary.elsewhere``).
    `on_epoch(cell, record)` hears each training epoch of the cells run in this process (the
    local executor; `medad.engine.EpochHook`).

    `workers` cells run at once with the ``process`` executor (``"auto"``: one per CPU core, or on
    CUDA as many as fit in GPU memory); on CUDA they are spread over the GPUs and fewer run when
    the measured memory of a cell says K do not fit (`medad.bench.placement`; `log` hears why).
    `gpus_per_cell` is the GPU share of a Ray cell whose method entry names none (0.25: four
    cells per GPU)."""
    if workers != "auto" and (not isinstance(workers, int) or workers < 1):
        raise MedadError(f"workers must be a whole number of at least 1 or 'auto', got {workers!r}")
    if gpus_per_cell is not None and (why := check_gpu_share(gpus_per_cell)):
        raise MedadError(f"--gpus-per-cell {why}")
    out = Path(out)
    store = ResultsStore(out, lease_timeout=lease_timeout)
    runs.remove_stale_tmp(out)
    summary = GridSummary()
    event = on_event or (lambda *_: None)
    todo = []
    for cell in cells:
        state = "todo" if force else cell_state(store, cell)
        if state == "done" or (state == "failed" and not retry_failed):
            _record(summary, cell, Outcome("skip", state), event)
        else:
            todo.append(cell)
    options = RunOptions(device, force, lease_timeout, deterministic)
    say = log or (lambda _: None)
    if executor == "local":
        for cell in todo:
            hook = (lambda rec, cell=cell: on_epoch(cell, rec)) if on_epoch else None
            outcome = _run_here(
                cell, out, options, lambda cell=cell: event("start", cell, ""), on_epoch=hook
            )
            _record(summary, cell, outcome, event)
    elif executor == "process":
        _run_processes(todo, out, workers, options, summary, event, say)
    elif executor == "ray":
        _run_ray(todo, out, address, options, summary, event, gpus_per_cell)
    else:
        raise MedadError(f"unknown executor {executor!r}: use local, process or ray")
    return summary


@dataclass(frozen=True)
class RunOptions:
    """How every cell runs (passed to worker processes)."""

    device: str | None = None
    force: bool = False
    lease_timeout: float = LEASE_TIMEOUT
    deterministic: bool = False


@dataclass(frozen=True)
class Outcome:
    """What became of a cell: ``done``, ``failed`` (detail: the error) or ``skip`` (detail: why:
    ``done``, ``failed`` before, or ``running elsewhere: <lease>``)."""

    kind: Literal["done", "failed", "skip"]
    detail: str = ""


def _record(summary: GridSummary, cell: Cell, outcome: Outcome, event) -> None:
    if outcome.kind == "done":
        summary.done.append(cell.run_id)
    elif outcome.kind == "failed":
        summary.failed[cell.run_id] = outcome.detail
    else:
        summary.skipped.append(cell.run_id)
        if outcome.detail == "failed":
            summary.failed_before.append(cell.run_id)
        elif outcome.detail.startswith("running elsewhere"):
            summary.elsewhere.append(cell.run_id)
    event(outcome.kind, cell, outcome.detail)


def _run_here(
    cell: Cell,
    out: Path,
    options: RunOptions,
    on_start: Callable[[], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> Outcome:
    """Run one cell in this process (the error of a failed one is recorded in the store)."""
    try:
        result = runs.execute(
            cell.planned.spec,
            out,
            data_root=None,
            device=options.device,
            progress=False,
            tag=cell.label,
            planned=cell.planned,
            force=options.force,
            lease_timeout=options.lease_timeout,
            on_start=on_start,
            deterministic=options.deterministic,
            on_epoch=on_epoch,
        )
        return Outcome("skip", "done") if result.reused else Outcome("done")
    except (KeyboardInterrupt, SystemExit):
        raise
    except runs.RunningElsewhere as exc:
        return Outcome("skip", f"running elsewhere: {exc.lease}")
    except MedadError as exc:
        return Outcome("failed", str(exc))
    except Exception as exc:  # noqa: BLE001 - a crashed cell must not stop the grid
        return Outcome("failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")


def _worker_settings(threads: int) -> None:
    """What a process or Ray worker sets before its cell: the medad command's allocator setting
    (speed only, `medad.process`) and its share of the CPU threads."""
    import torch

    from medad.process import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(threads)


def _process_worker(cell: Cell, out: str, options: RunOptions, threads: int) -> Outcome:
    _worker_settings(threads)
    return _run_here(cell, Path(out), options)


def _exit_with_parent(parent: int) -> None:
    """Pool-worker initializer: exit when the grid process dies (even by kill -9) instead of
    training on, orphaned, for hours. Linux's parent-death signal acts at once; a watchdog thread
    that sees the parent change does it everywhere else."""
    try:
        import ctypes

        pr_set_pdeathsig = 1  # <linux/prctl.h>
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux
        pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="medad-parent-watch", daemon=True).start()


def _init_worker(parent: int, device: str | None, memory_fraction: float | None = None) -> None:
    """Pool-worker initializer: exit with the grid (`_exit_with_parent`) and, in a pool of one
    GPU, make it the process's current CUDA device (its context and kernels stay on it) and cap
    its allocator to its share of that GPU (`placement.Placement.memory_fraction`)."""
    _exit_with_parent(parent)
    if device is not None and device.startswith("cuda"):
        import torch

        torch.cuda.set_device(device)
        if memory_fraction is not None:
            torch.cuda.set_per_process_memory_fraction(memory_fraction, device)


def _measure_in_fresh_process(todo: list[Cell], devices: list[str], cache_dir: Path) -> Any:
    """`placement.measure_needs` in a short-lived process, so that the grid's own process never
    holds a CUDA context (nor the probe's cached memory) while its workers train."""
    with ProcessPoolExecutor(
        max_workers=1,
        mp_context=get_context("spawn"),
        initializer=_exit_with_parent,
        initargs=(os.getpid(),),
    ) as pool:
        planned = [cell.planned for cell in todo]
        return pool.submit(placement.measure_needs, planned, devices, cache_dir).result()


def _process_placement(todo, out, workers, options, log) -> placement.Placement:
    """How many cells at once, where: one pool on the CPU (`auto`: one cell per core); on CUDA the
    GPUs of `placement.cuda_devices`, with K lowered to what their free memory holds."""
    devices = placement.cuda_devices(options.device)
    if devices is None:
        n = (os.cpu_count() or 1) if workers == "auto" else workers
        return placement.Placement({options.device: n}, n)
    found = _measure_in_fresh_process(todo, devices, Path(out) / ".cache")
    fitted = placement.fit_workers(
        None if workers == "auto" else workers, found.needs, found.free, total=found.total
    )
    for note in [*found.notes, *fitted.notes]:
        log(note)
    return fitted


def _run_processes(todo, out, workers, options, summary, event, log) -> None:
    if not todo:
        return
    where = _process_placement(todo, out, workers, options, log)
    threads = max(1, (os.cpu_count() or 1) // where.workers)
    slots = placement.Slots(where.per_device, where.workers)
    queue = list(todo)
    with contextlib.ExitStack() as stack:
        pools = {
            device: stack.enter_context(
                ProcessPoolExecutor(
                    max_workers=k,
                    mp_context=get_context("spawn"),
                    initializer=_init_worker,
                    initargs=(os.getpid(), device, where.memory_fraction.get(device)),
                )
            )
            for device, k in where.per_device.items()
        }
        pending: dict[Any, tuple[Cell, str | None]] = {}
        while queue or pending:
            while queue and slots.has_room():  # a cell starts on the least-loaded device
                cell, device = queue.pop(0), slots.take()
                event("start", cell, "")
                run = dataclasses.replace(options, device=device)
                future = pools[device].submit(_process_worker, cell, str(out), run, threads)
                pending[future] = (cell, device)
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                cell, device = pending.pop(fut)
                slots.give_back(device)
                try:
                    outcome = fut.result()
                except Exception as exc:  # noqa: BLE001 - a worker died
                    outcome = Outcome("failed", f"worker process failed: {exc}")
                    runs.record_failure(out, cell.planned, outcome.detail, cell.label)
                _record(summary, cell, outcome, event)


def _ray_task(
    spec: runs.RunSpec, data_root: str | None, options: RunOptions, threads: int
) -> dict[str, Any]:
    """Runs on a Ray worker: produce the run folder locally and ship it back as a tar archive."""
    _worker_settings(threads)  # as many threads as CPUs reserved for the task
    work = Path(tempfile.mkdtemp(prefix="medad-ray-"))
    try:
        planned = runs.plan(spec, Path(data_root) if data_root else None)
        metrics, seconds = runs.produce(
            planned,
            work / "run",
            cache_dir=work / "cache",
            device=options.device,
            progress=False,
            deterministic=options.deterministic,
        )
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(work / "run", arcname=".")
        return {"metrics": metrics, "seconds": seconds, "archive": buf.getvalue()}
    except Exception as exc:  # noqa: BLE001 - reported back to the driver
        return {
            "error": str(exc) if isinstance(exc, MedadError) else f"{type(exc).__name__}: {exc}"
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ray_request(
    cell: Cell, gpus_per_cell: float | None, device: str | None
) -> tuple[dict[str, float], str | None]:
    """(what the cell's Ray task reserves, the device it trains on). Its GPU share is its method
    entry's ``num_gpus``, else `gpus_per_cell`, else a whole GPU when the grid asks for CUDA; a
    task with a share trains on ``cuda`` (Ray makes its GPU the only one it sees)."""
    gpus = cell.resources.get("num_gpus")
    if gpus is None:
        gpus = gpus_per_cell if gpus_per_cell is not None else 0.0
        if gpus == 0 and device is not None and device.startswith("cuda"):
            gpus = 1.0
    wanted = {"num_cpus": cell.resources.get("num_cpus", 1), "num_gpus": gpus}
    if not gpus:
        return wanted, device
    if device not in (None, "auto") and not device.startswith("cuda"):
        raise MedadError(
            f"{cell.label}: a share of {gpus:g} GPU asked for, but the grid runs on {device!r}; "
            "use --device cuda (or auto)"
        )
    return wanted, "cuda"


def _run_ray(todo, out, address, options, summary, event, gpus_per_cell=None) -> None:
    requests = [ray_request(cell, gpus_per_cell, options.device) for cell in todo]
    try:
        import ray
    except ImportError:
        raise MedadError("the ray executor needs Ray: pip install 'medad[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True
        )
    # the driver holds the leases of the cells its tasks run, and renews them
    store = ResultsStore(out, lease_timeout=options.lease_timeout)
    try:
        with store.keep_alive():
            remote = ray.remote(_ray_task)
            pending = {}
            for cell, (opts, task_device) in zip(todo, requests, strict=True):
                claim = store.claim(cell.planned.row("running", cell.label), force=options.force)
                if claim.outcome != "claimed":
                    why = "done" if claim.outcome == "done" else f"running elsewhere: {claim.lease}"
                    _record(summary, cell, Outcome("skip", why), event)
                    continue
                event("start", cell, "")
                root = str(cell.data_root) if cell.data_root else None
                threads = max(1, int(opts["num_cpus"]))
                run = dataclasses.replace(options, device=task_device)
                task = remote.options(**opts).remote(cell.planned.spec, root, run, threads)
                pending[task] = cell
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                cell = pending.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except Exception as exc:  # noqa: BLE001 - the task or its node died
                    result = {"error": f"Ray task failed: {exc}"}
                if "error" in result:
                    runs.record_failure(out, cell.planned, result["error"], cell.label, store=store)
                    _record(summary, cell, Outcome("failed", result["error"]), event)
                    continue
                tmp = runs.new_tmp_dir(out)
                with tarfile.open(fileobj=io.BytesIO(result["archive"]), mode="r") as tar:
                    tar.extractall(tmp, filter="data")
                runs.commit(
                    out,
                    cell.planned,
                    tmp,
                    result["metrics"],
                    result["seconds"],
                    cell.label,
                    store=store,
                )
                _record(summary, cell, Outcome("done"), event)
    finally:
        if started_here:
            ray.shutdown()
