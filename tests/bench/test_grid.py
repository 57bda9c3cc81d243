"""The grid resumes after SIGKILL with every cell exactly once, and Ray matches in-process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from medad.bench import plan_cells, run_grid
from medad.bench.config import parse_experiment
from medad.results.store import ResultsStore

GRID = """\
name: resume-test
seeds: [0, 1]
methods:
  - ae
  - {name: ae, label: ae-z4, set: {latent_size: 4}}
datasets:
  - {name: synth-brain, options: {n_train: 48, n_test_normal: 12, n_test_abnormal: 12, size: 64}}
  - {name: synth-chest, options: {n_train: 48, n_test_normal: 12, n_test_abnormal: 12, size: 64}}
quick:
  epochs: 1
  dataset_options: {}
"""


def _done_rows(out: Path) -> list:
    if not (out / "results.sqlite").exists():
        return []
    return [r for r in ResultsStore(out).rows() if r.status == "done"]


def test_killed_grid_resumes_with_every_cell_exactly_once(tmp_path):
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(GRID)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "medad",
        "bench",
        str(cfg),
        "--quick",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(_done_rows(out)) < 2 and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the grid finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = {r.run_id for r in _done_rows(out)}
    assert 2 <= len(finished_before) < 8

    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert f"{len(finished_before)} skipped" in res.stderr

    rows = ResultsStore(out).rows()
    assert len(rows) == 8 and all(r.status == "done" for r in rows)
    assert len({r.run_id for r in rows}) == 8
    # finished cells were kept, not re-run
    for row in rows:
        assert (out / row.run_dir / "metrics.json").is_file()
    run_dirs = list((out / "runs").glob("synth-*/ae/*"))
    assert len(run_dirs) == 8
    assert not (out / "runs" / ".tmp").exists()  # staging folders and their empty parent are gone
    # a third run does nothing
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "0 run, 8 skipped" in res.stderr


def test_failed_cells_are_kept_and_retried_when_asked(tmp_path):
    exp = parse_experiment(GRID.replace("seeds: [0, 1]", "seeds: [0]"))
    cells = plan_cells(exp, quick=True)[:1]
    cells[0].planned.config.lr = 1e30  # this cell diverges
    summary = run_grid(cells, tmp_path, device="cpu")
    assert len(summary.failed) == 1
    assert len(run_grid(cells, tmp_path, device="cpu").skipped) == 1
    cells[0].planned.config.lr = 1e-3
    summary = run_grid(cells, tmp_path, device="cpu", retry_failed=True)
    assert summary.done == [cells[0].run_id]
    assert [r.status for r in ResultsStore(tmp_path).rows()] == ["done"]


@pytest.mark.parametrize("executor", ["process", "ray"])
def test_parallel_executors_match_in_process(executor, tmp_path):
    if executor == "ray":
        pytest.importorskip("ray")
    exp = parse_experiment(GRID.replace("seeds: [0, 1]", "seeds: [0]"))
    cells = plan_cells(exp, quick=True)[:2]
    # same thread count as each worker (1 CPU per cell), so results are bit-identical
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = run_grid(cells, tmp_path / "local", device="cpu")
    finally:
        torch.set_num_threads(threads)
    other = run_grid(
        cells, tmp_path / executor, executor=executor, workers=os.cpu_count() or 1, device="cpu"
    )
    assert sorted(local.done) == sorted(other.done) and not other.failed
    a = {r.run_id: r.metrics for r in ResultsStore(tmp_path / "local").rows()}
    b = {r.run_id: r.metrics for r in ResultsStore(tmp_path / executor).rows()}
    assert a == b
    for row in ResultsStore(tmp_path / executor).rows():
        assert (tmp_path / executor / row.run_dir / "predictions.npz").is_file()
