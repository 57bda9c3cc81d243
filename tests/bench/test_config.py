"""Experiment files: validated, with errors that name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from medad.bench import load_experiment, plan_cells
from medad.bench.config import parse_experiment
from medad.data.base import dataset_infos
from medad.errors import MedadError
from medad.methods.base import build_config, method_class

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

GOOD = """\
name: t
seeds: [0, 1]
methods:
  - ae
  - {name: ae, label: ae-z4, set: {latent_size: 4}}
datasets:
  - synth-brain
"""


def test_short_and_long_entries():
    exp = parse_experiment(GOOD)
    assert [m.display for m in exp.methods] == ["ae", "ae-z4"]
    assert exp.datasets[0].name == "synth-brain" and exp.seeds == [0, 1]
    cells = plan_cells(exp, quick=True)
    assert len(cells) == 4
    assert {c.planned.config.epochs for c in cells} == {2}
    assert {c.planned.spec.dataset_options["n_train"] for c in cells} == {64}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD + "colour: red\n", "<experiment>:8: colour: unknown key"),
        (GOOD.replace("seeds: [0, 1]", "seeds: [0, x]"), "<experiment>:2: seeds.1"),
        (GOOD.replace("label: ae-z4,", "labl: ae-z4,"), "<experiment>:5: methods.1.labl"),
        (GOOD.replace("seeds: [0, 1]", "seeds: [1, 1]"), "distinct"),
        ("methods: [ae\n", "not valid YAML"),
        ("- a\n", "must be a mapping"),
    ],
)
def test_errors_give_the_line(text, expected):
    with pytest.raises(MedadError) as err:
        parse_experiment(text)
    assert expected in str(err.value)


def test_unknown_method_or_config_field_fails_before_anything_runs():
    exp = parse_experiment(GOOD.replace("latent_size: 4", "latent_sise: 4"))
    with pytest.raises(MedadError, match="latent_sise"):
        plan_cells(exp)
    exp = parse_experiment(GOOD.replace("  - ae\n", "  - nope\n", 1))
    with pytest.raises(MedadError, match="unknown method 'nope'"):
        plan_cells(exp)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(MedadError, match="nope.yaml"):
        load_experiment(tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDAD_DATA", str(tmp_path))  # datasets on disk may be missing here
    exp = load_experiment(path)
    assert exp.methods and exp.datasets
    for m in exp.methods:  # every method and override exists, even where the data is absent
        cls = method_class(m.name)
        build_config(
            cls, {**{k: v for k, v in exp.set.items() if k in cls.Config.model_fields}, **m.set}
        )
    known = {i.name for i in dataset_infos()}
    assert all(d.name in known for d in exp.datasets)
    embedded = all(d.name.startswith("synth-") for d in exp.datasets)
    if embedded:
        assert plan_cells(exp, quick=True)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("set:\n  epocs: 1\n", "<experiment>:9: set.epocs: no method of this experiment"),
        ("quick:\n  set:\n    latnt_size: 2\n", "<experiment>:10: quick.set.latnt_size: no method"),
        ("set:\n  anomaly_parms.blend: x\n", "set.anomaly_parms.blend: no method"),
    ],
)
def test_shared_set_keys_must_belong_to_a_method(extra, expected):
    with pytest.raises(MedadError, match="invalid experiment") as err:
        parse_experiment(GOOD + extra)
    assert expected in str(err.value)
    shared = parse_experiment(GOOD + "set:\n  epochs: 1\n  latent_size: 8\n")
    assert shared.set == {"epochs": 1, "latent_size": 8}
