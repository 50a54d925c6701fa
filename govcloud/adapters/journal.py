"""The migration journal: one SQLite file (WAL, ``synchronous=FULL``) that makes a migration resumable
and auditable.

What it holds: runs; each system's state (``govcloud.migrate.state``) with every transition written as
an *intent* before the side effect and an *outcome* after it (a crash leaves an intent without outcome,
which is the evidence resume needs); per-step facts (bytes transferred, manifest digests, server ids,
downtime); wave locks (one row per plan+wave naming the holder's pid, host, user and start, so a second
run is refused by name and a dead holder's lock can be taken over); and the hash-chained audit log
(``govcloud.migrate.auditchain``). Every write is one ``BEGIN IMMEDIATE`` transaction, so the state
change and its audit record land together or not at all.

The schema is versioned with ``PRAGMA user_version`` and migrated forward on open; a journal written by
a newer govcloud is refused rather than misread.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import sqlite3
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from govcloud.errors import JournalError, WaveLockedError
from govcloud.migrate.auditchain import GENESIS, AuditRecord, ChainReport, record_hash, verify_chain
from govcloud.migrate.state import Action, Event, State, Status, apply

ENV_JOURNAL = "GOVCLOUD_JOURNAL"
DEFAULT_RELATIVE = Path(".govcloud") / "journal.sqlite"

# Forward-only schema migrations: MIGRATIONS[i] takes user_version i to i + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: the base tables
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY, plan TEXT NOT NULL, wave INTEGER NOT NULL, command TEXT NOT NULL,
            status TEXT NOT NULL, actor TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL,
            started_at TEXT NOT NULL, finished_at TEXT)""",
        """CREATE TABLE systems (
            plan TEXT NOT NULL, system TEXT NOT NULL, wave INTEGER NOT NULL, state TEXT NOT NULL,
            last_good TEXT NOT NULL, run_id TEXT, updated_at TEXT NOT NULL, PRIMARY KEY (plan, system))""",
        """CREATE TABLE transitions (
            id INTEGER PRIMARY KEY AUTOINCREMENT, intent_id INTEGER REFERENCES transitions(id),
            run_id TEXT NOT NULL, plan TEXT NOT NULL, system TEXT NOT NULL, action TEXT NOT NULL,
            phase TEXT NOT NULL CHECK (phase IN ('intent', 'outcome')), from_state TEXT NOT NULL,
            to_state TEXT, result TEXT NOT NULL, detail TEXT NOT NULL, at TEXT NOT NULL)""",
        """CREATE TABLE facts (
            id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, plan TEXT NOT NULL, system TEXT NOT NULL,
            step TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, at TEXT NOT NULL)""",
        """CREATE TABLE locks (
            plan TEXT NOT NULL, wave INTEGER NOT NULL, run_id TEXT NOT NULL, pid INTEGER NOT NULL,
            host TEXT NOT NULL, user TEXT NOT NULL, started_at TEXT NOT NULL, PRIMARY KEY (plan, wave))""",
        """CREATE TABLE audit (
            seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
            target TEXT NOT NULL, result TEXT NOT NULL, detail TEXT NOT NULL,
            prev_hash TEXT NOT NULL, hash TEXT NOT NULL)""",
        """CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL)""",
    ),
    (  # 2: pid reuse safety for locks (process start time) and lookup indexes
        "ALTER TABLE locks ADD COLUMN pid_starttime INTEGER",
        "CREATE INDEX facts_by_system ON facts (plan, system, key)",
        "CREATE INDEX transitions_by_system ON transitions (plan, system)",
        "CREATE INDEX audit_by_target ON audit (target)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def journal_path(root: Path, override: Path | str | None = None) -> Path:
    """``override``, else ``$GOVCLOUD_JOURNAL``, else ``<root>/.govcloud/journal.sqlite``."""
    chosen = override or os.environ.get(ENV_JOURNAL)
    return Path(chosen) if chosen else root / DEFAULT_RELATIVE


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def process_starttime(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), ``None`` if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def pid_alive(pid: int, starttime: int | None) -> bool:
    """Alive and the same process (a recycled pid has another start time)."""
    current = process_starttime(pid)
    return current is not None and (starttime is None or current == starttime)


@dataclass(frozen=True)
class LockHolder:
    plan: str
    wave: int
    run_id: str
    pid: int
    host: str
    user: str
    started_at: str
    pid_starttime: int | None = None

    def describe(self) -> str:
        return (f"run {self.run_id} (pid {self.pid} on host {self.host}, user {self.user}, "
                f"since {self.started_at})")

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def lock_refusal(holder: LockHolder, *, this_host: str) -> WaveLockedError:
    """The error a second run of the same wave gets (pure: unit-tested for its wording)."""
    if holder.host == this_host:
        hint = (f"wait for it to finish, or stop it (kill {holder.pid}) and run again: a lock whose process "
                "is gone is taken over automatically")
    else:
        hint = (f"the holder runs on another host ({holder.host}); wait for it, or if it is certainly dead "
                "take the lock over explicitly (steal=True / --steal-lock)")
    return WaveLockedError(f"wave {holder.wave} of plan {holder.plan} is already being migrated by {holder.describe()}",
                           hint=hint, holder=holder.as_dict())


class Journal:
    """An open journal. Not thread-safe: one per thread (SQLite serialises writers across connections)."""

    def __init__(self, path: Path, *, actor: str | None = None, create: bool = True) -> None:
        self.path = path
        self.actor = actor or default_actor()
        if not create and not path.exists():
            raise JournalError(f"no journal at {path}", hint="run a migration first, or pass --journal PATH")
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(str(path), isolation_level=None, timeout=30.0)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open journal {path}: {exc}") from exc
        self._db.row_factory = sqlite3.Row
        self._depth = 0
        try:
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"journal {path}: SQLite refused WAL mode (got {mode})",
                                   hint="put the journal on a local filesystem")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise JournalError(f"journal {path} is not a readable SQLite database: {exc}") from exc
        except JournalError:
            self._db.close()
            raise

    # ------------------------------------------------------------ plumbing

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def pragma(self, name: str) -> Any:
        return self._db.execute(f"PRAGMA {name}").fetchone()[0]

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: the write lock up front); nests by joining."""
        if self._depth:
            self._depth += 1
            try:
                yield self._db
            finally:
                self._depth -= 1
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise JournalError(f"journal {self.path} is busy: {exc}", hint="another govcloud holds it; retry") from exc
        self._depth = 1
        try:
            yield self._db
        except BaseException:
            self._depth = 0
            self._db.execute("ROLLBACK")
            raise
        self._depth = 0
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise JournalError(f"cannot commit to journal {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise JournalError(f"journal {self.path} has schema version {version}; this govcloud knows up to "
                               f"{SCHEMA_VERSION}", hint="upgrade govcloud (journals are migrated forward only)")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._tx() as db:
                if int(db.execute("PRAGMA user_version").fetchone()[0]) >= target:  # another process did it
                    continue
                for statement in MIGRATIONS[target - 1]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {target}")

    # ------------------------------------------------------------ audit

    def _append_audit(self, action: str, target: str, result: str, detail: Mapping[str, Any] | None = None) -> AuditRecord:
        with self._tx() as db:
            row = db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            seq, prev = (int(row["seq"]) + 1, str(row["hash"])) if row else (1, GENESIS)
            rec = AuditRecord(seq=seq, at=now(), actor=self.actor, action=action, target=target, result=result,
                              detail=dict(detail or {}), prev_hash=prev)
            h = record_hash(prev, rec.body())
            db.execute("INSERT INTO audit (seq, at, actor, action, target, result, detail, prev_hash, hash) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (seq, rec.at, rec.actor, action, target, result, _dumps(rec.detail), prev, h))
            db.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) "
                       "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash", (seq, h))
        return AuditRecord(**{**rec.__dict__, "hash": h})

    def audit(self, action: str, target: str, result: str, detail: Mapping[str, Any] | None = None) -> AuditRecord:
        """Append one record (who = this journal's actor, when = now) to the hash-chained audit log."""
        return self._append_audit(action, target, result, detail)

    def audit_records(self, target: str | None = None) -> list[AuditRecord]:
        sql = "SELECT * FROM audit" + (" WHERE target = ?" if target else "") + " ORDER BY seq"
        rows = self._db.execute(sql, (target,) if target else ()).fetchall()
        return [AuditRecord(seq=int(r["seq"]), at=r["at"], actor=r["actor"], action=r["action"], target=r["target"],
                            result=r["result"], detail=_loads_obj(r["detail"]), prev_hash=r["prev_hash"], hash=r["hash"])
                for r in rows]

    def audit_head(self) -> tuple[int, str] | None:
        row = self._db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        return (int(row["seq"]), str(row["hash"])) if row else None

    def verify_audit(self, expect_head: str | None = None) -> ChainReport:
        return verify_chain(self.audit_records(), self.audit_head(), expect_head)

    # ------------------------------------------------------------ runs

    def start_run(self, plan: str, wave: int, command: str = "run", *, run_id: str | None = None,
                  options: Mapping[str, Any] | None = None) -> str:
        run_id = run_id or f"run-{uuid.uuid4().hex[:12]}"
        with self._tx() as db:
            db.execute("INSERT INTO runs (id, plan, wave, command, status, actor, pid, host, started_at) "
                       "VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                       (run_id, plan, wave, command, self.actor, os.getpid(), socket.gethostname(), now()))
            if options is not None:  # kept as a run-level fact (system "") so `resume` can repeat them
                db.execute("INSERT INTO facts (run_id, plan, system, step, key, value, at) VALUES (?, ?, '', 'run', "
                           "'run_options', ?, ?)", (run_id, plan, _dumps(dict(options)), now()))
            self._append_audit(f"run.{command}", f"{plan}/wave-{wave}", "started", {"run_id": run_id, "pid": os.getpid()})
        return run_id

    def finish_run(self, run_id: str, status: str) -> None:
        with self._tx() as db:
            row = db.execute("SELECT plan, wave, command FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise JournalError(f"no run {run_id} in journal {self.path}")
            db.execute("UPDATE runs SET status = ?, finished_at = ? WHERE id = ?", (status, now(), run_id))
            self._append_audit(f"run.{row['command']}", f"{row['plan']}/wave-{row['wave']}", status, {"run_id": run_id})

    def runs(self, plan: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM runs" + (" WHERE plan = ?" if plan else "") + " ORDER BY started_at"
        out = []
        for r in self._db.execute(sql, (plan,) if plan else ()).fetchall():
            d = dict(r)
            opt = self._db.execute("SELECT value FROM facts WHERE run_id = ? AND system = '' AND key = 'run_options' "
                                   "ORDER BY id DESC LIMIT 1", (d["id"],)).fetchone()
            d["options"] = json.loads(opt["value"]) if opt else {}
            out.append(d)
        return out

    # ------------------------------------------------------------ per-system state

    def ensure_system(self, plan: str, system: str, wave: int) -> Status:
        """Register a system (``pending``) if the journal does not know it yet; returns its status."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO systems (plan, system, wave, state, last_good, updated_at) "
                       "VALUES (?, ?, ?, 'pending', 'pending', ?)", (plan, system, wave, now()))
        return self.status(plan, system)

    def status(self, plan: str, system: str) -> Status:
        row = self._db.execute("SELECT state, last_good FROM systems WHERE plan = ? AND system = ?", (plan, system)).fetchone()
        if row is None:
            return Status()
        return Status(State(row["state"]), State(row["last_good"]))

    def systems(self, plan: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM systems" + (" WHERE plan = ?" if plan else "") + " ORDER BY plan, wave, system"
        return [dict(r) for r in self._db.execute(sql, (plan,) if plan else ()).fetchall()]

    def intent(self, run_id: str, plan: str, system: str, action: Action, detail: Mapping[str, Any] | None = None) -> int:
        """Record that ``action`` is about to run (BEFORE its side effect); returns the intent's id."""
        with self._tx() as db:
            st = self.status(plan, system)
            cur = db.execute("INSERT INTO transitions (run_id, plan, system, action, phase, from_state, result, detail, at) "
                             "VALUES (?, ?, ?, ?, 'intent', ?, 'started', ?, ?)",
                             (run_id, plan, system, action.value, st.state.value, _dumps(detail or {}), now()))
            self._append_audit(f"migrate.{action.value}", system, "started", {"run_id": run_id, "plan": plan, **(detail or {})})
            assert cur.lastrowid is not None
            return int(cur.lastrowid)

    def outcome(self, intent_id: int, event: Event, detail: Mapping[str, Any] | None = None) -> Status:
        """Record the outcome of an intent (AFTER the side effect) and move the system's state by ``event``.

        Raises ``govcloud.migrate.state.IllegalTransition`` (nothing written) if the event is not allowed."""
        with self._tx() as db:
            it = db.execute("SELECT * FROM transitions WHERE id = ? AND phase = 'intent'", (intent_id,)).fetchone()
            if it is None:
                raise JournalError(f"no intent {intent_id} in journal {self.path}")
            before = self.status(it["plan"], it["system"])
            after = apply(before, event)
            db.execute("INSERT INTO transitions (intent_id, run_id, plan, system, action, phase, from_state, to_state, "
                       "result, detail, at) VALUES (?, ?, ?, ?, ?, 'outcome', ?, ?, ?, ?, ?)",
                       (intent_id, it["run_id"], it["plan"], it["system"], it["action"], before.state.value,
                        after.state.value, "failed" if event == Event.FAILED else "ok", _dumps(detail or {}), now()))
            db.execute("UPDATE systems SET state = ?, last_good = ?, run_id = ?, updated_at = ? WHERE plan = ? AND system = ?",
                       (after.state.value, after.last_good.value, it["run_id"], now(), it["plan"], it["system"]))
            self._append_audit(f"migrate.{it['action']}", it["system"], "failed" if event == Event.FAILED else "ok",
                               {"run_id": it["run_id"], "plan": it["plan"], "from": before.state.value,
                                "to": after.state.value, **(detail or {})})
        return after

    def mark(self, run_id: str, plan: str, system: str, event: Event, detail: Mapping[str, Any] | None = None) -> Status:
        """A transition with no side effect of its own (``resumed``, ``retry``): one outcome row, audited."""
        with self._tx() as db:
            before = self.status(plan, system)
            after = apply(before, event)
            db.execute("INSERT INTO transitions (run_id, plan, system, action, phase, from_state, to_state, result, detail, at) "
                       "VALUES (?, ?, ?, ?, 'outcome', ?, ?, 'ok', ?, ?)",
                       (run_id, plan, system, event.value, before.state.value, after.state.value, _dumps(detail or {}), now()))
            db.execute("UPDATE systems SET state = ?, last_good = ?, run_id = ?, updated_at = ? WHERE plan = ? AND system = ?",
                       (after.state.value, after.last_good.value, run_id, now(), plan, system))
            self._append_audit(f"migrate.{event.value}", system, "ok",
                               {"run_id": run_id, "plan": plan, "from": before.state.value, "to": after.state.value,
                                **(detail or {})})
        return after

    def open_intents(self, plan: str | None = None) -> list[dict[str, Any]]:
        """Intents without an outcome: steps a crash interrupted (their side effect may be half done)."""
        sql = ("SELECT i.* FROM transitions i WHERE i.phase = 'intent' AND NOT EXISTS "
               "(SELECT 1 FROM transitions o WHERE o.intent_id = i.id)" + (" AND i.plan = ?" if plan else "") + " ORDER BY i.id")
        return [_row(r) for r in self._db.execute(sql, (plan,) if plan else ()).fetchall()]

    def transitions(self, plan: str, system: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM transitions WHERE plan = ? AND system = ? ORDER BY id", (plan, system))
        return [_row(r) for r in rows.fetchall()]

    # ------------------------------------------------------------ facts

    def record_fact(self, run_id: str, plan: str, system: str, step: str, key: str, value: Any) -> None:
        """A measured fact of a step: ``bytes_sent``, ``source_manifest``, ``server_ids``, ``downtime_seconds``..."""
        with self._tx() as db:
            db.execute("INSERT INTO facts (run_id, plan, system, step, key, value, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (run_id, plan, system, step, key, _dumps(value), now()))

    def facts(self, plan: str, system: str, key: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM facts WHERE plan = ? AND system = ?" + (" AND key = ?" if key else "") + " ORDER BY id"
        args: Sequence[Any] = (plan, system, key) if key else (plan, system)
        return [{**dict(r), "value": json.loads(r["value"])} for r in self._db.execute(sql, args).fetchall()]

    def latest_fact(self, plan: str, system: str, key: str) -> Any:
        found = self.facts(plan, system, key)
        return found[-1]["value"] if found else None

    # ------------------------------------------------------------ wave locks

    def lock_holder(self, plan: str, wave: int) -> LockHolder | None:
        row = self._db.execute("SELECT * FROM locks WHERE plan = ? AND wave = ?", (plan, wave)).fetchone()
        if row is None:
            return None
        return LockHolder(plan=row["plan"], wave=int(row["wave"]), run_id=row["run_id"], pid=int(row["pid"]),
                          host=row["host"], user=row["user"], started_at=row["started_at"],
                          pid_starttime=row["pid_starttime"])

    def acquire_wave_lock(self, plan: str, wave: int, run_id: str, *, steal: bool = False) -> LockHolder:
        """Take the wave's lock for ``run_id`` (this process). A live holder -> WaveLockedError naming it; a
        holder whose process is gone from this host is taken over (audited); a holder on another host
        only with ``steal``."""
        me = LockHolder(plan=plan, wave=wave, run_id=run_id, pid=os.getpid(), host=socket.gethostname(),
                        user=self.actor.split("@", 1)[0], started_at=now(), pid_starttime=process_starttime(os.getpid()))
        refused: LockHolder | None = None
        with self._tx() as db:
            held = self.lock_holder(plan, wave)
            if held is not None and held.run_id != run_id:
                stale = held.host == me.host and not pid_alive(held.pid, held.pid_starttime)
                if not stale and not steal:
                    refused = held  # the refusal is audited (committed), then raised below
                    self._append_audit("lock.acquire", f"{plan}/wave-{wave}", "refused",
                                       {"run_id": run_id, "holder": held.as_dict()})
                else:
                    self._append_audit("lock.takeover", f"{plan}/wave-{wave}", "ok",
                                       {"run_id": run_id, "previous": held.as_dict(), "reason": "stale" if stale else "steal"})
            if refused is None:
                db.execute("INSERT INTO locks (plan, wave, run_id, pid, host, user, started_at, pid_starttime) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (plan, wave) DO UPDATE SET run_id = excluded.run_id, "
                           "pid = excluded.pid, host = excluded.host, user = excluded.user, "
                           "started_at = excluded.started_at, pid_starttime = excluded.pid_starttime",
                           (plan, wave, run_id, me.pid, me.host, me.user, me.started_at, me.pid_starttime))
                self._append_audit("lock.acquire", f"{plan}/wave-{wave}", "ok", {"run_id": run_id, "pid": me.pid})
        if refused is not None:
            raise lock_refusal(refused, this_host=me.host)
        return me

    def release_wave_lock(self, plan: str, wave: int, run_id: str) -> bool:
        with self._tx() as db:
            cur = db.execute("DELETE FROM locks WHERE plan = ? AND wave = ? AND run_id = ?", (plan, wave, run_id))
            if cur.rowcount:
                self._append_audit("lock.release", f"{plan}/wave-{wave}", "ok", {"run_id": run_id})
            return bool(cur.rowcount)

    @contextlib.contextmanager
    def wave_lock(self, plan: str, wave: int, run_id: str, *, steal: bool = False) -> Iterator[LockHolder]:
        holder = self.acquire_wave_lock(plan, wave, run_id, steal=steal)
        try:
            yield holder
        finally:
            self.release_wave_lock(plan, wave, run_id)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _loads_obj(text: str) -> dict[str, Any]:
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


def _row(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    if "detail" in d:
        d["detail"] = json.loads(d["detail"])
    return d
