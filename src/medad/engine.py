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

import itertools
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.optim.lr_scheduler import LRScheduler

from medad.data.loading import ArraySplit, Preprocess
from medad.errors import MedadError
from medad.methods.base import Method, MethodConfig, Phase, Stage
from medad.methods.optimisation import ParamGroup, Schedule
from medad.predictions import Predictions

Log = Callable[[str], None]


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


def build_optimizer(phase: Phase) -> torch.optim.Optimizer:
    """The torch optimiser a phase declares, with its parameter groups."""
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
    return cls(params, lr=phase.lr, betas=phase.betas, weight_decay=phase.weight_decay)


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


def train(
    method: Method,
    data: ArraySplit,
    pre: Preprocess,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    log: Log | None = None,
) -> TrainHistory:
    """Train `method` on the (normal-only) split `data`, then call its `fit`."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    seed_everything(seed)
    method.rng = np.random.default_rng(seed)
    method.to(dev)
    gen = torch.Generator().manual_seed(seed)
    bs = method.config.batch_size

    def train_batches() -> Iterator[torch.Tensor]:
        for idx in _batches(len(data), bs, None):
            yield to_float(data.images[idx], pre, dev)

    with torch.no_grad():
        method.prepare(train_batches)
    stages: list[Stage] = method.stages()
    history = TrainHistory()
    start = time.perf_counter()
    per_pass = _batches_per_pass(len(data), bs)
    total = sum(s.epochs * (s.steps_per_epoch or per_pass) for s in stages)
    bar = _progress(progress)
    with bar:
        task = bar.add_task(method.name, total=total, loss=float("nan"))
        for stage in stages:
            steps = stage.steps_per_epoch or per_pass
            opts = [build_optimizer(p) for p in stage.phases]
            scheds = [
                build_scheduler(o, p.schedule, _schedule_length(stage, p, steps))
                for p, o in zip(stage.phases, opts, strict=True)
            ]
            stream = _cycled_batches(len(data), bs, gen) if stage.steps_per_epoch else None
            for epoch in range(stage.epochs):
                method.train()
                sums: dict[str, float] = {}
                rates = {
                    (f"{p.name}/lr" if len(stage.phases) > 1 else "lr"): o.param_groups[0]["lr"]
                    for p, o, sc in zip(stage.phases, opts, scheds, strict=True)
                    if sc is not None
                }
                count = 0
                batches: Iterable[np.ndarray] = (
                    itertools.islice(stream, steps) if stream else _batches(len(data), bs, gen)
                )
                for idx in batches:
                    x = method.train_transform(to_float(data.images[idx], pre, dev))
                    for phase, opt, sched in zip(stage.phases, opts, scheds, strict=True):
                        for _ in range(phase.repeats):
                            opt.zero_grad(set_to_none=True)
                            losses = _loss_dict(method.training_loss(x, stage.name, phase.name))
                            loss = losses["loss"]
                            if not torch.isfinite(loss):
                                raise MedadError(
                                    f"{method.name}: loss became {loss.item()} in stage "
                                    f"{stage.name!r}, epoch {epoch + 1}; lower the learning rate"
                                )
                            loss.backward()
                            opt.step()
                        if sched is not None and phase.schedule.per == "step":
                            sched.step()
                        for k, v in losses.items():
                            key = f"{phase.name}/{k}" if len(stage.phases) > 1 else k
                            sums[key] = sums.get(key, 0.0) + float(v.detach())
                    count += 1
                    history.steps += 1
                    bar.update(
                        task, advance=1, loss=sums.get("loss", next(iter(sums.values()))) / count
                    )
                for phase, sched in zip(stage.phases, scheds, strict=True):
                    if sched is not None and phase.schedule.per == "epoch":
                        sched.step()
                means = {k: v / count for k, v in sums.items()}
                record = {"stage": stage.name, "epoch": epoch + 1, **means, **rates}
                history.epochs.append(record)  # type: ignore[arg-type]
                if log is not None:
                    text = " ".join(f"{k}={v:.5g}" for k, v in {**means, **rates}.items())
                    log(f"stage {stage.name} epoch {epoch + 1}/{stage.epochs} {text}")
    method.eval()
    with torch.no_grad():
        method.fit(train_batches)
    history.seconds = time.perf_counter() - start
    return history


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]:.4g}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=True,
    )


def predict(
    method: Method,
    data: ArraySplit,
    pre: Preprocess,
    *,
    device: torch.device | str | None = None,
    batch_size: int | None = None,
) -> Predictions:
    """Score every image of `data` in batches (evaluation mode, no gradients unless the method
    asks for them itself, e.g. gradient-based scores)."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    method.to(dev).eval()
    bs = batch_size or method.config.batch_size
    scores, maps = [], []
    with torch.no_grad():
        for idx in _batches(len(data), bs, None):
            method.image_index = idx
            try:
                out = method.score(to_float(data.images[idx], pre, dev))
            finally:
                method.image_index = None
            s = out.image_scores.detach().reshape(-1)
            if s.shape[0] != len(idx):
                raise MedadError(
                    f"{method.name}: score() returned {s.shape[0]} scores for {len(idx)} images"
                )
            scores.append(s.double().cpu().numpy())
            if out.maps is not None:
                m = out.maps.detach()
                if tuple(m.shape) != (len(idx), pre.size, pre.size):
                    raise MedadError(
                        f"{method.name}: maps of shape {tuple(m.shape)}, expected "
                        f"{(len(idx), pre.size, pre.size)}"
                    )
                maps.append(m.float().cpu().numpy())
    image_scores = np.concatenate(scores)
    if not np.isfinite(image_scores).all():
        raise MedadError(f"{method.name}: non-finite anomaly scores (training diverged?)")
    return Predictions(
        ids=list(data.ids),
        labels=data.labels.copy(),
        image_scores=image_scores,
        maps=np.concatenate(maps) if maps else None,
        masks=data.masks,
    )
