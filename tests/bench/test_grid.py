"""The grid resumes after SIGKILL with every cell exactly once, and Ray matches in-process."""

from __future__ import annotations

import os
import re
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


SHARED = """\
name: shared-out
seeds: [0, 1, 2]
methods:
  - ae
  - {name: ae, label: ae-z4, set: {latent_size: 4}}
datasets:
  - {name: synth-brain, options: {n_train: 32, n_test_normal: 8, n_test_abnormal: 8, size: 32}}
quick:
  epochs: 1
  dataset_options: {}
"""


def _events(log: Path, kind: str) -> set[str]:
    """Run ids of the cells a bench's stderr reports as `kind` (start / done)."""
    line_of = re.compile(r"^\[\d+/\d+\] (\S+)(?: \([^)]*\))? (\w+)")  # `GridProgress` lines
    found = set()
    for line in log.read_text().splitlines():
        if (m := line_of.match(line)) and m.group(2) == kind:
            found.add(m.group(1))
    return found


def test_two_benches_on_one_out_share_cells_and_survive_a_kill(tmp_path):
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(SHARED)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "medad", "bench", str(cfg), "--quick", "--out", str(out)]
    cmd += ["--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))
        for log in logs
    ]
    a, b = procs
    try:
        deadline = time.time() + 240
        while time.time() < deadline and a.poll() is None and len(_events(logs[0], "done")) < 1:
            time.sleep(0.1)
        assert a.poll() is None, "the first bench finished before it could be killed"
        a.send_signal(signal.SIGKILL)
        a.wait()
        assert b.wait(timeout=300) == 0, logs[1].read_text()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    # the two shared the work: no cell was run by both, except the one the killed bench was
    # training when it died, which the other takes over
    started = [_events(log, "start") for log in logs]
    finished = [_events(log, "done") for log in logs]
    assert finished[0] and finished[1]
    assert started[0] & started[1] <= started[0] - finished[0]
    # at most one cell in flight when it died (none if the kill fell between two cells)
    assert len(started[0] - finished[0]) <= 1
    rows = {r.run_id: r for r in ResultsStore(out).rows()}
    done = {k: r for k, r in rows.items() if r.status == "done"}
    assert finished[0] | finished[1] == set(done)
    for r in done.values():
        assert r.metrics and (out / r.run_dir / "metrics.json").is_file()
    # the cell the killed bench held (if the other did not take it over) is still "running"
    assert all(r.status in ("done", "running") for r in rows.values())

    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    after = ResultsStore(out).rows()
    assert len(after) == 6 and all(r.status == "done" and r.metrics for r in after)
    for r in after:  # finished cells were kept as they were
        if r.run_id in done:
            assert (r.finished, r.metrics) == (done[r.run_id].finished, done[r.run_id].metrics)
    assert len(list((out / "runs").glob("synth-brain/ae/*"))) == 6
    assert ResultsStore(out).leases() == {}


def test_a_resumed_grid_with_a_failed_cell_exits_non_zero(tmp_path):
    from typer.testing import CliRunner

    from medad.cli import app

    cfg = tmp_path / "grid.yaml"
    grid = SHARED.replace("seeds: [0, 1, 2]", "seeds: [0]")
    cfg.write_text(grid.replace("set: {latent_size: 4}", "set: {lr: 1.0e+30}"))  # diverges
    args = ["bench", str(cfg), "--quick", "--out", str(tmp_path / "out"), "--device", "cpu"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 1 and "1 run, 0 skipped, 1 failed" in first.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1, again.output
    assert "0 run, 2 skipped, 0 failed" in again.output
    assert "skip (failed before)" in again.output
    assert "1 cell(s) of the grid failed" in again.output and "--retry-failed" in again.output


def _children(pid: int) -> list[int]:
    """Pool workers (spawned Python processes) whose parent is `pid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds workers in /proc")
def test_workers_of_a_killed_process_grid_exit(tmp_path):
    cfg = tmp_path / "grid.yaml"
    grid = SHARED.replace("seeds: [0, 1, 2]", "seeds: [0]").replace("name: shared-out", "")
    cfg.write_text("name: long\nset: {epochs: 5000}\n" + grid)  # hours: killed long before
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "medad", "bench", str(cfg), "--out", str(out), "--device", "cpu"]
    cmd += ["--executor", "process", "--workers", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            rows = ResultsStore(out).rows() if (out / "results.sqlite").exists() else []
            if len([r for r in rows if r.status == "running"]) == 2:  # both workers train
                workers = _children(proc.pid)
                break
            time.sleep(0.2)
        assert len(workers) == 2, "the workers did not start"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 10
        while time.time() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
            time.sleep(0.1)
        assert not any(Path(f"/proc/{w}").exists() for w in workers), "workers outlived the grid"
    finally:
        for pid in [proc.pid, *workers]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()


WATCHED_CHILD = """\
import ctypes, multiprocessing, sys, time

def child(parent, ready):
    from medad.bench.grid import _exit_with_parent

    def no_prctl(*args, **kwargs):  # as on a system without Linux's parent-death signal
        raise OSError("no prctl here")
    ctypes.CDLL = no_prctl
    _exit_with_parent(parent)
    open(ready, "w").close()
    time.sleep(600)

if __name__ == "__main__":
    import os
    ready = sys.argv[1]
    proc = multiprocessing.get_context("spawn").Process(target=child, args=(os.getpid(), ready))
    proc.start()
    print(proc.pid, flush=True)
    time.sleep(600)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds processes in /proc")
def test_the_parent_watchdog_ends_a_worker_without_the_linux_signal(tmp_path):
    script = tmp_path / "watched.py"
    script.write_text(WATCHED_CHILD)
    ready = tmp_path / "ready"
    cmd = [sys.executable, str(script), str(ready)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not ready.exists():  # its watchdog is armed
            time.sleep(0.1)
        assert ready.exists() and Path(f"/proc/{child}").exists()
        proc.kill()
        proc.wait()
        deadline = time.time() + 10
        while time.time() < deadline and Path(f"/proc/{child}").exists():
            time.sleep(0.1)
        assert not Path(f"/proc/{child}").exists(), "the child outlived its parent"
    finally:
        for pid in (proc.pid, child):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
