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
a newer govcloud is refused rather than misread. From version 3 the journal also keeps its audit head in
a file beside it (``journal_files``): every append writes it, ``audit verify`` checks the journal
against it, and an append to a journal that no longer reaches it is refused.

``Journal(path, create=False)`` is how reading commands open it: read-only, never created, migrated or
written; a missing file is JournalMissingError (exit 2), an empty one reads as a journal without rows.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from govcloud.adapters.journal_files import (
    ENV_AUDIT_SYSLOG,
    FileLock,
    connect_read_only,
    export_head,
    head_file,
    lock_file,
    read_head,
    syslog_facility,
    write_head,
)
from govcloud.adapters.journal_schema import ANCHORED_SINCE, MIGRATIONS, SCHEMA_VERSION
from govcloud.adapters.wave_locks import LockHolder, lock_refusal, process_starttime
from govcloud.adapters.wave_locks import pid_alive as pid_alive  # noqa: PLC0414 (re-exported for the engine's driver)
from govcloud.errors import AuditTamperedError, JournalError
from govcloud.migrate.auditchain import (
    GENESIS,
    GENESIS_ANCHOR,
    Anchor,
    AuditRecord,
    ChainReport,
    Problem,
    record_hash,
    verify_chain,
)
from govcloud.migrate.state import Action, Event, State, Status, apply

ENV_JOURNAL = "GOVCLOUD_JOURNAL"
DEFAULT_RELATIVE = Path(".govcloud") / "journal.sqlite"

REANCHOR_HINT = ("run `govcloud audit verify` to see what is missing; once investigated, `govcloud audit reanchor "
                 "--yes` accepts the journal as it is (audited), or restore the journal and its head file from a backup")


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
    return f"{user}@{this_host()}"


def this_host() -> str:
    """The host name runs and wave locks are recorded under: the kernel's node name (what
    ``gethostname`` returns), read without the socket module, which the engine may not reach, and
    the same value the driver compares a crashed run's host with."""
    return os.uname().nodename


class Journal:
    """An open journal. Not thread-safe: one per thread (SQLite serialises writers across connections;
    the lock file keeps each append together with its head file write)."""

    def __init__(self, path: Path, *, actor: str | None = None, create: bool = True) -> None:
        self.path = path
        self.head_path = head_file(path)
        self.actor = actor or default_actor()
        self.writable = create
        self.stored_version = 0  # the schema version on disk when opened (before any migration)
        self._depth = 0
        self._lock: FileLock | None = None
        self._db: sqlite3.Connection | None = None
        self._new_head: Anchor | None = None  # the head this transaction appended, written after COMMIT
        self._anchor_checked = False
        self._reanchoring = False
        self._syslog = syslog_facility(os.environ.get(ENV_AUDIT_SYSLOG)) if create else None
        try:
            if create:
                self._open_writable()
            else:
                self._open_read_only()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise JournalError(f"journal {path} is not a readable SQLite database: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def _open_read_only(self) -> None:
        self._db, self._lock = connect_read_only(self.path)
        self.stored_version = self.schema_version
        self._refuse_newer(self.stored_version)
        if self.stored_version == 0:  # empty (or never migrated): reads as a journal without rows
            if self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise JournalError(f"{self.path} is not a govcloud journal: it has tables but no schema version")
            self._db.close()
            self._db = sqlite3.connect(":memory:", isolation_level=None)
            for statements in MIGRATIONS:
                for statement in statements:
                    self.db.execute(statement)
        self._db.row_factory = sqlite3.Row

    def _open_writable(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock = FileLock.open(lock_file(self.path), create=True)
        except OSError as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
        with self._lock.held():
            try:
                anchor, unreadable = read_head(self.head_path), False
            except JournalError:  # opened all the same: appends refuse (_check_anchor), `audit reanchor` can run
                anchor, unreadable = None, True
            fresh = not self.path.exists()
            if fresh and anchor is not None and anchor.seq > 0:
                raise self._orphaned(anchor, "missing")
            if fresh and anchor is None and not unreadable:  # first: a journal is never without its head file
                write_head(self.head_path, GENESIS_ANCHOR, now())
            try:
                self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
            except (OSError, sqlite3.Error) as exc:
                raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
            self._db.row_factory = sqlite3.Row
            self.stored_version = self.schema_version
            if self.stored_version == 0 and anchor is not None and anchor.seq > 0:
                raise self._orphaned(anchor, "empty")  # before WAL mode or a migration writes to it
            mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"journal {self.path}: SQLite refused WAL mode (got {mode})",
                                   hint="put the journal on a local filesystem")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            if anchor is None and not (fresh or unreadable) and self.stored_version < ANCHORED_SINCE:  # an older one's
                write_head(self.head_path, Anchor(*(self.audit_head() or (0, GENESIS))), now())

    def _orphaned(self, anchor: Anchor, what: str) -> AuditTamperedError:
        """A head file whose journal is gone or emptied: appending would start a new chain over the evidence."""
        return AuditTamperedError(f"the journal {self.path} is {what} but its head file {self.head_path} records "
                                  f"{anchor.seq} audit record(s)",
                                  hint="restore the journal from a backup; to start a new journal instead, move its "
                                       "head file away as well")

    # ------------------------------------------------------------ plumbing

    def close(self) -> None:
        """Close. A writer closes under the lock file: SQLite checkpoints the WAL into the main file as the
        last connection closes, and a reader of the quiet main file (``connect_read_only``) must not see that."""
        lock, self._lock = self._lock, None
        try:
            if lock is not None and self.writable:
                with contextlib.suppress(JournalError):  # a busy lock is no reason to keep the journal open
                    lock.acquire()
            if self._db is not None:
                self._db.close()
        finally:
            if lock is not None:
                lock.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "journal is closed"
        return self._db

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def pragma(self, name: str) -> Any:
        return self.db.execute(f"PRAGMA {name}").fetchone()[0]

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: the write lock up front) inside the lock file, which
        is let go only after the transaction's audit head is in the head file; nests by joining."""
        if self._depth:
            self._depth += 1
            try:
                yield self.db
            finally:
                self._depth -= 1
            return
        if self._lock is None or not self.writable:
            raise JournalError(f"journal {self.path} was opened read-only")
        with self._lock.held():
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise JournalError(f"journal {self.path} is busy: {exc}", hint="another govcloud holds it; retry") from exc
            self._depth, self._new_head, self._anchor_checked = 1, None, False
            try:
                yield self.db
            except BaseException:
                self._depth = 0
                self.db.execute("ROLLBACK")
                raise
            self._depth = 0
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise JournalError(f"cannot commit to journal {self.path}: {exc}") from exc
            if self._new_head is not None:
                self._publish_head(self._new_head)

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise JournalError(f"journal {self.path} has schema version {version}; this govcloud knows up to "
                               f"{SCHEMA_VERSION}", hint="upgrade govcloud (journals are migrated forward only)")

    def _migrate(self) -> None:
        version = self.schema_version
        self._refuse_newer(version)
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
            if not (self._anchor_checked or self._reanchoring):
                self._check_anchor(db, seq - 1, prev)
                self._anchor_checked = True
            rec = AuditRecord(seq=seq, at=now(), actor=self.actor, action=action, target=target, result=result,
                              detail=dict(detail or {}), prev_hash=prev)
            h = record_hash(prev, rec.body())
            db.execute("INSERT INTO audit (seq, at, actor, action, target, result, detail, prev_hash, hash) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (seq, rec.at, rec.actor, action, target, result, _dumps(rec.detail), prev, h))
            db.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) "
                       "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash", (seq, h))
            self._new_head = Anchor(seq, h)
        return AuditRecord(**{**rec.__dict__, "hash": h})

    def _check_anchor(self, db: sqlite3.Connection, seq: int, digest: str) -> None:
        """Refuse to append to a journal that no longer reaches its head file (truncated, emptied, swapped
        for an older copy) or lost it: a fresh head would bury the evidence. Behind is fine: that is an
        append interrupted between its commit and its head write."""
        try:
            anchor = read_head(self.head_path)
        except JournalError as exc:
            raise AuditTamperedError(f"refusing to append to the audit log of {self.path}: {exc.message}",
                                     hint=REANCHOR_HINT) from exc
        if anchor == Anchor(seq, digest):
            return
        if anchor is not None and anchor.seq < seq:
            row = db.execute("SELECT hash FROM audit WHERE seq = ?", (anchor.seq,)).fetchone()
            if (GENESIS if anchor.seq == 0 else row["hash"] if row else None) == anchor.hash:
                return
        found = "is missing" if anchor is None else f"records record {anchor.seq} ({anchor.hash[:12]})"
        raise AuditTamperedError(f"refusing to append to the audit log of {self.path}: its head file {self.head_path} "
                                 f"{found}, but the journal's head is record {seq} ({digest[:12]})", hint=REANCHOR_HINT)

    def _publish_head(self, anchor: Anchor) -> None:
        try:
            write_head(self.head_path, anchor, now())
        except OSError as exc:
            raise JournalError(f"audit record {anchor.seq} is committed to {self.path}, but its head file "
                               f"{self.head_path} could not be written: {exc}",
                               hint="free space or fix permissions: the next append writes it (until then "
                                    "`govcloud audit verify` notes it behind)") from exc
        if self._syslog is not None:
            export_head(self._syslog, self.path.resolve(), anchor)

    def audit(self, action: str, target: str, result: str, detail: Mapping[str, Any] | None = None) -> AuditRecord:
        """Append one record (who = this journal's actor, when = now) to the hash-chained audit log."""
        return self._append_audit(action, target, result, detail)

    def reanchor(self) -> AuditRecord:
        """Accept the journal as it is, once a lost head file or a journal that no longer reaches it was
        investigated: an ``audit.reanchor`` record naming what the head file held, whose hash becomes
        the new head (so the acceptance itself is in the chain, and in syslog when exported)."""
        try:
            old = read_head(self.head_path)
            previous: Any = old.as_dict() if old else "missing"
        except JournalError:
            previous = "unreadable"
        with self._tx():
            head = self.audit_head() or (0, GENESIS)
            self._reanchoring = True
            try:
                return self._append_audit("audit.reanchor", self.path.name, "ok",
                                          {"previous_head_file": previous, "journal_head": {"seq": head[0], "hash": head[1]}})
            finally:
                self._reanchoring = False

    def audit_records(self, target: str | None = None) -> list[AuditRecord]:
        sql = "SELECT * FROM audit" + (" WHERE target = ?" if target else "") + " ORDER BY seq"
        rows = self.db.execute(sql, (target,) if target else ()).fetchall()
        return [AuditRecord(seq=int(r["seq"]), at=r["at"], actor=r["actor"], action=r["action"], target=r["target"],
                            result=r["result"], detail=_loads_obj(r["detail"]), prev_hash=r["prev_hash"], hash=r["hash"])
                for r in rows]

    def audit_head(self) -> tuple[int, str] | None:
        row = self.db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        return (int(row["seq"]), str(row["hash"])) if row else None

    def head_file_anchor(self) -> Anchor | None:
        """What the head file holds (None: no head file); JournalError when it is unreadable."""
        return read_head(self.head_path)

    def verify_audit(self, expect_head: str | None = None) -> ChainReport:
        """The chain, checked against the journal's own head and against its head file: a journal from
        version 3 on (or an empty one) without a head file has lost it; an older one has none yet.

        The head file is read first, then records and head in one read transaction: the head file is
        written only after the journal's commit, so while a migration appends, the snapshot can only be
        ahead of it (a note), never behind (which would read as a truncation)."""
        try:
            anchor, unreadable = read_head(self.head_path), None
        except JournalError as exc:
            anchor, unreadable = None, exc
        with self._snapshot():
            records, head = self.audit_records(), self.audit_head()
        if unreadable is not None:
            report = verify_chain(records, head, expect_head)
            return replace(report, problems=(*report.problems, Problem("head-file", report.head_seq, unreadable.message)))
        expected = self.stored_version == 0 or self.stored_version >= ANCHORED_SINCE
        return verify_chain(records, head, expect_head, anchor, anchor_expected=expected)

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Several reads seeing one state of the journal (a deferred transaction; joined inside a write)."""
        if self._depth:
            yield
            return
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    # ------------------------------------------------------------ runs

    def start_run(self, plan: str, wave: int, command: str = "run", *, run_id: str | None = None,
                  options: Mapping[str, Any] | None = None) -> str:
        run_id = run_id or f"run-{uuid.uuid4().hex[:12]}"
        with self._tx() as db:
            db.execute("INSERT INTO runs (id, plan, wave, command, status, actor, pid, host, started_at) "
                       "VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                       (run_id, plan, wave, command, self.actor, os.getpid(), this_host(), now()))
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
        for r in self.db.execute(sql, (plan,) if plan else ()).fetchall():
            d = dict(r)
            opt = self.db.execute("SELECT value FROM facts WHERE run_id = ? AND system = '' AND key = 'run_options' "
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
        row = self.db.execute("SELECT state, last_good FROM systems WHERE plan = ? AND system = ?", (plan, system)).fetchone()
        if row is None:
            return Status()
        return Status(State(row["state"]), State(row["last_good"]))

    def systems(self, plan: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM systems" + (" WHERE plan = ?" if plan else "") + " ORDER BY plan, wave, system"
        return [dict(r) for r in self.db.execute(sql, (plan,) if plan else ()).fetchall()]

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
        return [_row(r) for r in self.db.execute(sql, (plan,) if plan else ()).fetchall()]

    def transitions(self, plan: str, system: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM transitions WHERE plan = ? AND system = ? ORDER BY id", (plan, system))
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
        return [{**dict(r), "value": json.loads(r["value"])} for r in self.db.execute(sql, args).fetchall()]

    def latest_fact(self, plan: str, system: str, key: str) -> Any:
        found = self.facts(plan, system, key)
        return found[-1]["value"] if found else None

    # ------------------------------------------------------------ wave locks

    def lock_holder(self, plan: str, wave: int) -> LockHolder | None:
        row = self.db.execute("SELECT * FROM locks WHERE plan = ? AND wave = ?", (plan, wave)).fetchone()
        if row is None:
            return None
        return LockHolder(plan=row["plan"], wave=int(row["wave"]), run_id=row["run_id"], pid=int(row["pid"]),
                          host=row["host"], user=row["user"], started_at=row["started_at"],
                          pid_starttime=row["pid_starttime"] if "pid_starttime" in row.keys() else None)

    def acquire_wave_lock(self, plan: str, wave: int, run_id: str, *, steal: bool = False) -> LockHolder:
        """Take the wave's lock for ``run_id`` (this process). A live holder -> WaveLockedError naming it; a
        holder whose process is gone from this host is taken over (audited); a holder on another host
        only with ``steal``."""
        me = LockHolder(plan=plan, wave=wave, run_id=run_id, pid=os.getpid(), host=this_host(),
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
