"""Epoch budgets per method family and dataset: the studies' numbers, written once.

A run trains for its method's budget on its dataset unless ``epochs`` is given (``--epochs``,
``--set epochs=N``, a bench file's ``set``). Sources:

* reconstruction family: 250 epochs, Brain Tumor 600 (PAPER.md, "Methods"; MedIAnomaly's
  reconstruction code);
* one-stage SSL (CutPaste one-stage, FPI, PII, NSA): 250 epochs, VinDr-CXR 400 (MedIAnomaly
  ``ssl/one_stage/train_med.py``, the ``epochs`` table of its ``__main__``: Brain Tumor 250);
* methods without an entry keep their config's own ``epochs`` on every dataset: DRAEM 700
  (DRAEM's code), two-stage SSL 100 epochs of 256 steps (MedIAnomaly ``ssl/two_stage``),
  frozen-feature references 0;
* feature reconstruction, one entry per method (their papers' code, none varies by dataset):
  RD 200 (RD4AD ``main.py``; RD++ follows it, its code's 10-300 vary per MVTec class); FAE
  counts steps, not passes: 100 epochs of 100 steps, the paper's 10 000 updates, and
  ReContrast 20 epochs of 100 steps, the 2000 iterations of its ISIC script, on every dataset
  (their configs' own);
* the embedded synthetic datasets (``synth-*``) are small demonstrations: 50 epochs for the
  families above, so a demo ends in minutes (methods without an entry keep their own).

A method says which entry it follows with its class attribute ``budget`` (a key of `BUDGETS`,
or ``"own"``); left at None it follows its family's entry when `BUDGETS` has one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: short budgets of the embedded demonstration datasets
EMBEDDED: dict[str, int] = {"synth-brain": 50, "synth-chest": 50}


@dataclass(frozen=True)
class Budget:
    """Epochs on any dataset, with the datasets that differ."""

    epochs: int
    per_dataset: Mapping[str, int] = field(default_factory=dict)

    def on(self, dataset: str) -> int:
        return self.per_dataset.get(dataset, self.epochs)

    def describe(self) -> str:
        """E.g. ``250 (brain-tumor 600, synth-brain 50, synth-chest 50)``."""
        if not self.per_dataset:
            return str(self.epochs)
        rest = ", ".join(f"{d} {e}" for d, e in self.per_dataset.items())
        return f"{self.epochs} ({rest})"


BUDGETS: dict[str, Budget] = {
    "reconstruction": Budget(250, {"brain-tumor": 600, **EMBEDDED}),
    "one-stage-ssl": Budget(250, {"vincxr": 400, **EMBEDDED}),
    "rd": Budget(200, dict(EMBEDDED)),
}


def budget_of(cls: type) -> Budget | None:
    """The budget a method class follows, or None when it keeps its config's ``epochs``."""
    key = getattr(cls, "budget", None)
    if key == "own":
        return None
    if key is None:
        key = getattr(cls, "family", "")
        return BUDGETS.get(key)
    if key not in BUDGETS:
        raise KeyError(f"method {cls.__name__}: unknown budget {key!r} (known: {list(BUDGETS)})")
    return BUDGETS[key]


def budget_epochs(cls: type, dataset: str) -> int | None:
    """Epochs of method `cls` on `dataset`; None: the method config's own default."""
    budget = budget_of(cls)
    return None if budget is None else budget.on(dataset)


def describe_budget(cls: type) -> str:
    """The per-dataset epochs of a method, for listings."""
    budget = budget_of(cls)
    if budget is None:
        return f"{cls.Config.model_fields['epochs'].default} (own)"  # type: ignore[attr-defined]
    return budget.describe()
