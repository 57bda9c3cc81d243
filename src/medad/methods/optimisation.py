"""How a phase is optimised, as data: the optimiser, its parameter groups and its schedule.

The studies medad reproduces do not all train with constant-rate Adam: MedIAnomaly's one-stage SSL
anneals Adam's rate with a cosine to 1e-6, its two-stage SSL uses SGD with momentum and cosine warm
restarts over "epochs" of 256 steps, DRAEM decays Adam's rate in steps. A method says which on its
stages (`medad.methods.base.Phase`, `Stage.steps_per_epoch`), usually through the fields of
`OptimiserConfig` in its config; the engine (`medad.engine`) builds the torch objects. No method
owns optimiser or scheduler code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

OptimiserName = Literal["adam", "adamw", "sgd"]
ScheduleKind = Literal["constant", "cosine", "cosine-restarts", "step"]


class Schedule(BaseModel):
    """A learning-rate schedule, as a factor of each parameter group's initial rate.

    Lengths are counted in `per` units (epochs or optimiser steps) and, where they default to
    "the stage", span the stage after its warm-up, so a schedule follows any epoch budget.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ScheduleKind = "constant"
    """``constant``; ``cosine`` (annealing to `eta_min` over the stage, torch
    ``CosineAnnealingLR``); ``cosine-restarts`` (SGDR, Loshchilov & Hutter 2017, torch
    ``CosineAnnealingWarmRestarts``); ``step`` (multiply by `gamma` at each milestone,
    torch ``MultiStepLR``)."""
    per: Literal["epoch", "step"] = "epoch"
    """Step the schedule after every epoch (the studies' code) or after every optimiser step."""
    eta_min: float = Field(0.0, ge=0)
    """Floor of the cosine schedules (MedIAnomaly's one-stage SSL: 1e-6)."""
    t_0: int | None = Field(None, ge=1)
    """First period of ``cosine-restarts`` in `per` units; None: the whole stage (MedIAnomaly's
    two-stage code passes its number of epochs, so the rate anneals once without restarting)."""
    t_mult: int = Field(1, ge=1)
    """Factor by which each ``cosine-restarts`` period grows."""
    milestones: tuple[float, ...] = ()
    """``step``: where the rate drops, as fractions of the stage in (0, 1] (DRAEM: 0.8, 0.9)."""
    gamma: float = Field(0.1, gt=0)
    """``step``: the factor applied at each milestone (DRAEM: 0.2)."""
    warmup: int = Field(0, ge=0)
    """Units of linear warm-up before the schedule (0: none)."""
    warmup_start: float = Field(0.01, gt=0, le=1)
    """Factor of the rate at the first warm-up unit; it grows linearly to 1 over `warmup`."""

    @model_validator(mode="before")
    @classmethod
    def _kind_shorthand(cls, value: Any) -> Any:
        """``--set schedule=cosine`` means ``{kind: cosine}``."""
        return {"kind": value} if isinstance(value, str) else value

    @field_validator("milestones")
    @classmethod
    def _fractions(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < m <= 1 for m in value) or list(value) != sorted(value):
            raise ValueError(f"milestones must be increasing fractions in (0, 1], got {value}")
        return value

    def describe(self) -> str:
        """A short human text, e.g. ``cosine to 1e-06 per epoch``."""
        text = {
            "constant": "constant",
            "cosine": f"cosine to {self.eta_min:g}",
            "cosine-restarts": "cosine restarts (T_0 "
            + (f"{self.t_0}" if self.t_0 else "stage")
            + f", T_mult {self.t_mult}, to {self.eta_min:g})",
            "step": "step ×" + f"{self.gamma:g} at " + ", ".join(f"{m:g}" for m in self.milestones),
        }[self.kind]
        if self.warmup:
            text = f"warm-up {self.warmup} {self.per}s, then {text}"
        return text if self.kind == "constant" and not self.warmup else f"{text} per {self.per}"


CONSTANT = Schedule()


@dataclass
class ParamGroup:
    """Parameters that share a learning rate inside one optimiser (None: the phase's rate)."""

    params: list[nn.Parameter]
    lr: float | None = None


class OptimiserConfig(BaseModel):
    """Config fields of the optimiser, schedule and epoch length (mixed into a method's config).

    Methods whose study trains with plain constant-rate Adam do not carry these fields, so their
    configurations (and run ids) stay as they were; `Method.stages` reads them when present.
    """

    optimizer: OptimiserName = "adam"
    """``adam``, ``adamw`` (decoupled weight decay) or ``sgd``."""
    momentum: float = Field(0.0, ge=0, lt=1)
    """SGD momentum."""
    nesterov: bool = False
    """SGD with Nesterov momentum."""
    schedule: Schedule = Field(default_factory=Schedule)
    """The learning-rate schedule of every phase (see `Schedule`)."""
    steps_per_epoch: int | None = Field(None, ge=1)
    """Optimiser steps per epoch, cycling through re-shuffled passes of the data (None: one pass
    per epoch). MedIAnomaly's two-stage code defines an epoch as 256 steps."""

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> OptimiserConfig:
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer 'sgd' with a momentum above 0")
        return self

    def phase_options(self) -> dict[str, Any]:
        """The `Phase` keyword arguments these fields set."""
        return {
            "optimizer": self.optimizer,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "schedule": self.schedule,
        }


def optimisation_summary(config: BaseModel) -> tuple[str, str]:
    """(optimiser, schedule) of a method config as short texts, for plans and listings."""
    if getattr(config, "epochs", None) == 0:
        return "none (not trained)", "none"
    if isinstance(config, OptimiserConfig):
        opt = config.optimizer
        if config.optimizer == "sgd":
            opt += f" (momentum {config.momentum:g}{', nesterov' if config.nesterov else ''})"
        schedule = config.schedule.describe()
        if config.steps_per_epoch:
            schedule += f"; {config.steps_per_epoch} steps/epoch"
    else:
        opt, schedule = "adam", CONSTANT.describe()
    lr, wd = getattr(config, "lr", None), getattr(config, "weight_decay", 0.0)
    if lr is not None:
        opt += f" lr {lr:g}" + (f" wd {wd:g}" if wd else "")
    return opt, schedule
