"""The one loop that trains and scores every method.

`train` runs a method's `prepare` (statistics of the training data it needs before any update),
its stages (each a number of epochs with one or more alternating optimisers: a GAN is two phases
of one stage, not a second loop), then its `fit` (density, memory bank).
Optimisers and learning-rate schedules are data on the phases (`medad.methods.optimisation`);
`build_optimizer` and `build_scheduler` turn them into torch objects, so the loop stays one.
`predict` scores a split in batches into image scores [N] and maps [N, H, W] (None for methods
without maps). Both work on the uint8 arrays of `medad.data.loading` and convert batch by batch.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import random
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.optim.lr_scheduler import LRScheduler

from medad.data.loading import ArraySplit, Preprocess
from medad.errors import MedadError
from medad.methods.base import Method, MethodConfig, Phase, Stage
from medad.methods.optimisation import ParamGroup, Schedule
from medad.predictions import Predictions

Log = Callable[[str], None]
#: hears each finished epoch: {"stage", "epoch", "epochs" (of the stage), "step", "steps" (of the
#: whole training), the mean losses, the learning rates}
EpochHook = Callable[[dict[str, Any]], None]

Precision = Literal["fp32", "bf16", "fp16"]
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TrainOptions(BaseModel):
    """How the engine runs a training on its device (speed, not the method's configuration).

    The defaults reproduce the CPU results of earlier versions bit for bit; the others change
    the numbers and are recorded in the run's identity (`medad.runs`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: arithmetic of the forward passes and losses: fp32, or torch autocast to bf16 / fp16
    #: (fp16 with a gradient scaler against underflow); weights and optimiser stay fp32
    precision: Precision = "fp32"
    #: torch.compile each method's training step (inductor; on CUDA with CUDA graphs,
    #: mode "reduce-overhead"); first steps are slow while it compiles
    compile: bool = False
    #: steps between checks that the losses are finite; each check waits for the device, so
    #: checking every step (as before) keeps a GPU idle; a NaN still stops the run in its epoch
    check_every: int = Field(default=50, ge=1)
    #: keep the method's 4-D weights, and so its activations, in channels-last (NHWC) memory
    #: for training and scoring: oneDNN's faster convolutions on the CPU, tensor-core friendly
    #: on GPUs; other summation orders, so the last digits change
    channels_last: bool = False


class DeviceImages:
    """The uint8 images of a split on the device that trains on them, converted batch by batch.

    On a GPU the whole split is uploaded once when it takes at most a quarter of the free
    memory (a BraTS train split at 64² is 17 MB), so a step copies only its indices; otherwise
    the images stay in page-locked host memory and each batch is copied without blocking. On
    the CPU the array is used in place. The float batch is computed exactly as `to_float`.
    """

    def __init__(
        self, images: np.ndarray, pre: Preprocess, device: torch.device, upload: bool | None = None
    ) -> None:
        host = torch.from_numpy(np.ascontiguousarray(images))
        self.device, self.pre = device, pre
        if upload is None:
            upload = device.type != "cpu" and _fits_on(device, host.numel())
        if upload:
            self.images = host.to(device, copy=True)
        elif device.type == "cuda":
            self.images = host.pin_memory()
        else:
            self.images = host

    def batch(self, idx: np.ndarray) -> torch.Tensor:
        """Images `idx` as float32 in `pre.value_range`, on the device."""
        index = torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64))
        if self.images.device == self.device:
            if self.device.type != "cpu":
                index = index.to(self.device, non_blocking=True)
            chosen = self.images[index]
        else:
            chosen = self.images[index].to(self.device, non_blocking=True)
        lo, hi = self.pre.value_range
        return chosen.to(torch.float32) * ((hi - lo) / 255.0) + lo


def _fits_on(device: torch.device, n_bytes: int) -> bool:
    """Whether `n_bytes` take at most a quarter of the device's free memory (CUDA; others: no)."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return n_bytes <= free // 4


def place(method: Method, device: torch.device, options: TrainOptions) -> Method:
    """Move `method` to `device`, in the memory format `options` ask for (channels-last): where
    it trains, and where a reloaded run scores (`medad.inference.load_run`)."""
    method.to(device)
    if options.channels_last:
        method.to(memory_format=torch.channels_last)
    return method


def resolve_device(device: str | None = None) -> torch.device:
    """``None``/``"auto"`` picks CUDA when available, else Apple MPS, else the CPU."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise MedadError(f"unknown device {device!r}: use cpu, cuda, cuda:N, mps or auto") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MedadError(
            "device 'cuda' was asked for but no CUDA GPU is available; use --device cpu"
        )
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices); cuDNN in its deterministic mode."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code may use the legacy global RNG
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def to_float(images: np.ndarray, pre: Preprocess, device: torch.device) -> torch.Tensor:
    """uint8 [B, C, H, W] → float32 in `pre.value_range` on `device`."""
    lo, hi = pre.value_range
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device=device, dtype=torch.float32)
    return x * ((hi - lo) / 255.0) + lo


def create_method(cls: type[Method], config: MethodConfig, channels: int, seed: int) -> Method:
    """Construct a method with its weights initialised from `seed` (the start of every run)."""
    seed_everything(seed)
    return cls(config, channels)


@dataclass
class TrainHistory:
    """Mean loss per (stage, epoch) and the wall time of training and fitting."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0


def _batches(n: int, batch_size: int, gen: torch.Generator | None) -> list[np.ndarray]:
    order = torch.randperm(n, generator=gen).numpy() if gen is not None else np.arange(n)
    parts = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if gen is not None and len(parts) > 1 and len(parts[-1]) == 1:
        parts.pop()  # a batch of one breaks BatchNorm in training mode
    return parts


def _batches_per_pass(n: int, batch_size: int) -> int:
    """How many batches `_batches` gives in training (a last batch of one is dropped)."""
    parts = -(-n // batch_size)
    return parts - 1 if parts > 1 and n % batch_size == 1 else parts


def _cycled_batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[np.ndarray]:
    """Full batches drawn from an endless chain of re-shuffled passes over `n` items (a batch may
    span two passes), for stages with a fixed number of steps per epoch."""
    pending = np.empty(0, dtype=np.int64)
    while True:
        while len(pending) < batch_size:
            pending = np.concatenate([pending, torch.randperm(n, generator=gen).numpy()])
        yield pending[:batch_size]
        pending = pending[batch_size:]


def build_optimizer(phase: Phase, *, fused: bool = False) -> torch.optim.Optimizer:
    """The torch optimiser a phase declares, with its parameter groups. `fused`: Adam and AdamW
    update all parameters in one kernel (CUDA), instead of a loop of small kernels per tensor."""
    params: list[Any] = [
        {"params": p.params, "lr": phase.lr if p.lr is None else p.lr}
        if isinstance(p, ParamGroup)
        else p
        for p in phase.params
    ]
    if phase.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=phase.lr,
            momentum=phase.momentum,
            nesterov=phase.nesterov,
            weight_decay=phase.weight_decay,
        )
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}.get(phase.optimizer)
    if cls is None:
        raise MedadError(f"phase {phase.name!r}: unknown optimizer {phase.optimizer!r}")
    extra = {"fused": True} if fused else {}
    return cls(params, lr=phase.lr, betas=phase.betas, weight_decay=phase.weight_decay, **extra)


def build_scheduler(
    opt: torch.optim.Optimizer, schedule: Schedule, length: int
) -> LRScheduler | None:
    """The torch scheduler of `schedule` over `length` units (epochs or steps, as `schedule.per`);
    None for a constant rate without warm-up (nothing to step)."""
    lrs = torch.optim.lr_scheduler
    if schedule.kind == "constant" and not schedule.warmup:
        return None
    span = max(length - schedule.warmup, 1)
    main: LRScheduler
    if schedule.kind == "cosine":
        main = lrs.CosineAnnealingLR(opt, T_max=span, eta_min=schedule.eta_min)
    elif schedule.kind == "cosine-restarts":
        main = lrs.CosineAnnealingWarmRestarts(
            opt, T_0=schedule.t_0 or span, T_mult=schedule.t_mult, eta_min=schedule.eta_min
        )
    elif schedule.kind == "step":
        marks = sorted({max(1, round(m * span)) for m in schedule.milestones})
        main = lrs.MultiStepLR(opt, milestones=marks, gamma=schedule.gamma)
    else:
        main = lrs.ConstantLR(opt, factor=1.0, total_iters=0)
    if not schedule.warmup:
        return main
    warm = lrs.LinearLR(
        opt, start_factor=schedule.warmup_start, end_factor=1.0, total_iters=schedule.warmup
    )
    return lrs.SequentialLR(opt, [warm, main], milestones=[schedule.warmup])


def _schedule_length(stage: Stage, phase: Phase, steps_per_epoch: int) -> int:
    """A phase's schedule spans its stage, in epochs or in optimiser steps."""
    return stage.epochs * (steps_per_epoch if phase.schedule.per == "step" else 1)


def _loss_dict(out: torch.Tensor | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return {"loss": out}
    if "loss" not in out:
        raise MedadError("a method's training_loss must return a tensor or a dict with 'loss'")
    return out


def split_holdout(
    data: ArraySplit, fraction: float, seed: int
) -> tuple[ArraySplit, ArraySplit | None]:
    """(training part, held-out part) of `data`: a seeded random ``fraction`` of it, at least one
    image and never all of them, held out (None when `fraction` is 0 or `data` has one image)."""
    n = len(data)
    held = min(n - 1, max(1, n - int((1 - fraction) * n))) if fraction > 0 else 0
    if held <= 0:
        return data, None
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()

    def part(idx: np.ndarray) -> ArraySplit:
        idx = np.sort(idx)
        masks = data.masks[idx] if data.masks is not None else None
        return ArraySplit(data.images[idx], data.labels[idx], masks, [data.ids[i] for i in idx])

    return part(order[held:]), part(order[:held])


def train(
    method: Method,
    data: ArraySplit,
    pre: Preprocess,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    log: Log | None = None,
    options: TrainOptions | None = None,
    label: str | None = None,
    on_epoch: EpochHook | None = None,
) -> TrainHistory:
    """Train `method` on the (normal-only) split `data`, then call its `fit` (and `calibrate` on
    the part of `data` it asked to be held out of both, `Method.holdout_fraction`).

    Batches are drawn by a CPU generator seeded with `seed` and gathered from the split on the
    device (`DeviceImages`); losses are summed on the device (float64) and read back once per
    epoch, so a step does not wait for the device; their finiteness is checked every
    `options.check_every` steps and at the end of every epoch. `label` names the progress bar
    (default: the method's name); `on_epoch` hears every epoch.
    """
    options = options or TrainOptions()
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    seed_everything(seed)
    _autotune(dev)
    method.rng = np.random.default_rng(seed)
    place(method, dev, options)
    gen = torch.Generator().manual_seed(seed)
    bs = method.config.batch_size
    data, holdout = split_holdout(data, method.holdout_fraction(), seed)
    if holdout is not None and log is not None:
        log(f"held out {len(holdout)} of {len(data) + len(holdout)} training images to calibrate")
    images = DeviceImages(data.images, pre, dev)
    loss_fn = _training_step(method, dev, options)
    autocast = _autocast(dev, options.precision)
    scaler = torch.amp.GradScaler(dev.type, enabled=options.precision == "fp16")
    # float64 sums give the exact Python-float means of earlier versions (MPS has no float64)
    acc = torch.float32 if dev.type == "mps" else torch.float64

    def train_batches() -> Iterator[torch.Tensor]:
        for idx in _batches(len(data), bs, None):
            yield images.batch(idx)

    def holdout_batches() -> Iterator[torch.Tensor]:
        assert holdout is not None
        for idx in _batches(len(holdout), bs, None):
            yield to_float(holdout.images[idx], pre, dev)

    def step_inputs(idx: np.ndarray) -> Any:
        return method.train_inputs(method.train_transform(images.batch(idx)))

    def inputs(batches: Iterable[np.ndarray]) -> Iterator[Any]:
        if not method.prefetch:
            return (step_inputs(idx) for idx in batches)
        return _prefetched(step_inputs, batches, worker)

    with torch.no_grad():
        method.prepare(train_batches)
    stages: list[Stage] = method.stages()
    history = TrainHistory()
    start = time.perf_counter()
    per_pass = _batches_per_pass(len(data), bs)
    total = sum(s.epochs * (s.steps_per_epoch or per_pass) for s in stages)
    bar = _progress(progress)
    worker = ThreadPoolExecutor(1, thread_name_prefix="medad-inputs") if method.prefetch else None
    with bar, worker or contextlib.nullcontext():
        task = bar.add_task(label or method.name, total=total, loss="–")
        for stage in stages:
            steps = stage.steps_per_epoch or per_pass
            opts = [build_optimizer(p, fused=dev.type == "cuda") for p in stage.phases]
            scheds = [
                build_scheduler(o, p.schedule, _schedule_length(stage, p, steps))
                for p, o in zip(stage.phases, opts, strict=True)
            ]
            stream = _cycled_batches(len(data), bs, gen) if stage.steps_per_epoch else None
            for epoch in range(stage.epochs):
                method.train()
                sums: dict[str, torch.Tensor] = {}
                minimised = torch.zeros((), dtype=acc, device=dev)  # every loss stepped on
                rates = {
                    (f"{p.name}/lr" if len(stage.phases) > 1 else "lr"): o.param_groups[0]["lr"]
                    for p, o, sc in zip(stage.phases, opts, scheds, strict=True)
                    if sc is not None
                }
                where = f"stage {stage.name!r}, epoch {epoch + 1}"
                count = 0
                batches: Iterable[np.ndarray] = (
                    itertools.islice(stream, steps) if stream else _batches(len(data), bs, gen)
                )
                for x in inputs(batches):
                    for phase, opt, sched in zip(stage.phases, opts, scheds, strict=True):
                        for _ in range(phase.repeats):
                            opt.zero_grad(set_to_none=True)
                            with autocast:
                                losses = _loss_dict(loss_fn(x, stage.name, phase.name))
                            loss = losses["loss"]
                            minimised = minimised + loss.detach().to(acc)
                            scaler.scale(loss).backward()
                            scaler.step(opt)
                            scaler.update()
                        if sched is not None and phase.schedule.per == "step":
                            sched.step()
                        for k, v in losses.items():
                            key = f"{phase.name}/{k}" if len(stage.phases) > 1 else k
                            total_k = sums.get(key, torch.zeros((), dtype=acc, device=dev))
                            sums[key] = total_k + v.detach().to(acc).reshape(())
                    count += 1
                    history.steps += 1
                    if count % options.check_every == 0:
                        _check_finite(minimised, method.name, where)
                        if progress:
                            bar.update(task, loss=f"{float(_shown_loss(sums)) / count:.4g}")
                    bar.update(task, advance=1)
                _check_finite(minimised, method.name, where)
                for phase, sched in zip(stage.phases, scheds, strict=True):
                    if sched is not None and phase.schedule.per == "epoch":
                        sched.step()
                totals = torch.stack(list(sums.values())).tolist() if sums else []
                means = {k: v / count for k, v in zip(sums, totals, strict=True)}
                if progress and means:
                    bar.update(task, loss=f"{means.get('loss', next(iter(means.values()))):.4g}")
                record = {"stage": stage.name, "epoch": epoch + 1, **means, **rates}
                history.epochs.append(record)  # type: ignore[arg-type]
                if on_epoch is not None:
                    on_epoch(
                        {**record, "epochs": stage.epochs, "step": history.steps, "steps": total}
                    )
                if log is not None:
                    text = " ".join(f"{k}={v:.5g}" for k, v in {**means, **rates}.items())
                    log(f"stage {stage.name} epoch {epoch + 1}/{stage.epochs} {text}")
    method.eval()
    with torch.no_grad():
        method.fit(train_batches)
        if holdout is not None:
            method.calibrate(holdout_batches)
    history.seconds = time.perf_counter() - start
    return history


#: batches whose inputs are made ahead of the training step (`Method.prefetch`)
PREFETCH_DEPTH = 2


def _prefetched(
    make: Callable[[np.ndarray], Any], batches: Iterable[np.ndarray], worker: Any
) -> Iterator[Any]:
    """`make(idx)` for each batch, in order, computed by the one thread of `worker` up to
    `PREFETCH_DEPTH` batches ahead of the consumer (one thread: the draws keep their order)."""
    pending: collections.deque[Future[Any]] = collections.deque()
    order = iter(batches)
    try:
        for idx in itertools.islice(order, PREFETCH_DEPTH):
            pending.append(worker.submit(make, idx))
        while pending:
            ready = pending.popleft().result()
            for idx in itertools.islice(order, 1):
                pending.append(worker.submit(make, idx))
            yield ready
    finally:  # the consumer stopped (error or end): drop what was not started, wait for the rest
        for future in pending:
            future.cancel()
        for future in pending:
            if not future.cancelled():
                future.exception()


def _shown_loss(sums: dict[str, torch.Tensor]) -> torch.Tensor:
    return sums.get("loss", next(iter(sums.values())))


def _check_finite(minimised: torch.Tensor, name: str, where: str) -> None:
    """Raise when a loss stepped on so far was NaN or infinite (their sum is then too)."""
    if not bool(torch.isfinite(minimised)):
        raise MedadError(
            f"{name}: loss became {minimised.item()} in {where}; lower the learning rate"
        )


def _autotune(dev: torch.device) -> None:
    """cuDNN picks the fastest convolution algorithms for the shapes it sees, unless
    deterministic algorithms are asked (``--deterministic``: `medad.reproducibility`)."""
    if dev.type == "cuda" and not torch.are_deterministic_algorithms_enabled():
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.deterministic = False


def _autocast(dev: torch.device, precision: Precision) -> Any:
    """The autocast context of `precision` on `dev` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if not torch.amp.is_autocast_available(dev.type):
        raise MedadError(f"precision {precision!r} is not available on {dev}; use fp32")
    return torch.autocast(device_type=dev.type, dtype=_AUTOCAST_DTYPES[precision])


def _training_step(method: Method, dev: torch.device, options: TrainOptions) -> Any:
    """`method.training_loss`, compiled by torch.compile when asked (CUDA graphs on CUDA)."""
    if not options.compile:
        return method.training_loss
    mode = "reduce-overhead" if dev.type == "cuda" else None
    return torch.compile(method.training_loss, mode=mode)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=True,
    )


#: on an accelerator, scoring starts at this batch (or the training batch, if larger) and
#: halves on out-of-memory: no gradients are kept, so far larger batches fit than in training
SCORING_BATCH_ON_ACCELERATOR = 256


def scoring_batch_size(method: Method, device: torch.device, n: int) -> int:
    """The first batch `predict` tries when none is given: the training batch on the CPU (larger
    batches gain little there, and the CPU numbers stay those of earlier versions), else the
    larger of it and `SCORING_BATCH_ON_ACCELERATOR`; never more than the `n` images."""
    bs = method.config.batch_size
    if device.type != "cpu":
        bs = max(bs, SCORING_BATCH_ON_ACCELERATOR)
    return max(1, min(bs, n))


def predict(
    method: Method,
    data: ArraySplit,
    pre: Preprocess,
    *,
    device: torch.device | str | None = None,
    batch_size: int | None = None,
) -> Predictions:
    """Score every image of `data` in batches (evaluation mode, no gradients unless the method
    asks for them itself, e.g. gradient-based scores).

    Without `batch_size` the batch is `scoring_batch_size` and halves whenever a batch runs out
    of device memory (that batch is scored again, smaller), so inference runs at the largest
    batch that fits; each image's score is its own, whatever batch it was scored in.
    """
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    method.to(dev).eval()
    n = len(data)
    bs = batch_size or scoring_batch_size(method, dev, n)
    images = DeviceImages(data.images, pre, dev)
    # filled in place (no list of batches concatenated at the end: that held the maps twice)
    image_scores = np.empty(n, dtype=np.float64)
    maps: np.ndarray | None = None
    start = 0
    with torch.no_grad():
        while start < n:
            idx = np.arange(start, min(start + bs, n))
            method.image_index = idx
            try:
                out = method.score(images.batch(idx))
            except torch.OutOfMemoryError:
                if batch_size is not None or bs == 1:
                    raise
                bs = max(1, bs // 2)
                _release_cached_memory(dev)
                continue
            finally:
                method.image_index = None
            s = out.image_scores.detach().reshape(-1)
            if s.shape[0] != len(idx):
                raise MedadError(
                    f"{method.name}: score() returned {s.shape[0]} scores for {len(idx)} images"
                )
            rows = slice(start, start + len(idx))
            image_scores[rows] = s.double().cpu().numpy()
            if start > 0 and (out.maps is not None) != (maps is not None):
                raise MedadError(f"{method.name}: score() returned maps for some batches only")
            if out.maps is not None:
                m = out.maps.detach()
                if tuple(m.shape) != (len(idx), pre.size, pre.size):
                    raise MedadError(
                        f"{method.name}: maps of shape {tuple(m.shape)}, expected "
                        f"{(len(idx), pre.size, pre.size)}"
                    )
                if maps is None:
                    maps = np.empty((n, pre.size, pre.size), dtype=np.float32)
                maps[rows] = m.float().cpu().numpy()
            start += len(idx)
    if not np.isfinite(image_scores).all():
        raise MedadError(f"{method.name}: non-finite anomaly scores (training diverged?)")
    return Predictions(
        ids=list(data.ids),
        labels=data.labels.copy(),
        image_scores=image_scores,
        maps=maps,
        masks=data.masks,
    )


def _release_cached_memory(device: torch.device) -> None:
    """Give the allocator's cached blocks back after an out-of-memory, before a smaller try."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()
