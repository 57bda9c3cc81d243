"""The store's leases: one process per run, stale claims taken over, a done row never lost."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest

from medad.results.store import ResultsStore, RunRow


def _row(status: str = "running", run_id: str = "synth-brain/ae/abc-seed0") -> RunRow:
    return RunRow(run_id, "ae", "synth-brain", 0, "abc", status)


def _as(store: ResultsStore, *, host: str | None = None, pid: int | None = None) -> ResultsStore:
    """The same store as seen by another process (another pid and/or host)."""
    other = ResultsStore(store.root, lease_timeout=store.lease_timeout)
    other.host = host or store.host
    other.pid = pid if pid is not None else store.pid
    return other


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _done(store: ResultsStore, row: RunRow, auroc: float) -> RunRow:
    row.status, row.run_dir, row.metrics = "done", "runs/x", {"image_auroc": auroc}
    (store.root / "runs" / "x").mkdir(parents=True, exist_ok=True)
    return row


def test_a_live_claim_is_not_taken_and_a_dead_one_is(tmp_path):
    store = ResultsStore(tmp_path)
    alive = _as(store, pid=os.getppid())  # a process of this host that runs
    assert alive.claim(_row()).outcome == "claimed"
    claim = store.claim(_row())
    assert claim.outcome == "elsewhere" and claim.lease.pid == os.getppid()
    assert f"pid {os.getppid()}" in str(claim.lease)

    dead = _as(store, pid=_dead_pid())
    assert dead.claim(_row("running", "other-run")).outcome == "claimed"
    assert store.claim(_row("running", "other-run")).outcome == "claimed"
    assert store.leases()["other-run"].pid == os.getpid()


def test_a_claim_of_a_reused_pid_goes_stale_when_not_renewed(tmp_path):
    store = ResultsStore(tmp_path, lease_timeout=0.3)
    assert _as(store, pid=os.getppid()).claim(_row()).outcome == "claimed"
    time.sleep(0.4)  # the pid runs, but its holder would have renewed the claim by now
    assert store.claim(_row()).outcome == "claimed"


def test_another_hosts_claim_goes_stale_when_not_renewed(tmp_path):
    store = ResultsStore(tmp_path, lease_timeout=0.5)
    far = _as(store, host="another-host")
    assert far.claim(_row()).outcome == "claimed"
    assert store.claim(_row()).outcome == "elsewhere"
    with far.keep_alive():  # renewed every lease_timeout / 10
        time.sleep(0.8)
        assert store.claim(_row()).outcome == "elsewhere"
    time.sleep(0.6)
    assert store.claim(_row()).outcome == "claimed"


def test_a_done_row_is_never_replaced_by_running_or_failed(tmp_path):
    store = ResultsStore(tmp_path)
    assert store.claim(_row()).outcome == "claimed"
    assert store.get(_row().run_id).status == "running"
    assert store.finish(_done(store, _row(), 0.9))
    assert store.leases() == {}

    other = _as(store, pid=_dead_pid())
    claim = other.claim(_row())
    assert claim.outcome == "done" and claim.row.metrics == {"image_auroc": 0.9}
    failed = _row("failed")
    failed.error = "boom"
    assert not other.finish(failed)
    # forced: the lease is taken but the done row stays until the new result is complete
    assert store.claim(_row(), force=True).outcome == "claimed"
    assert store.get(_row().run_id).status == "done"
    assert not store.finish(failed)
    assert store.get(_row().run_id).metrics == {"image_auroc": 0.9}
    assert store.claim(_row(), force=True).outcome == "claimed"
    assert store.finish(_done(store, _row(), 0.8))
    assert store.get(_row().run_id).metrics == {"image_auroc": 0.8}


def test_failure_is_not_recorded_over_a_run_another_process_took_over(tmp_path):
    store = ResultsStore(tmp_path)
    alive = _as(store, pid=os.getppid())
    assert alive.claim(_row()).outcome == "claimed"
    failed = _row("failed")
    assert not store.finish(failed)  # e.g. a pool's parent reporting a worker that died
    assert store.get(_row().run_id).status == "running"
    assert alive.finish(failed)
    assert store.get(_row().run_id).status == "failed" and store.leases() == {}


def test_a_store_of_an_earlier_release_opens_and_gains_new_columns(tmp_path):
    con = sqlite3.connect(tmp_path / "results.sqlite")
    con.executescript(
        """CREATE TABLE runs (run_id TEXT PRIMARY KEY, method TEXT NOT NULL,
        dataset TEXT NOT NULL, seed INTEGER NOT NULL, config_hash TEXT NOT NULL,
        status TEXT NOT NULL, run_dir TEXT, metrics TEXT NOT NULL DEFAULT '{}',
        config TEXT NOT NULL DEFAULT '{}', error TEXT, started REAL, finished REAL,
        seconds REAL, tag TEXT);
        INSERT INTO runs (run_id, method, dataset, seed, config_hash, status, metrics)
        VALUES ('a/ae/h-seed0', 'ae', 'a', 0, 'h', 'done', '{"image_auroc": 0.5}');"""
    )
    con.commit()
    con.close()
    (row,) = ResultsStore(tmp_path).rows()
    assert row.metrics == {"image_auroc": 0.5} and row.environment == {}


@pytest.mark.parametrize("message", ["database or disk is full", "disk I/O error"])
def test_a_full_disk_is_named_and_the_store_left_as_it_was(tmp_path, monkeypatch, message):
    import medad.errors

    store = ResultsStore(tmp_path)
    store.put(_done(store, _row(), 0.9))
    real_connect = sqlite3.connect

    class FullDisk:
        def __init__(self, con):
            self.con = con

        def execute(self, sql, *args):
            if sql.startswith(("INSERT", "UPDATE", "DELETE")):
                raise sqlite3.OperationalError(message)
            return self.con.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.con, name)

        def __enter__(self):
            return self.con.__enter__()

        def __exit__(self, *exc):
            return self.con.__exit__(*exc)

    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: FullDisk(real_connect(*a, **k)))
    # a disk I/O error is a full disk only when the disk has (almost) no room left
    monkeypatch.setattr(medad.errors, "_free_bytes", lambda path: 0)
    with pytest.raises(medad.errors.MedadError, match=r"^no space left on device: .*results"):
        store.finish(_done(store, _row(), 0.1))
    with pytest.raises(medad.errors.MedadError, match="no space left on device"):
        store.claim(_row("running", "another"))
    monkeypatch.setattr(sqlite3, "connect", real_connect)
    (row,) = store.rows()
    assert row.status == "done" and row.metrics == {"image_auroc": 0.9}
    assert store.leases() == {}
