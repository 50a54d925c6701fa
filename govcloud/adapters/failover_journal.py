"""The failover controller's journal: one small SQLite file (``<root>/.govcloud/failover.db``).

It holds the cluster's epoch and primary as the controller last reconciled them, every failover or
switchover run with its steps, and the decision log. A step is marked ``running`` before its side
effect and ``done`` after, so a rerun resumes from the journal instead of promoting twice. It is not
the migration journal (``adapters.journal``): the failover controller runs on its own clock and file.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from govcloud.failover.model import Decision
from govcloud.failover.runbook import Runbook


@dataclass(frozen=True)
class ClusterRow:
    service: str
    primary: str
    epoch: int
    fenced: tuple[str, ...]
    # the highest epoch this journal has recorded or seen in the cluster (not part of the cluster's state)
    high_epoch: int = field(default=0, compare=False)


@dataclass(frozen=True)
class RunRow:
    id: int
    service: str
    kind: str
    old_primary: str
    new_primary: str
    new_epoch: int
    reason: str
    loss_at: float | None
    started_at: float
    finished_at: float | None
    status: str
    rto_s: float | None
    rpo_s: float | None
    rpo_bytes: int | None
    lost_commits: int | None
    error: str
    writable_at: float | None = None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS cluster (service TEXT PRIMARY KEY, primary_site TEXT NOT NULL, epoch INTEGER NOT NULL,
    fenced TEXT NOT NULL DEFAULT '[]', updated_at REAL NOT NULL, high_epoch INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, service TEXT NOT NULL, kind TEXT NOT NULL,
    old_primary TEXT NOT NULL, new_primary TEXT NOT NULL, new_epoch INTEGER NOT NULL, reason TEXT NOT NULL,
    loss_at REAL, started_at REAL NOT NULL, finished_at REAL, status TEXT NOT NULL, rto_s REAL, rpo_s REAL,
    rpo_bytes INTEGER, lost_commits INTEGER, error TEXT NOT NULL DEFAULT '', writable_at REAL,
    UNIQUE (service, new_epoch));
CREATE TABLE IF NOT EXISTS steps (run_id INTEGER NOT NULL, number INTEGER NOT NULL, kind TEXT NOT NULL,
    site TEXT NOT NULL, status TEXT NOT NULL, started_at REAL, finished_at REAL, detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, number));
CREATE TABLE IF NOT EXISTS decisions (id INTEGER PRIMARY KEY, service TEXT NOT NULL, at REAL NOT NULL,
    action TEXT NOT NULL, reason TEXT NOT NULL);
"""


class FailoverJournal:
    """Crash-safe state of the failover controller: the cluster's epoch, runs and their steps, decisions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        cols = {r[1] for r in self.db.execute("PRAGMA table_info(runs)")}
        if "writable_at" not in cols:  # a journal from before the column
            self.db.execute("ALTER TABLE runs ADD COLUMN writable_at REAL")
        if "high_epoch" not in {r[1] for r in self.db.execute("PRAGMA table_info(cluster)")}:
            self.db.execute("ALTER TABLE cluster ADD COLUMN high_epoch INTEGER NOT NULL DEFAULT 0")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One executor at a time (an exclusive flock next to the database)."""
        fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def cluster(self, service: str) -> ClusterRow | None:
        r = self.db.execute("SELECT service, primary_site, epoch, fenced, high_epoch FROM cluster WHERE service = ?",
                            (service,)).fetchone()
        return None if r is None else ClusterRow(r[0], r[1], int(r[2]), tuple(json.loads(r[3])),
                                                 max(int(r[4]), int(r[2])))

    def set_cluster(self, row: ClusterRow, db: sqlite3.Connection | None = None) -> None:
        (db or self.db).execute(
            "INSERT INTO cluster (service, primary_site, epoch, fenced, updated_at, high_epoch) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (service) DO UPDATE SET primary_site = excluded.primary_site, epoch = excluded.epoch, "
            "fenced = excluded.fenced, updated_at = excluded.updated_at, "
            "high_epoch = MAX(cluster.high_epoch, cluster.epoch, excluded.high_epoch)",  # never backwards
            (row.service, row.primary, row.epoch, json.dumps(list(row.fenced)), time.time(),
             max(row.high_epoch, row.epoch)))

    def _run(self, r: Sequence[Any]) -> RunRow:
        return RunRow(*r)

    _RUN_COLS = ("id, service, kind, old_primary, new_primary, new_epoch, reason, loss_at, started_at, finished_at, "
                 "status, rto_s, rpo_s, rpo_bytes, lost_commits, error, writable_at")

    def open_run(self, service: str) -> RunRow | None:
        r = self.db.execute(f"SELECT {self._RUN_COLS} FROM runs WHERE service = ? AND status != 'ok' "
                            "ORDER BY id DESC LIMIT 1", (service,)).fetchone()
        return None if r is None else self._run(r)

    def run_for_epoch(self, service: str, epoch: int) -> RunRow | None:
        r = self.db.execute(f"SELECT {self._RUN_COLS} FROM runs WHERE service = ? AND new_epoch = ?",
                            (service, epoch)).fetchone()
        return None if r is None else self._run(r)

    def runs(self, service: str) -> list[RunRow]:
        return [self._run(r) for r in self.db.execute(f"SELECT {self._RUN_COLS} FROM runs WHERE service = ? "
                                                      "ORDER BY id", (service,)).fetchall()]

    def steps(self, run_id: int) -> list[tuple[int, str, str, str, str]]:
        return [tuple(r) for r in self.db.execute(  # type: ignore[misc]
            "SELECT number, kind, site, status, detail FROM steps WHERE run_id = ? ORDER BY number", (run_id,))]

    def step_status(self, run_id: int, number: int) -> str:
        r = self.db.execute("SELECT status FROM steps WHERE run_id = ? AND number = ?", (run_id, number)).fetchone()
        return "missing" if r is None else str(r[0])

    def mark_step(self, run_id: int, number: int, status: str, detail: str = "") -> None:
        col = "started_at" if status == "running" else "finished_at"
        self.db.execute(f"UPDATE steps SET status = ?, {col} = ?, detail = CASE WHEN ? = '' THEN detail ELSE ? END "
                        "WHERE run_id = ? AND number = ?", (status, time.time(), detail, detail, run_id, number))

    def finish_run(self, run_id: int, status: str, **values: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        self.db.execute(f"UPDATE runs SET status = ?, finished_at = ?{', ' + sets if sets else ''} WHERE id = ?",
                        (status, time.time(), *values.values(), run_id))

    def record_decision(self, service: str, d: Decision) -> None:
        self.db.execute("INSERT INTO decisions (service, at, action, reason) VALUES (?, ?, ?, ?)",
                        (service, d.at, d.action.value, d.reason))


    def record_adoption(self, service: str, line: str, db: sqlite3.Connection) -> None:
        """An adoption of the cluster's state, in the decisions log (inside the caller's transaction)."""
        db.execute("INSERT INTO decisions (service, at, action, reason) VALUES (?, ?, 'adopt', ?)",
                   (service, time.time(), line))

    def start_run(self, service: str, book: Runbook, loss_at: float | None) -> RunRow:
        """A failover run and its pending steps, in one transaction (before any step's side effect)."""
        with self.tx() as db:
            cur_run = db.execute(
                "INSERT INTO runs (service, kind, old_primary, new_primary, new_epoch, reason, loss_at, "
                "started_at, status, rpo_bytes) VALUES (?, 'failover', ?, ?, ?, ?, ?, ?, 'running', ?)",
                (service, book.old_primary, book.new_primary, book.new_epoch, book.reason, loss_at, time.time(),
                 book.max_rpo_bytes))
            run_id = int(cur_run.lastrowid or 0)
            db.executemany("INSERT INTO steps (run_id, number, kind, site, status, detail) "
                           "VALUES (?, ?, ?, ?, 'pending', ?)",
                           [(run_id, s.number, s.kind.value, s.site, s.detail) for s in book.steps])
        run = self.run_for_epoch(service, book.new_epoch)
        assert run is not None
        return run

    def start_switchover(self, row: ClusterRow, target: str, epoch: int) -> RunRow:
        """A planned switchover run, recorded with the cluster's new epoch before anything is stopped."""
        with self.tx() as db:
            db.execute("INSERT INTO runs (service, kind, old_primary, new_primary, new_epoch, reason, started_at, "
                       "status) VALUES (?, 'switchover', ?, ?, ?, ?, ?, 'running')",
                       (row.service, row.primary, target, epoch, f"switch back to {target}", time.time()))
            self.set_cluster(ClusterRow(row.service, target, epoch, (row.primary,)), db)
        run = self.run_for_epoch(row.service, epoch)
        assert run is not None
        return run

    def mark_writable(self, run_id: int) -> None:
        """When the new primary took its first verified write (the end of the RTO clock)."""
        self.db.execute("UPDATE runs SET writable_at = ? WHERE id = ?", (time.time(), run_id))


#: the name the services and tests know it by
Journal = FailoverJournal


def publish_atomic(path: Path, payload: dict[str, Any]) -> None:
    """The exporter's view, replaced atomically (temp file, fsync, rename): a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
