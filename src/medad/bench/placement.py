"""Where the cells of a ``process`` grid run, and how many at once: several per GPU when they fit.

A paper-sized cell (the AE at 64², batch 64) uses a small part of a data-centre GPU and leaves it
idle between its many small kernels, so K cells on one GPU train in about the time of one (issue
16). Before K worker processes start on a GPU, the memory one cell needs is measured, not guessed:
`measure_needs` builds each distinct (method, config) once in a short-lived process, trains one
step of every stage and scores one batch at the cell's batch size, and reads the peak the CUDA
caching allocator reserved. `fit_workers` compares K × that need (plus `CONTEXT_BYTES` per process
and the images the engine uploads) with the free memory of each GPU and lowers K to what fits, with
a note saying so, or fails naming the cell when not even one fits. `Slots` then sends each cell to
the least-loaded GPU that has room. A probe that fails for another reason (weights not on disk) is
only a note: that cell fails on its own when it runs, with its error recorded, as before.

Fitted methods whose `fit` keeps a memory bank of the whole training split (PatchCore) need more
than the probe sees; their `resources` or a lower ``--workers`` cover that.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medad.errors import MedadError

#: margin per worker process for what the caching allocator does not count: the CUDA context and
#: the cuBLAS/cuDNN handles and workspaces (a few hundred MiB on current drivers; 1 GiB to spare)
CONTEXT_BYTES = 1 << 30

GiB = float(1 << 30)


def gib(n_bytes: float) -> str:
    return f"{n_bytes / GiB:.2f} GiB"


def cuda_devices(device: str | None) -> list[str] | None:
    """The GPUs the cells of a grid on `device` are spread over: every visible one for ``cuda``
    (and ``auto`` when CUDA is available), only N for ``cuda:N``; None when cells do not run on
    CUDA (the CPU or Apple's MPS: one pool, as before)."""
    import torch

    from medad.engine import resolve_device

    dev = resolve_device(device)  # an unknown device or CUDA without a GPU: a clear error
    if dev.type != "cuda":
        return None
    count = torch.cuda.device_count()
    if dev.index is not None:
        if dev.index >= count:
            raise MedadError(f"device {device!r} asked for, but only {count} GPU(s) are visible")
        return [f"cuda:{dev.index}"]
    return [f"cuda:{i}" for i in range(count)]


@dataclass(frozen=True)
class MemoryNeed:
    """What one cell takes on its GPU, measured by `probe_memory`."""

    label: str
    """The method and dataset, for messages."""
    peak_bytes: int
    """Peak the caching allocator reserved for one training step of each stage and one scoring
    batch."""
    data_bytes: int
    """The largest split the engine uploads to the GPU whole (`medad.engine.DeviceImages`)."""

    @property
    def per_process(self) -> int:
        """Bytes one worker process running this cell holds at most."""
        return self.peak_bytes + self.data_bytes + CONTEXT_BYTES


def need_key(planned: Any) -> str:
    """Cells with the same key need the same memory: the method, its config (but the number of
    epochs), the image channels and the training options; seeds and data content do not count."""
    config = planned.config.model_dump(mode="json", exclude={"epochs"})
    channels = planned.dataset.channels if planned.dataset is not None else None
    training = planned.spec.train_options.model_dump(mode="json")
    return json.dumps([planned.spec.method, config, channels, training], sort_keys=True)


def _reset_peak(dev: Any) -> None:
    import torch

    torch.cuda.reset_peak_memory_stats(dev)


def _peak_reserved(dev: Any) -> int:
    import torch

    return int(torch.cuda.max_memory_reserved(dev))


def _memory_info(device: str) -> tuple[int, int]:
    """(free, total) bytes of a GPU."""
    import torch

    free, total = torch.cuda.mem_get_info(torch.device(device))
    return int(free), int(total)


class ProbeFailed(MedadError):
    """The probe of a cell failed for another reason than memory (missing weights, a bad config):
    not the grid's concern; the cell fails on its own when it runs and its error is recorded."""


def probe_memory(planned: Any, device: str, cache_dir: Path | None = None) -> MemoryNeed:
    """Build `planned`'s method on `device`, train one step of each of its stages (with its
    `prepare` and `fit`) and score one batch, at the cell's batch size, on its own images;
    return the peak memory that took (`torch.cuda.max_memory_reserved`). Raises `MedadError`
    when even that runs out of memory, `ProbeFailed` when it fails otherwise."""
    import torch

    from medad.data.loading import load_split
    from medad.methods.base import method_class

    spec, config, dataset = planned.spec, planned.config, planned.dataset
    label = f"{spec.method} on {spec.dataset}"
    dev = torch.device(device)
    try:
        cls = method_class(spec.method)
        pre = cls.preprocess(config, dataset.channels)
        train = load_split(dataset, "train", pre, cache_dir)
        test = load_split(dataset, "test", pre, cache_dir)
        _reset_peak(dev)
        _one_step_each(planned, cls, pre, train, test, dev)
        peak = _peak_reserved(dev)
    except torch.cuda.OutOfMemoryError:
        raise MedadError(
            f"{label} does not fit on {device} even alone (one step at batch size "
            f"{config.batch_size} ran out of memory); lower its batch_size or free the GPU"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the cell reports it when it runs
        why = str(exc) if isinstance(exc, MedadError) else f"{type(exc).__name__}: {exc}"
        raise ProbeFailed(
            f"{label}: its memory could not be measured on {device} ({why.splitlines()[0]}); "
            "its cells run unchecked"
        ) from None
    finally:
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return MemoryNeed(label, peak, max(train.images.nbytes, test.images.nbytes))


def _one_step_each(planned: Any, cls: Any, pre: Any, train: Any, test: Any, dev: Any) -> None:
    """The run of `medad.runs.produce` cut to one step per stage and one scoring batch."""
    from medad import engine

    spec, config = planned.spec, planned.config
    bs = config.batch_size
    method = engine.create_method(cls, config, planned.dataset.channels, spec.seed)
    stages = method.stages
    # one step of every stage reaches the peak of every step; a stage of one step draws a full
    # batch even from fewer images (`engine._cycled_batches`), e.g. after a held-out part
    method.stages = lambda: [
        dataclasses.replace(s, epochs=min(s.epochs, 1), steps_per_epoch=1) for s in stages()
    ]
    engine.train(
        method,
        _first(train, min(len(train), bs)),
        pre,
        seed=spec.seed,
        device=dev,
        progress=False,
        options=spec.train_options,
    )
    engine.predict(method, _first(test, min(len(test), bs)), pre, device=dev)


def _first(split: Any, n: int) -> Any:
    from medad.data.loading import ArraySplit

    masks = split.masks[:n] if split.masks is not None else None
    return ArraySplit(split.images[:n], split.labels[:n], masks, list(split.ids[:n]))


@dataclass
class Measured:
    """What `measure_needs` found: the need of each distinct `need_key` it could measure, the free
    and total bytes of each device, and notes on the probes that failed."""

    needs: dict[str, MemoryNeed]
    free: dict[str, int]
    notes: list[str] = field(default_factory=list)
    total: dict[str, int] = field(default_factory=dict)


def measure_needs(
    planned_runs: list[Any], devices: list[str], cache_dir: Path | None = None
) -> Measured:
    """Free memory of each device (read before the probes run), then the probes, on the first
    device, each distinct (method, config) once. Meant for a short-lived process: the grid's own
    process then holds no CUDA context."""
    info = {d: _memory_info(d) for d in devices}
    found = Measured(
        {}, {d: f for d, (f, _) in info.items()}, total={d: t for d, (_, t) in info.items()}
    )
    tried: set[str] = set()
    for planned in planned_runs:
        key = need_key(planned)
        if key in tried:
            continue
        tried.add(key)
        try:
            found.needs[key] = probe_memory(planned, devices[0], cache_dir)
        except ProbeFailed as exc:
            found.notes.append(str(exc))
    return found


@dataclass
class Placement:
    """How many cells run at once on each device (the worker processes of its pool), and in all."""

    per_device: dict[str | None, int]
    workers: int
    notes: list[str] = field(default_factory=list)
    memory_fraction: dict[str | None, float] = field(default_factory=dict)
    """Per GPU, the share of its memory each worker's caching allocator may hold
    (`torch.cuda.set_per_process_memory_fraction`): its part of the free memory less the CUDA
    context. A worker that asks for more (scoring starts at a large batch, `engine.predict`)
    runs out of memory in its own process and halves its batch instead of starving the cells
    beside it."""


def fit_workers(
    workers: int | None,
    needs: dict[str, MemoryNeed],
    free: dict[str, int],
    cpus: int | None = None,
    total: dict[str, int] | None = None,
) -> Placement:
    """Place `workers` cells at once (None: ``--workers auto``, as many as fit, at most one per
    CPU core, since each worker drives its GPU from a CPU thread) on the GPUs of `free`, each
    holding at most what its free memory allows for the largest need, and each worker capped to
    its part of that memory when `total` (each GPU's size) is known. Raises when not even one
    cell fits on any GPU."""
    cpus = cpus or os.cpu_count() or 1
    size = total or {}
    if not needs:  # no probe succeeded: the cells will fail on their own; nothing to size K by
        total = workers or len(free)
        note = f"no cell's GPU memory could be measured: {total} at once, unchecked"
        return Placement(dict.fromkeys(free, total), total, [note])
    big = max(needs.values(), key=lambda n: n.per_process)
    fits = {d: f // big.per_process for d, f in free.items()}
    where = ", ".join(f"{d} has {gib(f)} free" for d, f in free.items())
    if not any(fits.values()):
        raise MedadError(
            f"{big.label} needs {gib(big.per_process)} of GPU memory per cell "
            f"({gib(big.peak_bytes)} measured for a step, {gib(big.data_bytes)} of images, "
            f"{gib(CONTEXT_BYTES)} for the CUDA context) but {where}; free the GPU or lower the "
            "cell's batch_size"
        )
    notes = [f"{d}: {gib(free[d])} free, too little for one cell" for d, k in fits.items() if not k]
    room = sum(fits.values())
    asked = min(room, cpus) if workers is None else workers
    total = min(asked, room)
    if workers is None:
        notes.append(
            f"--workers auto: {total} cell(s) at once ({room} fit in GPU memory at "
            f"{gib(big.per_process)} each for {big.label}, {cpus} CPU cores)"
        )
    elif total < workers:
        notes.append(
            f"{workers} cells at once need {gib(workers * big.per_process)} of GPU memory "
            f"({gib(big.per_process)} each for {big.label}) but {where}: running {total} at "
            "once instead"
        )
    per_device = {d: min(k, total) for d, k in fits.items() if k}
    fractions = {
        d: min(1.0, (free[d] // k - CONTEXT_BYTES) / size[d])
        for d, k in per_device.items()
        if size.get(d)
    }
    return Placement(per_device, total, notes, fractions)


class Slots:
    """Which device the next cell starts on: the least-loaded one (fewest cells running; ties to
    the first) below its share, while fewer than `total` cells run in all."""

    def __init__(self, per_device: dict[str | None, int], total: int) -> None:
        self.limit = dict(per_device)
        self.total = total
        self.running = dict.fromkeys(per_device, 0)

    def _open(self) -> list[str | None]:
        if sum(self.running.values()) >= self.total:
            return []
        return [d for d in self.limit if self.running[d] < self.limit[d]]

    def has_room(self) -> bool:
        return bool(self._open())

    def take(self) -> str | None:
        """The device of the next cell (counted as running on it until `give_back`)."""
        device = min(self._open(), key=lambda d: self.running[d])
        self.running[device] += 1
        return device

    def give_back(self, device: str | None) -> None:
        self.running[device] -= 1
