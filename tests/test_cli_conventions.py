"""CLI conventions: --version, -h, completion, one name per thing (--results for the store,
--out for what a command writes), the same short flags, --json, run --config and --dry-run, and
the old spellings kept as deprecated aliases."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

import medad
from medad.cli import app

runner = CliRunner()
TINY = ["--data-option", "n_train=24", "--data-option", "n_test_normal=8"]
TINY += ["--data-option", "n_test_abnormal=8", "--data-option", "size=64", "--epochs", "1"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_version_and_short_help():
    for flag in ("--version", "-V"):
        res = invoke(flag)
        assert res.exit_code == 0 and res.stdout.strip() == f"medad {medad.__version__}"
    res = invoke("-h")
    assert res.exit_code == 0 and "Commands" in res.stdout and "--show-completion" in res.stdout
    res = invoke("run", "-h")
    assert res.exit_code == 0 and "--results" in res.stdout and "--dry-run" in res.stdout
    assert "--out " not in res.stdout  # the old spelling is hidden


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One finished tiny run in a store, made with the new spellings."""
    root = tmp_path_factory.mktemp("store") / "runs"
    res = invoke("run", "-m", "ae", "-d", "synth-brain", *TINY, "-r", root, "--json")
    assert res.exit_code == 0, res.output
    return root, json.loads(res.stdout.strip().splitlines()[-1])


def test_results_and_table_take_the_same_flags_and_json(store):
    root, run = store
    res = invoke("results", "-r", root, "-m", "ae", "-d", "synth-brain", "--json")
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["run_id"] for r in rows] == [run["run_id"]]
    assert invoke("results", "-r", root, "-m", "vae", "--json").stdout == ""
    res = invoke("table", "-r", root, "-d", "synth-brain", "--json")
    assert res.exit_code == 0, res.output
    table = json.loads(res.stdout)
    assert table == json.loads(invoke("table", "-r", root, "--format", "json").stdout)
    auroc = next(r for r in table["rows"] if r["metric"] == "image_auroc")
    assert auroc["dataset"] == "synth-brain" and auroc["seeds"] == 1
    assert auroc["mean"] == pytest.approx(run["image_auroc"])


def test_old_out_spelling_still_works_with_a_warning(store):
    root, run = store
    res = invoke("run", "-m", "ae", "-d", "synth-brain", *TINY, "--out", root, "--json")
    assert res.exit_code == 0, res.output
    assert "deprecated" in res.stderr and "--results" in res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["reused"] is True
    res = invoke("run", "-m", "ae", "-d", "synth-brain", "--out", root, "-r", root / "other")
    assert res.exit_code == 2 and "different stores" in res.stderr


def test_run_config_file_and_command_line_precedence(store, tmp_path):
    root, run = store
    cfg = tmp_path / "run.yaml"
    options = {"n_train": 24, "n_test_normal": 8, "n_test_abnormal": 8, "size": 64}
    settings = {"method": "ae", "dataset": "synth-brain", "epochs": 1, "data_options": options}
    cfg.write_text(yaml.safe_dump(settings))
    res = invoke("run", "--config", cfg, "-r", root, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["run_id"] == run["run_id"]
    # a run folder's own config.yaml runs the same run again (here: found finished)
    res = invoke("run", "-c", f"{run['run_dir']}/config.yaml", "-r", root, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["run_id"] == run["run_id"]
    # the command line wins over the file
    res = invoke("run", "-c", cfg, "--set", "latent_size=4", "--seed", "3", "--dry-run", "--json")
    plan = json.loads(res.stdout)
    assert plan["config"]["latent_size"] == 4 and plan["seed"] == 3
    assert plan["config"]["epochs"] == 1 and plan["dataset_options"] == options
    cfg.write_text("method: ae\ndatset: synth-brain\n")
    res = invoke("run", "-c", cfg)
    assert res.exit_code == 2 and "unknown key(s) datset" in res.stderr
    res = invoke("run", "-m", "ae")
    assert res.exit_code == 2 and "missing --dataset/-d" in res.stderr


def test_run_dry_run_prints_the_resolved_configuration_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = invoke("run", "-m", "ae", "-d", "synth-brain", "--plan")
    assert res.exit_code == 0, res.output
    resolved = yaml.safe_load(res.stdout)
    assert resolved["config"]["epochs"] == 50  # the embedded data's budget, filled in
    assert resolved["config"]["latent_size"] == 16 and resolved["run_id"].startswith("synth-brain")
    assert list(tmp_path.iterdir()) == []


def test_bench_results_flag_old_out_and_dry_run(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "name: tiny\nmethods: [ae]\ndatasets:\n  - name: synth-brain\n    options: "
        "{n_train: 24, n_test_normal: 8, n_test_abnormal: 8, size: 64}\nseeds: [0]\n"
        "set: {epochs: 1}\n"
    )
    res = invoke("bench", exp, "--dry-run", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["resolved"]["config"]["epochs"] == 1
    res = invoke("bench", exp, "-r", tmp_path / "a", "--json")
    assert res.exit_code == 0, res.output
    assert {r["metric"] for r in json.loads(res.stdout)} == {"image_auroc", "image_ap"}
    res = invoke("bench", exp, "--out", tmp_path / "a")
    assert res.exit_code == 0 and "deprecated" in res.stderr and "skip" in res.stderr


def test_anomalies_and_report_short_flags(store, tmp_path):
    root, _ = store
    res = invoke("anomalies", "--kind", "cutpaste", "-d", "synth-brain", "-o", tmp_path / "g")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "g" / "cutpaste.png").is_file()
    res = invoke("report", "-h")
    assert "-o" in res.stdout and "-r" in res.stdout
