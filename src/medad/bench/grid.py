"""Run every (method, dataset, seed) cell of an experiment, resumably, on an executor.

Resuming rests on two facts: a run's folder appears (by rename) only once complete, and its store
row turns ``done`` only after that. So a cell is finished exactly when its row is ``done`` and its
folder exists; anything else (never started, ``running`` left by a killed process, ``failed`` when
asked to retry) runs again, and a re-run replaces rather than duplicates (the run id is the key).

Executors: ``local`` (one after another, in this process), ``process`` (a local pool of worker
processes, each writing its own result) and ``ray`` (each cell a Ray task with its CPU/GPU needs;
the task ships its finished run folder back and the driver writes it and the store row, so workers
need no shared file system — only the data).
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

from medad import runs
from medad.bench.config import Experiment
from medad.data.base import dataset_infos
from medad.errors import MedadError
from medad.methods.base import method_class
from medad.methods.optimisation import optimisation_summary
from medad.results.store import ResultsStore

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


def plan_cells(
    exp: Experiment, *, quick: bool = False, data_root: Path | None = None, open_data: bool = True
) -> list[Cell]:
    """Resolve and validate every cell before anything runs (a typo fails fast, not at cell 40).

    ``open_data=False`` plans without opening the datasets (`medad bench --plan`)."""
    embedded = {i.name for i in dataset_infos() if not i.needs_root}
    cells: dict[str, Cell] = {}
    for m in exp.methods:
        fields = method_class(m.name).Config.model_fields
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
                    planned = runs.plan(spec, root, open_data=open_data)
                except MedadError as exc:
                    raise MedadError(f"method {m.display!r} on dataset {d.name!r}: {exc}") from None
                cells.setdefault(planned.run_id, Cell(planned, m.display, dict(m.resources), root))
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
    workers: int = 1,
    address: str | None = None,
    retry_failed: bool = False,
    device: str | None = None,
    on_event: Callable[[str, Cell, str], None] | None = None,
) -> GridSummary:
    """Run the unfinished cells; `on_event(kind, cell, detail)` hears start/done/failed/skip."""
    out = Path(out)
    store = ResultsStore(out)
    runs.remove_stale_tmp(out)
    summary = GridSummary()
    todo = []
    for cell in cells:
        state = cell_state(store, cell)
        if state == "done" or (state == "failed" and not retry_failed):
            summary.skipped.append(cell.run_id)
            if on_event:
                on_event("skip", cell, state)
        else:
            todo.append(cell)
    event = on_event or (lambda *_: None)
    if executor == "local":
        for cell in todo:
            event("start", cell, "")
            _record(summary, cell, _run_here(cell, out, device), event)
    elif executor == "process":
        _run_processes(todo, out, max(1, workers), device, summary, event)
    elif executor == "ray":
        _run_ray(todo, out, address, device, summary, event)
    else:
        raise MedadError(f"unknown executor {executor!r}: use local, process or ray")
    return summary


def _record(summary: GridSummary, cell: Cell, error: str | None, event) -> None:
    if error is None:
        summary.done.append(cell.run_id)
        event("done", cell, "")
    else:
        summary.failed[cell.run_id] = error
        event("failed", cell, error)


def _run_here(cell: Cell, out: Path, device: str | None) -> str | None:
    """Run one cell in this process; returns None, or the error text (recorded in the store)."""
    try:
        runs.execute(
            cell.planned.spec,
            out,
            data_root=None,
            device=device,
            progress=False,
            tag=cell.label,
            planned=cell.planned,
        )
        return None
    except (KeyboardInterrupt, SystemExit):
        raise
    except MedadError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a crashed cell must not stop the grid
        return f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"


def _process_worker(cell: Cell, out: str, device: str | None, threads: int) -> str | None:
    import torch

    torch.set_num_threads(threads)
    return _run_here(cell, Path(out), device)


def _run_processes(todo, out, workers, device, summary, event) -> None:
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        pending = {}
        for cell in todo:
            event("start", cell, "")
            pending[pool.submit(_process_worker, cell, str(out), device, threads)] = cell
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                cell = pending.pop(fut)
                try:
                    error = fut.result()
                except Exception as exc:  # noqa: BLE001 - a worker died
                    error = f"worker process failed: {exc}"
                    runs.record_failure(out, cell.planned, error, cell.label)
                _record(summary, cell, error, event)


def _ray_task(
    spec: runs.RunSpec, data_root: str | None, device: str | None, threads: int
) -> dict[str, Any]:
    """Runs on a Ray worker: produce the run folder locally and ship it back as a tar archive."""
    import torch

    torch.set_num_threads(threads)  # as many threads as CPUs reserved for the task
    work = Path(tempfile.mkdtemp(prefix="medad-ray-"))
    try:
        planned = runs.plan(spec, Path(data_root) if data_root else None)
        metrics, seconds = runs.produce(
            planned, work / "run", cache_dir=work / "cache", device=device, progress=False
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


def _run_ray(todo, out, address, device, summary, event) -> None:
    try:
        import ray
    except ImportError:
        raise MedadError("the ray executor needs Ray: pip install 'medad[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True
        )
    try:
        remote = ray.remote(_ray_task)
        pending = {}
        store = ResultsStore(out)
        for cell in todo:
            opts = {
                "num_cpus": cell.resources.get("num_cpus", 1),
                "num_gpus": cell.resources.get("num_gpus", 0),
            }
            store.mark_running(cell.planned.row("running", cell.label))
            event("start", cell, "")
            root = str(cell.data_root) if cell.data_root else None
            threads = max(1, int(opts["num_cpus"]))
            pending[remote.options(**opts).remote(cell.planned.spec, root, device, threads)] = cell
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001 - the task or its node died
                result = {"error": f"Ray task failed: {exc}"}
            if "error" in result:
                runs.record_failure(out, cell.planned, result["error"], cell.label)
                _record(summary, cell, result["error"], event)
                continue
            tmp = runs.new_tmp_dir(out)
            with tarfile.open(fileobj=io.BytesIO(result["archive"]), mode="r") as tar:
                tar.extractall(tmp, filter="data")
            runs.commit(out, cell.planned, tmp, result["metrics"], result["seconds"], cell.label)
            _record(summary, cell, None, event)
    finally:
        if started_here:
            ray.shutdown()
