"""Reading a results store that cannot be written, and writing where one may not (issue 11, 14).

The commands run in a subprocess as a user without write permission: as root (who ignores
permissions) through ``setpriv`` as ``nobody``, otherwise as the current user after ``chmod``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from medad.errors import MedadError
from medad.results.store import STORE_NAME, ReadOnlyStore
from tests.test_outputs import store_with_a_run

NOBODY = 65534


def as_reader(*args: object) -> subprocess.CompletedProcess[str]:
    """``medad ARGS`` run by a user who cannot write the folders made read-only below."""
    cmd = [sys.executable, "-m", "medad", *map(str, args)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot act as an unprivileged user")
        cmd = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
    env = {**os.environ, "HOME": tempfile.gettempdir(), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder every user can enter (pytest's tmp_path is private to its owner)."""
    folder = Path(tempfile.mkdtemp(prefix="medad-ro-"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    shutil.rmtree(folder)


def read_only(folder: Path) -> None:
    for path in [*folder.rglob("*"), folder]:
        path.chmod(0o555 if path.is_dir() else 0o444)


def test_results_table_and_report_read_a_read_only_store(shared):
    results = store_with_a_run(shared / "results")
    read_only(results)
    before = sorted(os.listdir(results))
    res = as_reader("results", "--results", results, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[0])["run_id"] == "synth-brain/ae/0123456789-seed0"
    res = as_reader("table", "--results", results, "--format", "csv")
    assert res.returncode == 0 and "ae" in res.stdout, res.stderr
    writable = shared / "reports"
    writable.mkdir()
    writable.chmod(0o777)
    res = as_reader("report", "--results", results, "--out", writable / "r")
    assert res.returncode == 0, res.stderr
    assert (writable / "r" / "index.html").is_file()
    assert sorted(os.listdir(results)) == before == [STORE_NAME]  # no -wal, -shm, cache


def test_out_under_a_read_only_folder_is_one_clear_line(shared):
    results = store_with_a_run(shared / "results")
    experiment = shared / "exp.yaml"
    experiment.write_text("name: e\nmethods: [ae]\ndatasets: [synth-brain]\nseeds: [0]\n")
    locked = shared / "locked"
    locked.mkdir()
    read_only(locked)
    for args in (
        ["report", "--results", results, "--out", locked / "report"],
        ["bench", experiment, "--quick", "--out", locked / "grid"],
        ["run", "-m", "ae", "-d", "synth-brain", "--epochs", "1", "--out", locked / "runs"],
        ["anomalies", "--kind", "nsa", "--size", "32", "--n", "1", "--out", locked / "g"],
    ):
        res = as_reader(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert f"cannot write to {locked}: permission denied" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
    assert os.listdir(locked) == []


def test_read_only_store_creates_and_changes_nothing(tmp_path):
    with pytest.raises(MedadError, match="no results store"):
        ReadOnlyStore(tmp_path / "none")
    assert not (tmp_path / "none").exists()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / STORE_NAME).write_text("not a database, only text" * 10)
    with pytest.raises(MedadError, match="not a medad results store"):
        ReadOnlyStore(tmp_path / "bad")
    store = ReadOnlyStore(store_with_a_run(tmp_path / "s"))
    content = (tmp_path / "s" / STORE_NAME).read_bytes()
    row = store.rows()[0]
    assert row.method == "ae" and row.metrics["image_auroc"] == 0.75
    with pytest.raises(MedadError, match="read-only"):
        store.put(row)
    assert os.listdir(tmp_path / "s") == [STORE_NAME]
    assert (tmp_path / "s" / STORE_NAME).read_bytes() == content
