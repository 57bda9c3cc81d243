"""Epoch budgets come from one table per family and dataset (`medad.methods.budgets`), and a
run's own `epochs` always wins; the schedules the studies used are declared on the methods."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from medad.cli import app
from medad.errors import MedadError
from medad.methods.base import build_config, method_class
from medad.methods.budgets import budget_epochs, describe_budget
from medad.methods.optimisation import Schedule
from medad.runs import RunSpec, resolve_config


def _epochs(method: str, dataset: str, **overrides) -> int:
    config, resolved = resolve_config(RunSpec(method, dataset, overrides=overrides))
    assert resolved["config"]["epochs"] == config.epochs
    return config.epochs


@pytest.mark.parametrize(
    ("method", "dataset", "epochs"),
    [
        ("ae", "brain-tumor", 600),  # PAPER.md: 250 epochs (Brain Tumor 600)
        ("ae", "rsna", 250),
        ("vae-grad-combi", "brain-tumor", 600),
        ("f-anogan", "brain-tumor", 600),
        ("nsa", "brain-tumor", 250),  # MedIAnomaly train_med.py: brain 250, vin 400
        ("nsa", "vincxr", 400),
        ("cutpaste-1stage", "vincxr", 400),
        ("fpi", "rsna", 250),
        ("ae", "vincxr", 250),
        ("ae", "synth-brain", 50),  # embedded demonstration data
        ("pii", "synth-chest", 50),
        ("draem", "brain-tumor", 700),  # own budgets on every dataset
        ("draem", "synth-brain", 700),
        ("cutpaste-2stage", "vincxr", 100),
        ("anatpaste", "brain-tumor", 100),
        ("resnet18-imagenet", "rsna", 0),
        ("rd", "brats2021", 200),  # RD4AD main.py
        ("rd", "synth-brain", 50),
        ("rdpp", "rsna", 200),  # RD's budget (the official code's varies per MVTec class)
        ("rdpp", "synth-brain", 50),
        ("fae", "rsna", 100),  # 100 epochs of 100 steps: the paper's 10 000 updates
        ("recontrast", "isic2018", 20),  # 20 epochs of 100 steps: its ISIC script's 2000
    ],
)
def test_each_family_trains_for_the_studys_budget_on_each_dataset(method, dataset, epochs):
    assert _epochs(method, dataset) == epochs


def test_an_explicit_epochs_override_wins():
    assert _epochs("ae", "brain-tumor", epochs=3) == 3
    assert _epochs("nsa", "vincxr", epochs=0) == 0
    assert _epochs("draem", "rsna", epochs=5) == 5


def test_budget_text_lists_the_datasets_that_differ():
    assert describe_budget(method_class("nsa")).startswith("250 (vincxr 400")
    assert describe_budget(method_class("ae")).startswith("250 (brain-tumor 600")
    assert describe_budget(method_class("draem")) == "700 (own)"
    assert budget_epochs(method_class("cutpaste-2stage"), "rsna") is None


def _table_rows(output: str) -> dict[str, str]:
    """Rich table rows by their first cell, each cell's wrapped lines joined back."""
    rows: dict[str, list[list[str]]] = {}
    name = ""
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if not cells:
            continue
        name = cells[0] or name
        rows.setdefault(name, []).append(cells)
    return {
        n: " | ".join(" ".join(col).replace("  ", " ") for col in zip(*parts, strict=True))
        for n, parts in rows.items()
    }


def test_methods_details_show_budgets_and_schedules():
    res = CliRunner().invoke(app, ["methods", "--details", "--family", "self-supervised"])
    assert res.exit_code == 0, res.output
    rows = _table_rows(res.output)
    assert "250 (vincxr 400" in rows["nsa"] and "cosine to 1e-06 per epoch" in rows["nsa"]
    assert "sgd (momentum 0.9) lr 0.03" in rows["cutpaste-2stage"]
    assert "256 steps/epoch" in rows["anatpaste"]
    assert "step ×0.2 at 0.8, 0.9 per epoch" in rows["draem"] and "700 (own)" in rows["draem"]


@pytest.mark.parametrize(
    ("method", "optimizer", "lr", "kind", "steps"),
    [
        ("nsa", "adam", 1e-3, "cosine", None),  # MedIAnomaly train_med.py: CosineAnnealingLR
        ("cutpaste-2stage", "sgd", 0.03, "cosine-restarts", 256),  # run_training.py
        ("anatpaste", "sgd", 0.03, "cosine-restarts", 256),
        ("draem", "adam", 1e-4, "step", None),  # DRAEM train_DRAEM.py: MultiStepLR
        ("ae", "adam", 1e-3, "constant", None),
    ],
)
def test_stages_carry_the_studys_optimiser_and_schedule(method, optimizer, lr, kind, steps):
    cls = method_class(method)
    small = {
        "ae": {},
        "nsa": {"image_size": 64, "train_center_crop": 58, "crop_size": 56},
        "draem": {"image_size": 64, "reconstructive_width": 4, "discriminative_width": 4},
    }
    overrides = small.get(method, {"image_size": 64})
    config, _ = resolve_config(RunSpec(method, "rsna", overrides=overrides))
    (stage,) = cls(config, 1).stages()
    (phase,) = stage.phases
    assert (phase.optimizer, phase.lr, phase.schedule.kind) == (optimizer, lr, kind)
    assert stage.steps_per_epoch == steps
    if method == "nsa":
        assert phase.schedule.eta_min == 1e-6
    if method == "draem":
        assert (phase.schedule.milestones, phase.schedule.gamma) == ((0.8, 0.9), 0.2)
    if optimizer == "sgd":
        assert (phase.momentum, phase.weight_decay) == (0.9, 3e-5)


def test_schedule_fields_are_overridable_and_checked():
    cls = method_class("nsa")
    assert build_config(cls, {"schedule.eta_min": 0.0}).schedule == Schedule(kind="cosine")
    assert build_config(cls, {"schedule": "constant"}).schedule == Schedule()
    two = build_config(method_class("cutpaste-2stage"), {"steps_per_epoch": None, "lr": 0.1})
    assert (two.steps_per_epoch, two.lr, two.optimizer) == (None, 0.1, "sgd")
    with pytest.raises(MedadError, match="milestones"):
        build_config(method_class("draem"), {"schedule.milestones": [0.9, 0.5]})
    with pytest.raises(MedadError, match="nesterov"):
        build_config(cls, {"nesterov": True})
    with pytest.raises(MedadError, match="schedule"):
        build_config(cls, {"schedule.kind": "linear"})
    with pytest.raises(MedadError, match="optimizer"):
        build_config(method_class("ae"), {"optimizer": "sgd"})  # constant Adam: no such field
