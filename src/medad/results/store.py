"""The SQLite results store: one row per run, under the output root (``results.sqlite``).

Each write is one short transaction (WAL journal, so readers never block a writer and a process
killed mid-write leaves the previous state intact). Run folders are stored relative to the store's
folder, so a whole output root can be moved or copied.

Several processes (two ``medad bench`` on one ``--out``, the workers of a grid) share a store
safely through *leases*: a process claims a run in one ``BEGIN IMMEDIATE`` transaction, recording
its host, pid and start time, and renews the lease while it works. Another process skips a run
whose lease is live and takes over a stale one: on the same host, one whose pid is gone (killed);
on any host, one not renewed for `lease_timeout` seconds (a lost host, or a pid reused by another
program). A ``done`` row is only ever replaced by another ``done`` row (a complete result), never
by ``running`` or ``failed``.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medad.atomic import pid_alive
from medad.errors import MedadError, no_space_error

STORE_NAME = "results.sqlite"

#: seconds without renewal after which a lease held on another host counts as abandoned; a live
#: holder renews every ``lease_timeout / 10`` seconds, so only a dead or cut-off host misses it
LEASE_TIMEOUT = 600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    method      TEXT NOT NULL,
    dataset     TEXT NOT NULL,
    seed        INTEGER NOT NULL,
    config_hash TEXT NOT NULL,
    status      TEXT NOT NULL,
    run_dir     TEXT,
    metrics     TEXT NOT NULL DEFAULT '{}',
    config      TEXT NOT NULL DEFAULT '{}',
    error       TEXT,
    started     REAL,
    finished    REAL,
    seconds     REAL,
    tag         TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_cell ON runs (method, dataset, config_hash, seed);
CREATE TABLE IF NOT EXISTS leases (
    run_id      TEXT PRIMARY KEY,
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    started     REAL NOT NULL,
    renewed     REAL NOT NULL
);
"""

#: columns added after the first release: (name, SQL definition), added to older stores on open
_ADDED_COLUMNS = (("environment", "TEXT NOT NULL DEFAULT '{}'"),)
_COLUMNS = (
    "run_id method dataset seed config_hash status run_dir metrics config error started finished "
    "seconds tag environment"
).split()


@dataclass
class RunRow:
    run_id: str
    method: str
    dataset: str
    seed: int
    config_hash: str
    status: str  # "running" | "done" | "failed"
    run_dir: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    started: float | None = None
    finished: float | None = None
    seconds: float | None = None
    tag: str | None = None
    #: library versions, device, threads, determinism flags (not part of the config hash)
    environment: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Lease:
    """Who works on a run: host, pid, when it started and when it last said it was alive."""

    host: str
    pid: int
    started: float
    renewed: float

    def __str__(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"{self.host} pid {self.pid} since {since}"


@dataclass(frozen=True)
class Claim:
    """What `ResultsStore.claim` found: ``claimed`` (the run is ours now), ``done`` (finished:
    `row` holds it) or ``elsewhere`` (`lease` is another live process's)."""

    outcome: Literal["claimed", "done", "elsewhere"]
    row: RunRow | None = None
    lease: Lease | None = None


class ResultsStore:
    """Open (and create if needed) the store in folder `root`."""

    def __init__(self, root: Path, *, lease_timeout: float = LEASE_TIMEOUT) -> None:
        self.root = Path(root)
        self.path = self.root / STORE_NAME
        self.lease_timeout = lease_timeout
        self.host, self.pid = socket.gethostname(), os.getpid()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with self._connect() as con:
                con.executescript(_SCHEMA)
                have = {r[1] for r in con.execute("PRAGMA table_info(runs)")}
                for name, definition in _ADDED_COLUMNS:
                    if name not in have:
                        con.execute(f"ALTER TABLE runs ADD COLUMN {name} {definition}")
        except MedadError:
            raise
        except (OSError, sqlite3.DatabaseError) as exc:
            full = no_space_error(exc, self.path)
            if full is not None:
                raise full from exc
            if isinstance(exc, OSError):
                raise
            raise MedadError(f"{self.path}: not a medad results store ({exc})") from exc

    @contextmanager
    def _connect(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction; `immediate` takes the write lock at once (read-check-write atomic).

        A full disk surfaces as "no space left on device" and the transaction is rolled back."""
        con = sqlite3.connect(self.path, timeout=60)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            if immediate:
                con.execute("BEGIN IMMEDIATE")
            with con:
                yield con
        except sqlite3.OperationalError as exc:
            full = no_space_error(exc, self.path)
            if full is not None:
                raise full from exc
            raise
        finally:
            con.close()

    @staticmethod
    def _write(con: sqlite3.Connection, row: RunRow) -> None:
        values = {
            **row.__dict__,
            "metrics": json.dumps(row.metrics),
            "config": json.dumps(row.config),
            "environment": json.dumps(row.environment),
        }
        con.execute(
            f"INSERT OR REPLACE INTO runs ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_COLUMNS))})",
            tuple(values[c] for c in _COLUMNS),
        )

    def put(self, row: RunRow) -> None:
        """Insert or replace the row with this run id (no lease check: for metadata updates)."""
        with self._connect() as con:
            self._write(con, row)

    def _lease(self, con: sqlite3.Connection, run_id: str) -> Lease | None:
        found = con.execute(
            "SELECT host, pid, started, renewed FROM leases WHERE run_id = ?", (run_id,)
        ).fetchone()
        return Lease(*found) if found else None

    def _mine(self, lease: Lease) -> bool:
        return lease.host == self.host and lease.pid == self.pid

    def is_live(self, lease: Lease, now: float | None = None) -> bool:
        """Held by a process that still works on it: renewed within `lease_timeout` seconds and,
        on this host, its pid runs (a killed holder is seen at once; a reused pid by the lack of
        renewals)."""
        fresh = (now if now is not None else time.time()) - lease.renewed < self.lease_timeout
        return fresh and (lease.host != self.host or pid_alive(lease.pid))

    def _finished(self, row: RunRow | None) -> bool:
        return bool(
            row is not None
            and row.status == "done"
            and row.run_dir
            and (self.root / row.run_dir).is_dir()
        )

    def claim(self, row: RunRow, *, force: bool = False) -> Claim:
        """Atomically take the lease of `row.run_id` for this process, unless the run is finished
        (and not `force`) or another live process holds it; a stale lease is taken over.

        A claimed run that is not finished gets `row` as its ``running`` row; a finished one
        (`force`) keeps its ``done`` row until the new result replaces it."""
        with self._connect(immediate=True) as con:
            current = self._get(con, row.run_id)
            if self._finished(current) and not force:
                return Claim("done", row=current)
            lease = self._lease(con, row.run_id)
            if lease is not None and not self._mine(lease) and self.is_live(lease):
                return Claim("elsewhere", lease=lease)
            now = time.time()
            con.execute(
                "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?)",
                (row.run_id, self.host, self.pid, now, now),
            )
            if current is None or current.status != "done":
                row.status, row.started = "running", now
                self._write(con, row)
            return Claim("claimed")

    def finish(self, row: RunRow) -> bool:
        """Record a finished (``done``) or ``failed`` run and release this process's lease.

        A ``failed`` row never replaces a ``done`` one, nor a run another live process holds;
        returns whether the row was written."""
        with self._connect(immediate=True) as con:
            lease = self._lease(con, row.run_id)
            current = self._get(con, row.run_id)
            if lease is not None and (self._mine(lease) or not self.is_live(lease)):
                con.execute("DELETE FROM leases WHERE run_id = ?", (row.run_id,))
                lease = None
            if row.status != "done" and (
                (current is not None and current.status == "done") or lease is not None
            ):
                return False
            if row.started is None and current is not None:
                row.started = current.started
            self._write(con, row)
            return True

    def release(self, run_id: str) -> None:
        """Give up this process's lease on `run_id` (nothing else changes)."""
        with self._connect(immediate=True) as con:
            con.execute(
                "DELETE FROM leases WHERE run_id = ? AND host = ? AND pid = ?",
                (run_id, self.host, self.pid),
            )

    def leases(self) -> dict[str, Lease]:
        """Every lease, by run id (live or not)."""
        with self._connect() as con:
            rows = con.execute("SELECT run_id, host, pid, started, renewed FROM leases")
            return {r[0]: Lease(*r[1:]) for r in rows.fetchall()}

    def renew(self) -> None:
        """Tell other processes that this one still works on the runs it holds."""
        with self._connect() as con:
            con.execute(
                "UPDATE leases SET renewed = ? WHERE host = ? AND pid = ?",
                (time.time(), self.host, self.pid),
            )

    @contextmanager
    def keep_alive(self) -> Iterator[None]:
        """Renew this process's leases in the background while the block runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.lease_timeout / 10):
                try:
                    self.renew()
                except Exception:  # noqa: BLE001 - a missed beat only risks a takeover
                    pass

        thread = threading.Thread(target=beat, name="medad-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _get(self, con: sqlite3.Connection, run_id: str) -> RunRow | None:
        rows = self._select(con, "SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return rows[0] if rows else None

    @staticmethod
    def _select(con: sqlite3.Connection, sql: str, args: tuple) -> list[RunRow]:
        cur = con.execute(sql, args)
        names = [d[0] for d in cur.description]
        out = []
        for values in cur.fetchall():
            d = dict(zip(names, values, strict=True))
            for key in ("metrics", "config", "environment"):
                d[key] = json.loads(d[key])
            out.append(RunRow(**d))
        return out

    def get(self, run_id: str) -> RunRow | None:
        rows = self.rows(run_id=run_id)
        return rows[0] if rows else None

    def rows(self, **where: Any) -> list[RunRow]:
        """Rows matching every ``column=value`` given, oldest first."""
        allowed = {"run_id", "method", "dataset", "seed", "config_hash", "status", "tag"}
        bad = set(where) - allowed
        if bad:
            raise MedadError(f"cannot filter results by {', '.join(sorted(bad))}")
        clause = " AND ".join(f"{k} = ?" for k in where)
        sql = "SELECT * FROM runs" + (f" WHERE {clause}" if clause else "") + " ORDER BY started"
        with self._connect() as con:
            return self._select(con, sql, tuple(where.values()))

    def run_path(self, row: RunRow) -> Path | None:
        return self.root / row.run_dir if row.run_dir else None


class ReadOnlyStore(ResultsStore):
    """A store opened for reading only (``medad results``, ``table``, ``report``): creates,
    migrates and changes nothing, so a store on a read-only mount or in a folder without write
    permission can still be read.

    Where the file can be written it is opened as usual (so SQLite tidies its ``-wal``/``-shm``
    files on close), yet only read. Otherwise it is opened read-only, and where SQLite cannot even
    create the ``-shm`` index a WAL store needs (a read-only folder), as immutable: right for a
    store whose writers have finished (a copy, an archive); it may miss a live writer's last rows.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / STORE_NAME
        if not self.path.is_file():
            raise MedadError(f"{self.path}: no results store here")
        try:
            open(self.path, "rb").close()
        except OSError as exc:
            raise MedadError(f"cannot read {self.path}: {(exc.strerror or '').lower()}") from None
        error: sqlite3.DatabaseError | None = None
        for mode in ("mode=rw", "mode=ro", "immutable=1"):
            self._uri = f"{self.path.resolve().as_uri()}?{mode}"
            try:
                with self._connect() as con:
                    con.execute("SELECT run_id FROM runs LIMIT 1").fetchall()
                return
            except sqlite3.OperationalError as exc:
                error = exc  # e.g. no -shm index beside a WAL store: try immutable
            except sqlite3.DatabaseError as exc:
                error = exc
                break
        raise MedadError(f"{self.path}: not a medad results store ({error})") from error

    @contextmanager
    def _connect(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        if immediate:
            raise MedadError(f"{self.path}: opened read-only")
        con = sqlite3.connect(self._uri, uri=True, timeout=60)
        try:
            with con:
                yield con
        finally:
            con.close()

    def put(self, row: RunRow) -> None:
        raise MedadError(f"{self.path}: opened read-only, cannot record {row.run_id}")
