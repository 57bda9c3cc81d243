"""Output folders: medad never removes or overwrites a file it did not write (issue 11, item 1).

Every command that writes a folder (report, predict, anomalies, prepare) refuses a non-empty
``--out`` that is not its own earlier output, refuses an ``--out`` in or around a results store,
a run folder or its input, and ``--overwrite`` replaces only what its manifest lists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medad.errors import MedadError
from medad.results.store import STORE_NAME, ResultsStore, RunRow
from medad.runs import RunSpec, execute
from tests.test_cli import invoke

TINY = {"n_train": 16, "n_test_normal": 4, "n_test_abnormal": 4, "size": 64}


def store_with_a_run(root: Path) -> Path:
    """A results store holding one finished run (no run folder: the report notes that)."""
    row = RunRow(
        "synth-brain/ae/0123456789-seed0",
        "ae",
        "synth-brain",
        0,
        "0123456789",
        "done",
        metrics={"image_auroc": 0.75, "image_ap": 0.7},
        config={"method": "ae", "dataset": "synth-brain", "config": {}, "seed": 0},
    )
    ResultsStore(root).put(row)
    return root


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    spec = RunSpec(
        "ae", "synth-brain", overrides={"epochs": 1, "batch_size": 16}, dataset_options=TINY
    )
    return execute(spec, out, device="cpu", progress=False).run_dir


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (64, 64), np.uint8)).save(folder / f"x{i}.png")
    return folder


def predict(run: Path, inp: Path, out: Path, *extra: str):
    return invoke("predict", run, "--input", inp, "--out", out, "--device", "cpu", *extra)


def no_staging(parent: Path) -> bool:
    return not [p.name for p in parent.iterdir() if p.name.startswith(".") and "medad" in p.name]


# --- the cases of issue 11 -------------------------------------------------------------------


def test_report_into_the_results_store_keeps_it(tmp_path):
    results = store_with_a_run(tmp_path / "results")
    res = invoke("report", "--results", results, "--out", results)
    assert res.exit_code == 2, res.output
    assert "results store" in res.output and "Traceback" not in res.output
    assert (results / STORE_NAME).is_file() and len(ResultsStore(results).rows()) == 1
    assert not (results / "index.html").exists()
    # nor inside its own parts, nor a folder holding it
    for inside in (results / "runs" / "x", results / ".cache"):
        res = invoke("report", "--results", results, "--out", inside)
        assert res.exit_code == 2 and "results store" in res.output, res.output
    res = invoke("report", "--results", results, "--out", tmp_path)
    assert res.exit_code == 2, res.output
    assert (results / STORE_NAME).is_file() and sorted(os.listdir(tmp_path)) == ["results"]
    # a new folder beside the store is fine (make demo writes OUT/report)
    res = invoke("report", "--results", results, "--out", results / "report")
    assert res.exit_code == 0, res.output
    assert sorted(os.listdir(results)) == ["report", STORE_NAME]
    assert len(ResultsStore(results).rows()) == 1


def test_predict_into_the_run_folder_keeps_the_checkpoint(trained_run, images):
    before = sorted(os.listdir(trained_run))
    res = predict(trained_run, images, trained_run)
    assert res.exit_code == 2, res.output
    assert "run folder" in res.output and "Traceback" not in res.output
    assert (trained_run / "checkpoint.pt").is_file() and sorted(os.listdir(trained_run)) == before
    res = predict(trained_run, images, trained_run / "pred", "--overwrite")
    assert res.exit_code == 2 and "run folder" in res.output, res.output
    res = predict(trained_run, images, trained_run.parents[2] / "pred")  # OUT/runs/pred
    assert res.exit_code == 2 and "results store" in res.output, res.output
    assert sorted(os.listdir(trained_run)) == before


def test_predict_into_its_input_is_refused(trained_run, images):
    names = sorted(os.listdir(images))
    for out in (images, images / "scores"):
        res = predict(trained_run, images, out)
        assert res.exit_code == 2 and "--input" in res.output, res.output
    assert sorted(os.listdir(images)) == names


def test_report_into_a_folder_with_a_user_file_is_refused(tmp_path):
    results = store_with_a_run(tmp_path / "results")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    for extra in ([], ["--overwrite"]):
        res = invoke("report", "--results", results, "--out", out, *extra)
        assert res.exit_code == 2, res.output
        assert "notes.txt" in res.output and "another --out" in res.output
        assert (out / "notes.txt").read_text() == "my notes"
        assert sorted(os.listdir(out)) == ["notes.txt"]
    assert no_staging(tmp_path)


def test_report_replaces_its_own_output_only_with_overwrite(tmp_path):
    results = store_with_a_run(tmp_path / "results")
    out = tmp_path / "report"
    assert invoke("report", "--results", results, "--out", out).exit_code == 0
    manifest = json.loads((out / ".medad-output.json").read_text())
    assert manifest["command"] == "report" and manifest["files"] == ["index.html"]
    (out / "index.html").write_text("old")
    res = invoke("report", "--results", results, "--out", out)
    assert res.exit_code == 2 and "--overwrite" in res.output, res.output
    assert (out / "index.html").read_text() == "old"
    res = invoke("report", "--results", results, "--out", out, "--overwrite")
    assert res.exit_code == 0, res.output
    assert "<html" in (out / "index.html").read_text()
    assert sorted(os.listdir(tmp_path)) == ["report", "results"]  # nothing left beside


def test_overwrite_with_a_stray_user_file_inside_is_refused(tmp_path):
    results = store_with_a_run(tmp_path / "results")
    out = tmp_path / "report"
    assert invoke("report", "--results", results, "--out", out).exit_code == 0
    (out / "sub").mkdir()
    (out / "sub" / "mine.csv").write_text("1,2")
    res = invoke("report", "--results", results, "--out", out, "--overwrite")
    assert res.exit_code == 2, res.output
    assert "mine.csv" in res.output and "did not write" in res.output
    assert (out / "sub" / "mine.csv").read_text() == "1,2" and (out / "index.html").is_file()
    assert no_staging(tmp_path)


def test_predict_output_of_another_command_is_not_replaced(trained_run, images, tmp_path):
    results = store_with_a_run(tmp_path / "results")
    out = tmp_path / "out"
    assert invoke("report", "--results", results, "--out", out).exit_code == 0
    res = predict(trained_run, images, out, "--overwrite")
    assert res.exit_code == 2 and "medad report" in res.output, res.output
    assert (out / "index.html").is_file() and not (out / "scores.csv").exists()
    res = predict(trained_run, images, tmp_path / "pred")
    assert res.exit_code == 0, res.output
    assert predict(trained_run, images, tmp_path / "pred").exit_code == 2
    res = predict(trained_run, images, tmp_path / "pred", "--overwrite")
    assert res.exit_code == 0, res.output
    listed = json.loads((tmp_path / "pred" / ".medad-output.json").read_text())["files"]
    assert "scores.csv" in listed and any(f.startswith("maps/") for f in listed)


def test_anomalies_adds_galleries_but_replaces_one_only_with_overwrite(tmp_path):
    args = ["anomalies", "--size", "32", "--n", "2", "--data-option", "n_train=8"]
    out = tmp_path / "g"
    out.mkdir()
    (out / "cutpaste.png").write_bytes(b"a user's picture")
    res = invoke(*args, "--kind", "cutpaste", "--out", out, "--overwrite")
    assert res.exit_code == 2 and "cutpaste.png" in res.output, res.output
    assert (out / "cutpaste.png").read_bytes() == b"a user's picture"
    out = tmp_path / "g2"
    assert invoke(*args, "--kind", "cutpaste", "--out", out).exit_code == 0
    assert invoke(*args, "--kind", "nsa", "--out", out).exit_code == 0  # a second kind is added
    first = (out / "cutpaste.png").read_bytes()
    res = invoke(*args, "--kind", "cutpaste", "--seed", "3", "--out", out)
    assert res.exit_code == 2 and "--overwrite" in res.output, res.output
    assert (out / "cutpaste.png").read_bytes() == first
    res = invoke(*args, "--kind", "cutpaste", "--seed", "3", "--out", out, "--overwrite")
    assert res.exit_code == 0, res.output
    assert (out / "cutpaste.png").read_bytes() != first
    listed = json.loads((out / ".medad-output.json").read_text())["files"]
    assert listed == ["cutpaste.png", "nsa.png"]
    assert sorted(os.listdir(out)) == [".medad-output.json", "cutpaste.png", "nsa.png"]


# --- the shared part ---------------------------------------------------------------------------


def test_a_failure_keeps_the_previous_output_and_leaves_no_staging(tmp_path):
    from medad.outputs import output_dir

    out = tmp_path / "o"
    with output_dir(out, "report") as stage:
        (stage / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), output_dir(out, "report", overwrite=True) as stage:
        (stage / "a.txt").write_text("second")
        raise RuntimeError("boom")
    assert (out / "a.txt").read_text() == "first"
    assert sorted(os.listdir(tmp_path)) == ["o"]
    with output_dir(out, "report", overwrite=True) as stage:
        (stage / "b.txt").write_text("second")
    assert sorted(os.listdir(out)) == [".medad-output.json", "b.txt"]
    assert sorted(os.listdir(tmp_path)) == ["o"]


def test_an_empty_folder_is_used_and_a_file_is_not(tmp_path):
    from medad.outputs import output_dir

    (tmp_path / "empty").mkdir()
    with output_dir(tmp_path / "empty", "predict") as stage:
        (stage / "scores.csv").write_text("x")
    assert (tmp_path / "empty" / "scores.csv").is_file()
    (tmp_path / "file").write_text("x")
    with pytest.raises(MedadError, match="not a folder"), output_dir(tmp_path / "file", "predict"):
        pass
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("spelling", [".", "sub/.."])
def test_out_dot_is_refused_without_a_traceback(tmp_path, monkeypatch, spelling):
    results = store_with_a_run(tmp_path / "results")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    res = invoke("report", "--results", results, "--out", spelling)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "current folder" in res.output
    assert sorted(os.listdir(tmp_path)) == ["results", "sub"]


def test_out_x_dotdot_resolves_to_the_folder_it_names(tmp_path):
    results = store_with_a_run(tmp_path / "results")
    (tmp_path / "a" / "x").mkdir(parents=True)
    res = invoke("report", "--results", results, "--out", tmp_path / "a" / "x" / "..")
    assert res.exit_code == 2 and "not empty" in res.output and "x" in res.output, res.output
    (tmp_path / "a" / "x").rmdir()
    res = invoke("report", "--results", results, "--out", tmp_path / "a" / "x" / "..")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a" / "index.html").is_file()


def _deny(monkeypatch, parent: Path) -> None:
    """Make creating anything in `parent` fail as a read-only folder does (root ignores chmod)."""
    real = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if Path(self).parent == parent:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)


def test_out_under_a_read_only_folder_is_a_clear_error(tmp_path, monkeypatch):
    results = store_with_a_run(tmp_path / "results")
    locked = tmp_path / "locked"
    locked.mkdir()
    _deny(monkeypatch, locked)
    res = invoke("report", "--results", results, "--out", locked / "report")
    assert res.exit_code == 2, res.output
    assert f"cannot write to {locked}" in res.output and "permission denied" in res.output
    assert "Traceback" not in res.output


# --- issue 11, item 16: what a run that fails while decoding leaves -------------------------


def test_a_decoding_error_leaves_a_failed_row_and_no_staging_folder(tmp_path):
    from tests.test_cli import make_folder_dataset

    root = make_folder_dataset(tmp_path / "d", masks=False)
    bad = root / "test/abnormal/img3.png"
    bad.write_bytes(bad.read_bytes()[:60])
    out = tmp_path / "o"
    res = invoke("run", "-m", "ae", "-d", "folder", "--data-root", root, "--out", out)
    assert res.exit_code == 2 and "img3.png" in res.output, res.output
    assert not (out / "runs").exists()  # neither a run folder nor an empty runs/.tmp
    (row,) = ResultsStore(out).rows()
    assert row.status == "failed" and "img3.png" in (row.error or "")
    # the train split decoded before the error stays cached for the next try
    assert sorted(os.listdir(out)) == [".cache", STORE_NAME]


def test_a_finished_run_leaves_no_staging_folder(trained_run):
    runs = trained_run.parents[2]
    assert runs.name == "runs" and sorted(os.listdir(runs)) == ["synth-brain"]


def test_overwrite_keeps_a_file_that_appears_meanwhile_and_ignores_paths_outside(tmp_path):
    from medad.outputs import MANIFEST_NAME, output_dir

    out = tmp_path / "o"
    with output_dir(out, "report") as stage:
        (stage / "index.html").write_text("first")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    manifest["files"] += ["../victim.txt", str(victim)]
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    with output_dir(out, "report", overwrite=True) as stage:
        (stage / "index.html").write_text("second")
        (out / "late.txt").write_text("written while the report was built")
    assert (out / "index.html").read_text() == "second"
    assert (out / "late.txt").read_text() == "written while the report was built"
    assert victim.read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["o", "victim.txt"]


def test_a_staging_folder_left_by_a_killed_process_is_removed(tmp_path):
    import socket
    import subprocess
    import sys

    from medad.outputs import output_dir

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    stale = tmp_path / f".o.medad-staging-{host}-{dead.pid}-0000abcd"
    live = tmp_path / f".o.medad-staging-{host}-{os.getpid()}-0000abcd"  # a live process's
    for folder in (stale, live):
        folder.mkdir()
        (folder / "index.html").write_text("half")
    with output_dir(tmp_path / "o", "report") as stage:
        (stage / "index.html").write_text("whole")
    assert not stale.exists() and (live / "index.html").is_file()
