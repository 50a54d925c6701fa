"""The failover controller: probes -> immutable snapshot -> decision (with its sentence) -> runbook, journaled.

``Controller.cycle`` takes one probe round, turns it into the pure core's ``ProbeSnapshot``, reconciles
the journal with the cluster (the members' roles and epoch markers are the source of truth: a stale
journal adopts them, an ambiguous cluster makes the decision ``hold``; ``govcloud.failover.reconcile``),
refreshes the ``ServiceView`` (primary and epoch from the reconciled journal; standby lag and streaming
from the primary's ``pg_stat_replication`` when the controller reaches it, else the last check), runs
the primary's lease (``enforce_lease``: the lab stands in for the primary's own agent, acting only on
the primary's own probes) and asks ``decide``. ``Executor.execute`` carries a failover decision out
step by step, writing each step to the journal before its side effect, so a rerun resumes instead of
promoting twice; the cluster's epoch is recorded before anything is fenced or promoted.

The journal is a small SQLite file (``<root>/.govcloud/failover.db``); the exporter's view is
published atomically to ``<root>/.govcloud/failover.json`` (``FailoverView`` fields plus members and
the decision log).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from govcloud.adapters.postgres import (
    MemberState,
    PgTarget,
    PostgresError,
    member_state,
    write_check,
)
from govcloud.adapters.servicemap import ServiceMap
from govcloud.errors import RuntimeFailure
from govcloud.failover.decide import decide as decide_one
from govcloud.failover.decide import path_state, primary_lease
from govcloud.failover.model import (
    Action,
    Decision,
    FailoverRefused,
    Observation,
    Policy,
    ProbeHistory,
    ProbeSnapshot,
    ReplicationMode,
    ServiceView,
    Standby,
)
from govcloud.failover.reconcile import JournalState, MemberObservation, Outcome, Reconciliation, reconcile
from govcloud.failover.runbook import StepKind, runbook_for
from govcloud.model import Region, RegionRole, Resources, Site, Topology
from govcloud.services import probes as P

log = logging.getLogger(__name__)

SERVICE = "pg"


class FailoverFailed(RuntimeFailure):
    """A runbook step failed; the journal keeps the run, and ``execute`` resumes it from that step."""


# ------------------------------------------------------------------ the cluster behind the controller


class Backend(Protocol):
    """What the controller needs from the replicated service and its sites (the lab implements it)."""

    service: str
    home_primary: str

    def sites(self) -> dict[str, str]: ...  # site -> region
    def members(self) -> list[str]: ...  # sites that run a member
    def sync_partner(self, primary: str) -> str | None: ...
    def target(self, site: str) -> PgTarget: ...
    def probe_round(self) -> P.ProbeSnapshot: ...
    def discover_primary(self) -> tuple[str, int] | None: ...  # (site, epoch) of the writable member
    def observe_members(self) -> list[MemberObservation]: ...  # roles and epoch markers, every cycle
    def fence(self, site: str, epoch: int, reason: str) -> str: ...
    def promote(self, site: str, epoch: int) -> str: ...
    def repoint(self, site: str, primary: str) -> str: ...
    def set_sync(self, primary: str, standby: str | None) -> None: ...
    def rejoin(self, site: str, primary: str) -> str: ...
    def stop(self, site: str) -> None: ...
    def checkpoint_lsn(self, site: str) -> str: ...
    def primaries(self) -> list[str]: ...  # running writable members (ground truth, via the console)
    def healthy(self) -> dict[str, Any]: ...


def lab_topology(regions: dict[str, str]) -> Topology:
    """The decision core's topology for the lab's sites (first region with a name starting gz is primary)."""
    cap = Resources(1, 1, 1)
    names = sorted(set(regions.values()))
    return Topology(
        name="lab",
        regions=tuple(Region(r, RegionRole.PRIMARY if r == "gz" else RegionRole.BACKUP, r, f"Region{r.upper()}",
                             tuple(s for s, rr in sorted(regions.items()) if rr == r)) for r in names),
        sites=tuple(Site(s, r, s, cap) for s, r in sorted(regions.items())),
        replication=())


def to_core_snapshot(snap: P.ProbeSnapshot, topology: Topology) -> ProbeSnapshot:
    """The probes' snapshot as the pure core's: one observation per probe, on the controller's clock."""
    obs = tuple(Observation(observer=r.source, target=r.target, ok=r.ok, at=r.at, latency_s=r.latency_seconds,
                            service=r.service) for r in snap.results)
    return ProbeSnapshot(at=max([snap.taken_at, *(o.at for o in obs)]), topology=topology, observations=obs)


# ------------------------------------------------------------------ journal


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


class Journal:
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


# ------------------------------------------------------------------ the cluster is the source of truth


def reconcile_journal(backend: Backend, journal: Journal, reachable: Callable[[str], bool] | None = None,
                      on_change: Callable[[Reconciliation], None] | None = None) -> Reconciliation:
    """Compare the journal with the members' roles and markers; adopt the cluster's state when they disagree.

    The adoption is logged (one line: old -> new, why), written to the journal (``cluster`` row and the
    ``decisions`` log, action ``adopt``) unless a failover run is in progress (it resumes as journalled).
    """
    svc = backend.service
    members = backend.observe_members()
    if reachable is not None:
        members = [replace(m, reachable=reachable(m.site)) for m in members]
    with journal.tx() as db:  # read, decide and write under one write lock: two controllers adopt once
        row = journal.cluster(svc)
        js = None if row is None else JournalState(row.primary, row.epoch, row.fenced, row.high_epoch)
        rec = reconcile(js, members, run_in_progress=journal.open_run(svc) is not None)
        if rec.outcome is Outcome.ADOPT:
            journal.set_cluster(ClusterRow(svc, rec.primary, rec.epoch, rec.fenced, rec.high_epoch), db)
            old = "nothing" if js is None else (f"{js.primary}@{js.epoch}"
                                                + (f" fenced {','.join(js.fenced)}" if js.fenced else ""))
            new = f"{rec.primary}@{rec.epoch}" + (f" fenced {','.join(rec.fenced)}" if rec.fenced else "")
            line = f"adopted the cluster's state: {old} -> {new} (next epoch {rec.next_epoch}): {rec.reason}"
            log.warning("%s: %s", svc, line)
            db.execute("INSERT INTO decisions (service, at, action, reason) VALUES (?, ?, 'adopt', ?)",
                       (svc, time.time(), line))
            if on_change is not None:
                on_change(replace(rec, reason=line))
        elif row is not None and rec.high_epoch > row.high_epoch:
            journal.set_cluster(replace(row, high_epoch=rec.high_epoch), db)  # remember the highest epoch seen
    return rec


# ------------------------------------------------------------------ the controller


def publish_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


#: the exporter's decision states (govcloud.adapters.metrics.DECISIONS) for the core's actions
EXPORTED_DECISION = {Action.NONE: "hold", Action.WAIT: "hold", Action.FAILOVER: "failover", Action.REFUSE: "refuse",
                     Action.HOLD: "hold"}


@dataclass
class Controller:
    """One decision per cycle from a fresh probe snapshot; publishes the view the exporter reads."""

    backend: Backend
    journal: Journal
    policy: Policy
    publish_path: Path | None = None
    enforce_lease: bool = False
    rpo_target_s: float = 30.0
    history: ProbeHistory = field(default_factory=ProbeHistory)
    decision_log: list[dict[str, Any]] = field(default_factory=list)
    last_decision: Decision | None = None
    last_snapshot: ProbeSnapshot | None = None
    self_fenced: dict[tuple[str, int], str] = field(default_factory=dict)
    in_progress: bool = False
    last_reconciliation: Reconciliation | None = None
    servicemap: ServiceMap | None = None  # aligned with the cluster when its state is adopted
    _standbys: dict[tuple[str, int], tuple[Standby, ...]] = field(default_factory=dict)

    @property
    def service(self) -> str:
        return self.backend.service

    def topology(self) -> Topology:
        return lab_topology(self.backend.sites())

    def reconcile(self, snap: ProbeSnapshot | None = None) -> Reconciliation:
        """Reconcile the journal with the cluster (``reconcile_journal``); the snapshot says who is reachable."""
        reach = None
        if snap is not None:
            def reach(site: str) -> bool:
                o = snap.path(P.WITNESS, site)
                return o is not None and o.ok

        adopted: list[Reconciliation] = []

        def on_change(r: Reconciliation) -> None:
            self._log(time.time(), "adopt", r.reason)
            adopted.append(r)

        rec = reconcile_journal(self.backend, self.journal, reach, on_change=on_change)
        self.last_reconciliation = rec
        if adopted:
            self._align_endpoint()
        return rec

    def _align_endpoint(self) -> None:
        """After adopting the cluster's state, point this root's service map at the adopted primary too:
        a later failover's compare-and-swap expects the map to name the primary it replaces."""
        if self.servicemap is None:
            return
        row = self.journal.cluster(self.service)
        cur = self.servicemap.lookup(self.service)
        if row is None or cur is None:
            return
        t = self.backend.target(row.primary)
        if (cur.address, cur.port) != (t.host, t.port):
            self.servicemap.switch(self.service, address=t.host, port=t.port, site=row.primary, expect=cur.address,
                                   reason=f"adopted the cluster's state: primary {row.primary} at epoch {row.epoch}")
            log.warning("%s: service map moved to %s:%s (%s) to match the cluster", self.service, t.host, t.port,
                        row.primary)

    def cluster(self) -> ClusterRow:
        """The journal's idea of the cluster, reconciled with the members the first time it is asked."""
        if self.last_reconciliation is None:
            self.reconcile()
        row = self.journal.cluster(self.service)
        if row is None:
            rec = self.last_reconciliation
            raise RuntimeFailure(f"{self.service}: no writable member found and no journal at {self.journal.path}"
                                 + (f": {rec.reason}" if rec else ""), hint="start the cluster (`devcloud lab pg up`)")
        return row

    def view(self, snap: ProbeSnapshot | None) -> ServiceView:
        """The ServiceView: roles from the journal, standbys from the primary when it is reachable, else the last check."""
        row = self.cluster()
        key = (row.primary, row.epoch)
        partner = self.backend.sync_partner(row.primary)
        state: MemberState | None = None
        reach = True
        if snap is not None:
            o = snap.path(P.WITNESS, row.primary, self.service)
            reach = o is not None and o.ok
        if reach:
            try:
                state = member_state(self.backend.target(row.primary))
            except PostgresError as exc:
                log.debug("replication monitor: %s", exc)
        if state is not None and not state.in_recovery:
            rows = {r.name: r for r in state.replication}
            sbs = []
            for site in self.backend.members():
                if site == row.primary or site in row.fenced:
                    continue
                r = rows.get(site.replace("-", "_"))
                mode = (ReplicationMode.SYNC if (r is not None and r.sync_state == "sync") or
                        (r is None and site == partner) else ReplicationMode.ASYNC)
                sbs.append(Standby(site, mode, streaming=r is not None and r.state == "streaming",
                                   lag_bytes=None if r is None else r.lag_bytes,
                                   lag_seconds=None if r is None else (r.lag_seconds or 0.0)))
            self._standbys[key] = tuple(sbs)
        standbys = self._standbys.get(key)
        if standbys is None:  # never checked at this epoch: known members, not streaming yet
            standbys = tuple(Standby(s, ReplicationMode.SYNC if s == partner else ReplicationMode.ASYNC,
                                     streaming=False, lag_bytes=None, lag_seconds=None)
                             for s in self.backend.members() if s != row.primary and s not in row.fenced)
        return ServiceView(self.service, row.primary, row.epoch, standbys, fenced=row.fenced,
                           high_epoch=row.high_epoch)

    def snapshot(self) -> ProbeSnapshot:
        return to_core_snapshot(self.backend.probe_round(), self.topology())

    def cycle(self) -> Decision:
        """Probe, refresh the view, run the primary's lease, decide; log and publish the decision."""
        snap = self.snapshot()
        rec = self.reconcile(snap)
        view = self.view(snap)
        if rec.outcome is Outcome.HOLD:  # ambiguous cluster: no lease action, no failover decision
            d = Decision(action=Action.HOLD, service=self.service, primary=view.primary, epoch=view.epoch,
                         reason=f"{self.service}: {rec.reason}", at=snap.at)
            self.history = self.history.add(snap, keep_s=self.policy.grace_s * 3)
            self.last_snapshot = snap
            return self._decided(d, view)
        if self.enforce_lease:
            lease = primary_lease(snap, view, self.history, self.policy)
            key = (view.primary, view.epoch)
            if not lease.holds and key not in self.self_fenced:
                log.warning("lease: %s", lease.reason)
                self.self_fenced[key] = self.backend.fence(view.primary, view.epoch, f"lease lapsed: {lease.reason}")
                self._log(snap.at, "lease", lease.reason)
        d = decide_one(snap, view, self.history, self.policy)
        self.history = self.history.add(snap, keep_s=self.policy.grace_s * 3)
        self.last_snapshot = snap
        return self._decided(d, view)

    def _decided(self, d: Decision, view: ServiceView) -> Decision:
        if self.last_decision is None or d.action is not self.last_decision.action or d.action is Action.FAILOVER:
            log.info("decision %s: %s", d.action.value, d.reason)
            self._log(d.at, d.action.value, d.reason)
            self.journal.record_decision(self.service, d)
        self.last_decision = d
        self.publish(view)
        return d

    def _log(self, at: float, action: str, reason: str) -> None:
        self.decision_log.append({"at": at, "action": action, "reason": reason})

    def loss_started(self, d: Decision) -> float:
        """When the deciders' continuous outage of the old primary began (the start of the RTO clock)."""
        snaps = (*self.history.snapshots,)
        if not snaps:
            return d.at
        starts = [d.at - ps.down_for for ps in (path_state(snaps, o, d.primary, self.policy) for o in d.deciders)
                  if ps.down_for]
        return min(starts) if starts else d.at

    def payload(self, view: ServiceView | None = None) -> dict[str, Any]:
        """The published view: FailoverView's fields for the exporter, plus members and the decision log."""
        view = view or self.view(self.last_snapshot)
        d = self.last_decision
        runs = self.journal.runs(self.service)
        failovers = [r for r in runs if r.kind == "failover"]
        last = next((r for r in reversed(failovers) if r.status == "ok"), None)
        decision = "failback" if self.in_progress and d is None else EXPORTED_DECISION[d.action] if d else "hold"
        return {
            "replicas": [{"service": self.service, "standby_site": s.site, "lag_seconds": s.lag_seconds or 0.0,
                          "lag_bytes": s.lag_bytes or 0} for s in view.standbys if s.streaming],
            "rpo_seconds": {self.service: self.rpo_target_s},
            "failovers": [{"service": self.service, "ok": sum(r.status == "ok" for r in failovers),
                           "failed": sum(r.status == "failed" for r in failovers),
                           "in_progress": self.in_progress or any(r.status == "running" for r in failovers),
                           "last_rto_seconds": last.rto_s if last else None,
                           "last_rpo_seconds": last.rpo_s if last else None,
                           "last_lost_commits": last.lost_commits if last else None}],
            "decision": decision,
            "reason": d.reason if d else "",
            "service": self.service,
            "primary": view.primary,
            "epoch": view.epoch,
            "fenced": list(view.fenced),
            "standbys": [asdict(s) for s in view.standbys],
            "evidence": list(d.evidence) if d else [],
            "decision_log": self.decision_log[-50:],
            "published_at": time.time(),
        }

    def publish(self, view: ServiceView | None = None) -> None:
        if self.publish_path is not None:
            publish_atomic(self.publish_path, self.payload(view))


# ------------------------------------------------------------------ the runbook executor


@dataclass
class RunResult:
    run: RunRow
    steps: list[tuple[int, str, str, str, str]]
    resumed: bool = False


class Executor:
    """Carries out a runbook, journaling every step before its side effect (resumable, never twice)."""

    def __init__(self, backend: Backend, journal: Journal, servicemap: ServiceMap,
                 reachable: Callable[[str], bool] | None = None,
                 verify: Callable[[PgTarget, str, str], float] = write_check) -> None:
        self.backend = backend
        self.journal = journal
        self.servicemap = servicemap
        self.reachable = reachable or (lambda site: True)
        self.verify = verify

    def execute(self, decision: Decision, loss_at: float | None = None,
                measure: Callable[[str, float], tuple[int | None, float | None]] | None = None) -> RunResult:
        """Run (or resume) the failover of ``decision``. ``measure(new_primary, loss_at)`` -> (lost commits, RPO s)."""
        svc = decision.service
        with self.journal.locked():
            run = self.journal.open_run(svc)
            resumed = run is not None
            if run is None:
                cur = self.journal.cluster(svc)
                done = self.journal.run_for_epoch(svc, decision.new_epoch or -1)
                if done is not None and done.status == "ok":
                    return RunResult(done, self.journal.steps(done.id), resumed=True)  # already carried out
                if cur is None or cur.epoch != decision.epoch or cur.primary != decision.primary:
                    raise FailoverRefused(
                        f"{svc}: decision made at epoch {decision.epoch} for primary {decision.primary}, but the "
                        f"journal says epoch {cur.epoch if cur else '?'} with primary {cur.primary if cur else '?'}",
                        hint="decide again from a fresh snapshot (`govcloud failover status`)")
                book = runbook_for(decision)  # FailoverRefused for anything but a failover decision
                with self.journal.tx() as db:
                    cur_run = db.execute(
                        "INSERT INTO runs (service, kind, old_primary, new_primary, new_epoch, reason, loss_at, "
                        "started_at, status, rpo_bytes) VALUES (?, 'failover', ?, ?, ?, ?, ?, ?, 'running', ?)",
                        (svc, book.old_primary, book.new_primary, book.new_epoch, book.reason, loss_at, time.time(),
                         book.max_rpo_bytes))
                    run_id = int(cur_run.lastrowid or 0)
                    db.executemany("INSERT INTO steps (run_id, number, kind, site, status, detail) "
                                   "VALUES (?, ?, ?, ?, 'pending', ?)",
                                   [(run_id, s.number, s.kind.value, s.site, s.detail) for s in book.steps])
                run = self.journal.run_for_epoch(svc, book.new_epoch)
                assert run is not None
            self._run_steps(run, measure)
            final = self.journal.run_for_epoch(svc, run.new_epoch)
            assert final is not None
            return RunResult(final, self.journal.steps(final.id), resumed=resumed)

    def _run_steps(self, run: RunRow, measure: Callable[[str, float], tuple[int | None, float | None]] | None) -> None:
        svc, old, new, epoch = run.service, run.old_primary, run.new_primary, run.new_epoch
        for number, kind, site, status, _detail in self.journal.steps(run.id):
            if status == "done":
                continue
            self.journal.mark_step(run.id, number, "running")
            try:
                detail = self._step(StepKind(kind), run, old, new, epoch)
                if StepKind(kind) is StepKind.VERIFY_WRITES:
                    self.journal.db.execute("UPDATE runs SET writable_at = ? WHERE id = ?", (time.time(), run.id))
                if StepKind(kind) is StepKind.RECORD_RTO_RPO:
                    cur = self.journal.run_for_epoch(svc, epoch)
                    w = (cur.writable_at if cur else None) or time.time()
                    rto = (w - run.loss_at) if run.loss_at is not None else None
                    lost, rpo_s = measure(new, run.loss_at or w) if measure else (None, None)
                    if rpo_s is None and lost == 0:
                        rpo_s = 0.0
                    self.journal.finish_run(run.id, "running", rto_s=rto, rpo_s=rpo_s, lost_commits=lost)
                    detail = (f"RTO {rto:.2f} s (loss -> writable)" if rto is not None else "RTO unknown") + \
                             (f"; {lost} acknowledged commits lost" if lost is not None else "") + \
                             (f"; RPO {rpo_s:.2f} s" if rpo_s is not None else "")
            except Exception as exc:
                self.journal.mark_step(run.id, number, "failed", f"{type(exc).__name__}: {exc}")
                self.journal.finish_run(run.id, "failed", error=f"step {number} {kind}: {exc}")
                raise FailoverFailed(f"{svc}: failover to {new} (epoch {epoch}) failed at step {number} {kind}: {exc}",
                                     hint="fix the cause and run `govcloud failover execute --yes` again: it resumes "
                                          "from this step") from exc
            self.journal.mark_step(run.id, number, "done", detail)
        self.journal.finish_run(run.id, "ok")

    def _step(self, kind: StepKind, run: RunRow, old: str, new: str, epoch: int) -> str:
        svc = run.service
        if kind is StepKind.FENCE_OLD_PRIMARY:
            cur = self.journal.cluster(svc)
            fenced = tuple(dict.fromkeys((*(cur.fenced if cur else ()), old)))
            with self.journal.tx() as db:  # the new epoch is recorded before any side effect
                self.journal.set_cluster(ClusterRow(svc, new, epoch, tuple(f for f in fenced if f != new)), db)
            if self.reachable(old):
                return f"epoch {epoch} recorded; {old}: {self.backend.fence(old, epoch - 1, f'failover to {new}')}"
            return (f"epoch {epoch} recorded; {old} unreachable: its writes stopped when its lease lapsed "
                    f"(it is refused as a primary at epoch {epoch - 1} and rejoins at failback)")
        if kind is StepKind.PROMOTE:
            return self.backend.promote(new, epoch)
        if kind is StepKind.REPOINT_STANDBYS:
            notes = []
            for s in self.backend.members():
                if s in (old, new):
                    continue
                cur = self.journal.cluster(svc)
                if cur is not None and s in cur.fenced:
                    continue
                notes.append(self.backend.repoint(s, new) if self.reachable(s) else f"{s}: unreachable, rejoins later")
            return "; ".join(notes) or "no other standby"
        if kind is StepKind.MOVE_ENDPOINT:
            t = self.backend.target(new)
            cur_ep = self.servicemap.lookup(svc)
            # compare-and-swap: the endpoint must still point at the old primary (or at nothing yet)
            expect = None if cur_ep is None else self.backend.target(old).host
            moved = self.servicemap.switch(svc, address=t.host, port=t.port, site=new, expect=expect,
                                        reason=f"failover epoch {epoch}: {old} -> {new}")
            return f"{svc} -> {moved.address}:{moved.port} ({new}), map version {moved.version}"
        if kind is StepKind.VERIFY_WRITES:
            ep = self.servicemap.lookup(svc)
            t = self.backend.target(new)
            if ep is not None:
                t = replace(t, host=ep.address, port=ep.port)
            secs = self.verify(t, "epoch", str(epoch))
            return f"wrote and read back epoch {epoch} through {t.host}:{t.port} in {secs * 1000:.0f} ms"
        return ""


# ------------------------------------------------------------------ failback and switchover


@dataclass
class FailbackResult:
    rejoined: list[tuple[str, str]]  # (site, method)
    switched: str | None
    primary: str
    epoch: int
    seconds: float


def failback(backend: Backend, journal: Journal, servicemap: ServiceMap, *, switch_back: bool = False) -> FailbackResult:
    """Rejoin every fenced or detached member as a standby of the current primary; optionally switch back home."""
    t0 = time.monotonic()
    svc = backend.service
    with journal.locked():
        rec = reconcile_journal(backend, journal)
        if rec.outcome is Outcome.HOLD:
            raise FailoverRefused(f"{svc}: failback refused: {rec.reason}",
                                  hint="make exactly one member writable first (`devcloud lab pg status`)")
        row = journal.cluster(svc)
        if row is None:
            raise RuntimeFailure(f"{svc}: no failover journal at {journal.path}", hint="run `govcloud failover status`")
        health = backend.healthy()
        streaming = set(health.get("streaming", ()))
        rejoined = []
        for site in backend.members():
            if site == row.primary:
                continue
            if site in row.fenced or site not in streaming:
                rejoined.append((site, backend.rejoin(site, row.primary)))
        with journal.tx() as db:
            journal.set_cluster(replace(row, fenced=()), db)
        backend.set_sync(row.primary, backend.sync_partner(row.primary))
        switched = None
        if switch_back and row.primary != backend.home_primary:
            switched = _switchover(backend, journal, servicemap, replace(row, fenced=()), backend.home_primary)
        final = journal.cluster(svc)
        assert final is not None
    return FailbackResult(rejoined, switched, final.primary, final.epoch, time.monotonic() - t0)


def _switchover(backend: Backend, journal: Journal, servicemap: ServiceMap, row: ClusterRow, target: str) -> str:
    """A planned switch to ``target`` with no loss: stop the primary cleanly, let ``target`` replay it all, promote."""
    svc, old = row.service, row.primary
    epoch = reconcile_journal(backend, journal).next_epoch  # above every epoch any member or journal has seen
    with journal.tx() as db:
        db.execute("INSERT INTO runs (service, kind, old_primary, new_primary, new_epoch, reason, started_at, status) "
                   "VALUES (?, 'switchover', ?, ?, ?, ?, ?, 'running')",
                   (svc, old, target, epoch, f"switch back to {target}", time.time()))
        journal.set_cluster(ClusterRow(svc, target, epoch, (old,)), db)
    run = journal.run_for_epoch(svc, epoch)
    assert run is not None
    backend.stop(old)  # a clean (fast) shutdown sends every WAL record to the standbys first
    lsn = backend.checkpoint_lsn(old)
    deadline = time.monotonic() + 30
    while True:
        st = member_state(backend.target(target))
        if _lsn(st.lsn) >= _lsn(lsn):
            break
        if time.monotonic() > deadline:
            raise FailoverFailed(f"{svc}: {target} did not replay up to {old}'s shutdown checkpoint {lsn} in 30 s",
                                 hint=f"start {old} again as primary with `devcloud lab pg up` and investigate")
        time.sleep(0.1)  # polling a remote LSN with a deadline
    backend.promote(target, epoch)
    t = backend.target(target)
    cur = servicemap.lookup(svc)
    servicemap.switch(svc, address=t.host, port=t.port, site=target, expect=None if cur is None else cur.address,
                      reason=f"switch back epoch {epoch}: {old} -> {target}")
    write_check(t, "epoch", str(epoch))
    for s in backend.members():
        if s not in (old, target):
            backend.repoint(s, target)
    backend.rejoin(old, target)
    with journal.tx() as db:
        journal.set_cluster(ClusterRow(svc, target, epoch, ()), db)
    backend.set_sync(target, backend.sync_partner(target))
    journal.finish_run(run.id, "ok")
    return target


def _lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def decision_dict(d: Decision) -> dict[str, Any]:
    return {"action": d.action.value, "service": d.service, "primary": d.primary, "epoch": d.epoch,
            "target": d.target, "new_epoch": d.new_epoch, "rule": d.rule.value if d.rule else None,
            "deciders": list(d.deciders), "reason": d.reason, "evidence": list(d.evidence), "at": d.at}


# ------------------------------------------------------------------ what the CLI runs


def observe(ctl: Controller, seconds: float, interval: float,
            until: Callable[[Decision], bool] | None = None) -> Decision:
    """Run controller cycles for ``seconds`` (at least one), every ``interval``; stop early when ``until``."""
    end = time.monotonic() + seconds
    while True:
        started = time.monotonic()
        d = ctl.cycle()
        if (until is not None and until(d)) or time.monotonic() >= end:
            return d
        left = interval - (time.monotonic() - started)
        if left > 0:
            time.sleep(left)  # the cycle period


def status_payload(ctl: Controller, servicemap: ServiceMap) -> dict[str, Any]:
    """Members (role, state, lag), the journal's epoch, the endpoint, the current decision and why."""
    health = ctl.backend.healthy()
    view = ctl.view(ctl.last_snapshot)
    rows = {r["name"]: r for r in health.get("replication", ())}
    members = []
    for m in health.get("members", ()):
        site = m["site"]
        sb = view.standby(site)
        r = rows.get(m.get("name", ""))
        role = "primary" if site == view.primary else "fenced" if site in view.fenced else "standby"
        members.append({"site": site, "role": role, "running": m.get("running"), "actual_role": m.get("role"),
                        "state": (r or {}).get("state", "-") if role == "standby" else m.get("role"),
                        "sync_state": (r or {}).get("sync_state"), "lag_bytes": (r or {}).get("lag_bytes"),
                        "mode": sb.mode.value if sb else None})
    ep = servicemap.lookup(ctl.service)
    d = ctl.last_decision
    rec = ctl.last_reconciliation
    source = {"outcome": rec.outcome.value if rec else "unknown", "reason": rec.reason if rec else "",
              "adopted": [x["reason"] for x in ctl.decision_log if x["action"] == "adopt"]}
    return {"service": ctl.service, "primary": view.primary, "epoch": view.epoch, "fenced": list(view.fenced),
            "next_epoch": view.next_epoch, "source": source,
            "members": members, "healthy": health.get("healthy"),
            "endpoint": None if ep is None else {"address": ep.address, "port": ep.port, "site": ep.site,
                                                 "version": ep.version},
            "decision": None if d is None else decision_dict(d),
            "runs": [asdict(r) for r in ctl.journal.runs(ctl.service)[-5:]]}
