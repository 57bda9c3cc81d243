"""`medad bench CONFIG --plan` lists every cell with its budget, input and optimisation without
opening data or writing anything; `configs/paper.yaml` is the whole study at its settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medad.bench import plan_cells, plan_rows
from medad.bench.config import parse_experiment
from medad.cli import app
from medad.errors import MedadError
from medad.methods.base import method_infos

PAPER = Path(__file__).resolve().parents[2] / "configs" / "paper.yaml"
STUDY_DATASETS = {"rsna", "vincxr", "brain-tumor", "lag", "isic2018", "camelyon16", "brats2021"}


@pytest.fixture
def no_data(tmp_path, monkeypatch) -> Path:
    """Run from an empty folder with an empty data root: nothing to read, nothing may appear."""
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("MEDAD_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _contents(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_paper_plan_is_every_method_on_every_dataset_at_the_studys_settings(no_data):
    res = CliRunner().invoke(app, ["bench", str(PAPER), "--plan", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    methods = {i.name for i in method_infos() if i.cls.in_study}
    assert len(rows) == 3 * 7 * len(methods)
    assert len({(r["method"], r["dataset"], r["seed"]) for r in rows}) == len(rows)
    assert {r["run_id"] for r in rows} == {None}  # the data's identity is part of a run id
    assert {r["method"] for r in rows} == methods
    assert {r["dataset"] for r in rows} == STUDY_DATASETS
    assert {r["seed"] for r in rows} == {0, 1, 2}
    cell = {(r["method"], r["dataset"], r["seed"]): r for r in rows}
    assert cell["ae", "brain-tumor", 0]["epochs"] == 600
    assert cell["ae", "rsna", 1]["epochs"] == 250
    assert cell["nsa", "brain-tumor", 2]["epochs"] == 250
    assert cell["nsa", "vincxr", 0]["epochs"] == 400
    dae = cell["dae", "lag", 0]
    assert (dae["image_size"], dae["batch_size"]) == (128, 16)
    two = cell["cutpaste-2stage", "camelyon16", 0]
    assert (two["optimizer"], two["lr"], two["steps_per_epoch"]) == ("sgd", 0.03, 256)
    assert cell["nsa", "rsna", 0]["schedule"] == "cosine to 1e-06 per epoch"
    assert cell["draem", "rsna", 0]["schedule"].startswith("step ×0.2")
    assert _contents(no_data) == ["data"]  # no output folder, no cache


def test_plan_table_names_the_cells_and_writes_nothing(no_data):
    res = CliRunner().invoke(app, ["bench", str(PAPER), "--plan", "--out", str(no_data / "o")])
    assert res.exit_code == 0, res.output
    assert f"{3 * 7 * sum(i.cls.in_study for i in method_infos())} cells" in res.output
    assert _contents(no_data) == ["data"]


def test_a_real_run_still_needs_the_data(no_data):
    (no_data / "grid.yaml").write_text("name: g\nseeds: [0]\nmethods: [ae]\ndatasets: [rsna]\n")
    res = CliRunner().invoke(app, ["bench", "grid.yaml", "--out", "o"])
    assert res.exit_code != 0
    assert "rsna" in res.output and not (no_data / "o").exists()
    res = CliRunner().invoke(app, ["bench", "grid.yaml", "--plan", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)[0]["epochs"] == 250


def test_planning_without_data_gives_the_run_ids_of_a_real_plan():
    exp = parse_experiment(
        "name: t\nseeds: [0, 1]\nmethods: [ae, {name: nsa, set: {epochs: 3}}]\n"
        "datasets: [{name: synth-brain, options: {n_train: 8}}]\n"
    )
    real = plan_rows(plan_cells(exp))
    assert plan_rows(plan_cells(exp, open_data=False)) == real
    assert [(r["label"], r["epochs"]) for r in real] == [("ae", 50)] * 2 + [
        ("nsa[epochs=3]", 3)
    ] * 2


def test_planning_checks_the_dataset_name():
    exp = parse_experiment("name: t\nmethods: [ae]\ndatasets: [rnsa]\n")
    with pytest.raises(MedadError, match="unknown dataset 'rnsa'"):
        plan_cells(exp, open_data=False)


def test_a_plan_of_data_on_disk_names_the_real_run_ids_and_none_without_the_data(tmp_path):
    from tests.test_cli import make_folder_dataset

    roots = [make_folder_dataset(tmp_path / name, n=4, size=32) for name in ("a", "b")]
    text = "name: t\nseeds: [0]\nmethods: [{name: ae, set: {epochs: 1}}]\ndatasets:\n" + "".join(
        f"  - {{name: folder, data_root: {r}}}\n" for r in [*roots, tmp_path / "gone"]
    )
    exp = parse_experiment(text)
    planned = plan_rows(plan_cells(exp, open_data=False))
    ids = [r["run_id"] for r in planned]
    assert ids[:2] == [c.run_id for c in plan_cells(parse_experiment(text.rsplit("  - ", 1)[0]))]
    assert ids[0] != ids[1] and ids[2] is None  # two folders, two runs; a missing one: no id yet


def test_a_grid_opens_each_dataset_once_not_once_per_cell(tmp_path, monkeypatch):
    from medad import runs
    from tests.test_cli import make_folder_dataset

    root = make_folder_dataset(tmp_path / "a", n=4, size=32)
    opened = []
    real = runs.open_dataset
    monkeypatch.setattr(runs, "open_dataset", lambda spec, r: opened.append(r) or real(spec, r))
    exp = parse_experiment(
        "name: t\nseeds: [0, 1, 2]\n"
        "methods: [ae, {name: ae, label: z4, set: {latent_size: 4}}]\n"
        f"datasets: [{{name: folder, data_root: {root}}}]\n"
    )
    for open_data in (True, False):
        opened.clear()
        cells = plan_cells(exp, open_data=open_data)
        assert len(cells) == 6 and len({c.run_id for c in cells}) == 6
        assert len(opened) == 1
