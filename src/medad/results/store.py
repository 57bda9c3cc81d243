"""The SQLite results store: one row per run, under the output root (``results.sqlite``).

Each write is one short transaction (WAL journal, so readers never block a writer and a process
killed mid-write leaves the previous state intact). Run folders are stored relative to the store's
folder, so a whole output root can be moved or copied.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medad.errors import MedadError

STORE_NAME = "results.sqlite"

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
"""


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


class ResultsStore:
    """Open (and create if needed) the store in folder `root`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / STORE_NAME
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect() as con:
                con.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise MedadError(f"{self.path}: not a medad results store ({exc})") from exc

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=60)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            with con:
                yield con
        finally:
            con.close()

    def put(self, row: RunRow) -> None:
        """Insert or replace the row with this run id."""
        with self._connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.run_id,
                    row.method,
                    row.dataset,
                    row.seed,
                    row.config_hash,
                    row.status,
                    row.run_dir,
                    json.dumps(row.metrics),
                    json.dumps(row.config),
                    row.error,
                    row.started,
                    row.finished,
                    row.seconds,
                    row.tag,
                ),
            )

    def mark_running(self, row: RunRow) -> None:
        row.status, row.started = "running", time.time()
        self.put(row)

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
            cur = con.execute(sql, tuple(where.values()))
            names = [d[0] for d in cur.description]
            out = []
            for values in cur.fetchall():
                d = dict(zip(names, values, strict=True))
                d["metrics"] = json.loads(d["metrics"])
                d["config"] = json.loads(d["config"])
                out.append(RunRow(**d))
            return out

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
