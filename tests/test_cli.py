"""The CLI contract: commands, JSON output, and a clear one-line error on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medad.cli import app

runner = CliRunner()
SMALL_OPTS = [
    "--data-option",
    "n_train=64",
    "--data-option",
    "n_test_normal=16",
    "--data-option",
    "n_test_abnormal=16",
    "--data-option",
    "size=64",
]


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def make_folder_dataset(root: Path, n: int = 6, size: int = 40, masks: bool = True) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train/normal", "test/normal", "test/abnormal"):
        for i in range(n):
            write_png(root / split / f"img{i}.png", rng.integers(0, 255, (size, size), np.uint8))
    if masks:
        for i in range(n):
            m = np.zeros((size, size), np.uint8)
            m[5:15, 5:15] = 255
            write_png(root / "test/masks" / f"img{i}.png", m)
    return root


def test_run_json_contract(tmp_path):
    res = invoke(
        "run",
        "--method",
        "ae",
        "--dataset",
        "synth-brain",
        "--epochs",
        "1",
        *SMALL_OPTS,
        "--out",
        tmp_path,
        "--device",
        "cpu",
        "--json",
    )
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout.strip().splitlines()[-1])
    for key in (
        "image_auroc",
        "image_ap",
        "pixel_auroc",
        "pixel_ap",
        "best_dice",
        "aupro",
        "run_dir",
    ):
        assert key in obj
    assert Path(obj["run_dir"]).is_dir()
    res = invoke("evaluate", obj["run_dir"], "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["image_auroc"] == obj["image_auroc"]
    res = invoke("results", "--results", tmp_path)
    assert res.exit_code == 0 and "synth-brain/ae" in res.stdout


def test_run_with_set_override_and_table(tmp_path):
    res = invoke(
        "run",
        "-m",
        "ae",
        "-d",
        "synth-chest",
        "--epochs",
        "1",
        "--set",
        "latent_size=4",
        *SMALL_OPTS,
        "--out",
        tmp_path,
        "--device",
        "cpu",
    )
    assert res.exit_code == 0, res.output
    assert "Image AUROC" in res.stdout
    (cfg,) = tmp_path.glob("runs/synth-chest/ae/*/config.yaml")
    assert "latent_size: 4" in cfg.read_text()


def test_folder_dataset_from_the_cli(tmp_path):
    root = make_folder_dataset(tmp_path / "mydata")
    res = invoke(
        "run",
        "-m",
        "ae",
        "-d",
        "folder",
        "--data-root",
        root,
        "--epochs",
        "1",
        "--set",
        "batch_size=4",
        "--out",
        tmp_path / "out",
        "--device",
        "cpu",
        "--json",
    )
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout.strip().splitlines()[-1])
    assert "pixel_auroc" in obj


def test_listing_commands():
    res = invoke("methods")
    assert res.exit_code == 0 and "ae" in res.stdout and "reconstruction" in res.stdout
    res = invoke("methods", "--details")
    assert res.exit_code == 0 and "2,351,184" in res.stdout
    res = invoke("datasets")
    assert res.exit_code == 0 and "synth-brain" in res.stdout and "synth-chest" in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "-m", "nope", "-d", "synth-brain"], "unknown method 'nope'"),
        (["run", "-m", "ae", "-d", "nope"], "unknown dataset 'nope'"),
        (["run", "-m", "ae", "-d", "synth-brain", "--set", "latent_size"], "expected key=value"),
        (["run", "-m", "ae", "-d", "synth-brain", "--set", "nope=1"], "nope"),
        (["run", "-m", "ae", "-d", "synth-brain", "--data-option", "colour=1"], "colour"),
        (["run", "-m", "ae", "-d", "folder"], "--data-root"),
        (
            ["run", "-m", "ae", "-d", "folder", "--data-root", "/nonexistent/medad"],
            "/nonexistent/medad",
        ),
        (["run", "-m", "ae", "-d", "synth-brain", "--device", "cuda:x"], "device"),
        (["evaluate", "/nonexistent/run"], "/nonexistent/run"),
        (["methods", "--family", "nope"], "no methods"),
    ],
)
def test_bad_input_is_one_clear_error(args, message, tmp_path):
    res = invoke(*args, "--out", tmp_path) if args[0] == "run" else invoke(*args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output


def test_corrupt_png_is_named(tmp_path):
    root = make_folder_dataset(tmp_path / "d", masks=False)
    bad = root / "test/abnormal/img3.png"
    bad.write_bytes(bad.read_bytes()[:60])
    res = invoke("run", "-m", "ae", "-d", "folder", "--data-root", root, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "img3.png" in res.output, res.output
    assert not (tmp_path / "o" / "runs" / "folder").exists()


def test_mask_of_the_wrong_size_is_named(tmp_path):
    root = make_folder_dataset(tmp_path / "d")
    write_png(root / "test/masks/img2.png", np.zeros((20, 30), np.uint8))
    res = invoke("run", "-m", "ae", "-d", "folder", "--data-root", root, "--out", tmp_path / "o")
    assert res.exit_code == 2, res.output
    assert "img2.png" in res.output and "size" in res.output


def test_anomalies_gallery_command(tmp_path):
    res = invoke(
        "anomalies",
        "--kind",
        "nsa",
        "--dataset",
        "synth-brain",
        "--out",
        tmp_path,
        "--n",
        "4",
        "--size",
        "64",
        *SMALL_OPTS,
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "nsa.png").is_file()
    res = invoke("anomalies", "--kind", "nope", "--out", tmp_path)
    assert res.exit_code == 2 and "unknown generator 'nope'" in res.output
