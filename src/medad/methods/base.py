"""The method interface and the explicit method registry.

A method is a plain `nn.Module` plus three short rules beside it: how it is optimised
(`stages`), what it minimises (`training_loss`) and how it scores (`score`). The one engine
(`medad.engine`) runs every method through these, so no method owns a training loop. Methods
that are fitted rather than trained (a Gaussian density, a memory bank) implement `fit`, which the
engine calls after the gradient stages (if any) with the training batches; methods whose loss
needs statistics of the training data (AE-PL's feature normalisation) implement `prepare`, which
the engine calls with the same batches before the first update. Methods that calibrate on normal
images they never trained on (EfficientAD's map quantiles) ask for a `holdout_fraction` of the
train split and implement `calibrate`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from medad.data.loading import Preprocess
from medad.errors import MedadError
from medad.methods.optimisation import (
    CONSTANT,
    OptimiserConfig,
    OptimiserName,
    ParamGroup,
    Schedule,
)


class MethodConfig(BaseModel):
    """Hyper-parameters shared by all methods; each method extends it with its own fields."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    epochs: int = Field(250, ge=0)
    """Training epochs (PAPER.md: 250 for the reconstruction family; Brain Tumor 600)."""
    batch_size: int = Field(64, ge=1)
    """Mini-batch size (PAPER.md: 64)."""
    lr: float = Field(1e-3, gt=0)
    """Adam learning rate (PAPER.md: 1e-3)."""
    weight_decay: float = Field(0.0, ge=0)
    """Adam weight decay."""
    image_size: int = Field(64, ge=16, multiple_of=16)
    """Side of the square input (PAPER.md: 64 for the reconstruction family, DAE 128)."""


class FittedConfig(MethodConfig):
    """Config of a method fitted on frozen features in one pass (no gradient training)."""

    epochs: int = Field(0, ge=0)
    """Ignored: nothing is trained (accepted so dataset-wide epoch defaults do not fail)."""


@dataclass
class Phase:
    """One optimiser inside a stage; phases of a stage alternate on every batch (GANs).

    `params` is a list of parameters, or of `ParamGroup`s with their own learning rates. The
    optimiser (`optimizer`, `betas` for Adam/AdamW, `momentum`/`nesterov` for SGD) and its
    `schedule` are data the engine turns into torch objects (`medad.methods.optimisation`)."""

    name: str
    params: list[nn.Parameter] | list[ParamGroup]
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    repeats: int = 1
    optimizer: OptimiserName = "adam"
    momentum: float = 0.0
    nesterov: bool = False
    schedule: Schedule = CONSTANT


@dataclass
class Stage:
    """A number of epochs with a fixed set of phases; stages run one after another.

    `steps_per_epoch` (None: one pass over the data) makes an epoch that many optimiser steps,
    the data cycled through re-shuffled passes (MedIAnomaly's two-stage "epochs" of 256 steps)."""

    name: str
    epochs: int
    phases: list[Phase] = field(default_factory=list)
    steps_per_epoch: int | None = None


def config_phase(
    name: str,
    params: list[nn.Parameter] | list[ParamGroup],
    config: MethodConfig,
    lr: float | None = None,
) -> Phase:
    """A phase with the config's rate, weight decay and (if it has them) optimiser and schedule."""
    extra = config.phase_options() if isinstance(config, OptimiserConfig) else {}
    return Phase(
        name, params, config.lr if lr is None else lr, weight_decay=config.weight_decay, **extra
    )


def config_stage(name: str, epochs: int, phases: list[Phase], config: MethodConfig) -> Stage:
    """A stage with the config's `steps_per_epoch` when it has one."""
    steps = config.steps_per_epoch if isinstance(config, OptimiserConfig) else None
    return Stage(name, epochs, phases, steps_per_epoch=steps)


@dataclass
class ScoreOutput:
    """Scores of one batch: image scores [B] and optional anomaly maps [B, H, W]."""

    image_scores: torch.Tensor
    maps: torch.Tensor | None = None


class Method(nn.Module):
    """Base class of every anomaly-detection method."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    #: the epoch budget it follows (`medad.methods.budgets`): a key of ``BUDGETS``, ``"own"``
    #: (its config's ``epochs`` on every dataset) or None (its family's entry, if any)
    budget: ClassVar[str | None] = None
    #: pretrained networks it always uses (besides its config's ``backbone``), for `medad weights`
    backbones: ClassVar[tuple[str, ...]] = ()
    #: one of the study's 30 methods (PAPER.md; in ``configs/paper.yaml``), or beyond it
    in_study: ClassVar[bool] = True
    #: the engine may run `train_inputs` in a background thread, a few batches ahead of the
    #: training step (in batch order, so the draws from `rng` keep their sequence); a method that
    #: sets it draws from `rng` only in `train_transform` and `train_inputs` during training
    prefetch: ClassVar[bool] = False

    def __init__(self, config: MethodConfig, channels: int) -> None:
        super().__init__()
        self.config = config
        self.channels = channels
        #: NumPy generator for data-side randomness (synthetic anomalies); seeded by the engine
        self.rng = np.random.default_rng(0)
        #: positions in the split of the images `score` is given, set by the engine's `predict`
        #: (None when called directly): methods whose scores draw random numbers seed them per
        #: image from it, so a score does not depend on the batch size or order
        self.image_index: np.ndarray | None = None

    @classmethod
    def preprocess(cls, config: MethodConfig, channels: int) -> Preprocess:
        """The input format this method expects; default: PAPER.md's reconstruction setting."""
        return Preprocess(size=config.image_size, channels=channels, value_range=(-1.0, 1.0))

    def stages(self) -> list[Stage]:
        """Default: one phase over all parameters for `config.epochs` (Adam at a constant rate,
        or the optimiser and schedule of an `OptimiserConfig`)."""
        c = self.config
        params = [p for p in self.parameters() if p.requires_grad]
        if not params or c.epochs == 0:
            return []
        return [config_stage("train", c.epochs, [config_phase("model", params, c)], c)]

    def training_loss(
        self, x: torch.Tensor, stage: str, phase: str
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """The loss to minimise for a batch `x` (a dict must hold the key ``"loss"``)."""
        raise MedadError(f"method {self.name!r} has no gradient training")

    def prepare(self, batches: Callable[[], Iterator[torch.Tensor]]) -> None:
        """Set data-derived state before training; `batches()` iterates over the train split."""

    def fit(self, batches: Callable[[], Iterator[torch.Tensor]]) -> None:
        """Fit non-gradient state after training; `batches()` iterates over the train split."""

    def holdout_fraction(self) -> float:
        """Fraction of the train split the engine keeps out of training and `fit` and gives to
        `calibrate` instead (EfficientAD normalises its maps on such validation images); 0: none."""
        return 0.0

    def calibrate(self, batches: Callable[[], Iterator[torch.Tensor]]) -> None:
        """Set state from the held-out normal images (see `holdout_fraction`) after `fit`."""

    def score(self, x: torch.Tensor) -> ScoreOutput:  # pragma: no cover - abstract
        """Anomaly scores of a batch; higher means more anomalous."""
        raise NotImplementedError

    def train_transform(self, x: torch.Tensor) -> torch.Tensor:
        """Training-time augmentation of a batch (default none: PAPER.md, no augmentation)."""
        return x

    def train_inputs(self, x: torch.Tensor) -> Any:
        """What `training_loss` receives for the augmented batch `x` (default: `x`). Methods that
        make synthetic anomalies make them here, so that with `prefetch` the next batch's are
        made on the CPU while the device trains on this one."""
        return x


@dataclass(frozen=True)
class MethodInfo:
    name: str
    family: str
    description: str
    cls: type[Method]


_METHODS: dict[str, type[Method]] = {}


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: register a method under its paper name (a lower-case slug)."""

    def deco(cls: type[Method]) -> type[Method]:
        if name in _METHODS:
            raise RuntimeError(f"method {name!r} registered twice")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return deco


def _load_all() -> None:
    import medad.methods.registry  # noqa: F401


def method_infos(family: str | None = None) -> list[MethodInfo]:
    _load_all()
    infos = [MethodInfo(n, c.family, c.description, c) for n, c in _METHODS.items()]
    return [i for i in infos if family is None or i.family == family]


def method_class(name: str) -> type[Method]:
    _load_all()
    if name not in _METHODS:
        raise MedadError(f"unknown method {name!r}; known methods: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def expand_dotted(cls: type[Method], values: dict[str, Any]) -> dict[str, Any]:
    """Apply dotted keys (``anomaly_params.blend``) to a copy of the mapping they point into.

    ``{"anomaly_params.blend": "interpolated"}`` changes that one entry of the method's default
    ``anomaly_params`` (or of an ``anomaly_params`` given in the same `values`), keeping the
    others; a plain ``anomaly_params`` key replaces the whole mapping.
    """
    out = {k: v for k, v in values.items() if "." not in k}
    for key in sorted(k for k in values if "." in k):
        field_name, *path = key.split(".")
        if field_name not in cls.Config.model_fields:
            raise MedadError(
                f"bad config for method {cls.name!r}: {key}: no field {field_name!r} "
                f"(fields: {', '.join(cls.Config.model_fields)})"
            )
        if field_name not in out:
            default = cls.Config.model_fields[field_name].get_default(call_default_factory=True)
            out[field_name] = default.model_dump() if isinstance(default, BaseModel) else default
        elif isinstance(out[field_name], BaseModel):
            out[field_name] = out[field_name].model_dump()
        parent: Any = out
        for name in [field_name, *path[:-1]]:
            if not isinstance(parent.get(name), dict):
                raise MedadError(
                    f"bad config for method {cls.name!r}: {key}: {name!r} is not a mapping"
                )
            parent[name] = dict(parent[name])
            parent = parent[name]
        parent[path[-1]] = values[key]
    return out


def build_config(cls: type[Method], values: dict[str, Any]) -> MethodConfig:
    """Validate `values` against the method's config, with a message naming the bad key.

    Dotted keys set one entry of a mapping field (see `expand_dotted`)."""
    values = expand_dotted(cls, values)
    try:
        return cls.Config(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        known = ", ".join(cls.Config.model_fields)
        raise MedadError(
            f"bad config for method {cls.name!r}: {problems} (fields: {known})"
        ) from None
