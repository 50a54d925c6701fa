"""The decision loop: probes -> immutable snapshot -> reconciled journal -> decision, published for the exporter.

``Controller.cycle`` takes one probe round, turns it into the pure core's ``ProbeSnapshot``, reconciles
the journal with the cluster (the members' roles and epoch markers are the source of truth: a stale
journal adopts them, an ambiguous cluster makes the decision ``hold``; ``govcloud.failover.reconcile``),
refreshes the ``ServiceView`` (primary and epoch from the reconciled journal; standby lag and streaming
from the primary's ``pg_stat_replication`` when the controller reaches it, else the last check), runs
the primary's lease (``enforce_lease``: the lab stands in for the primary's own agent, acting only on
the primary's own probes) and asks ``decide``. The view is published atomically to
``<root>/.govcloud/failover.json`` (``FailoverView`` fields plus members and the decision log).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from govcloud.adapters.failover_journal import ClusterRow, Journal, publish_atomic
from govcloud.adapters.postgres import MemberState, PostgresError, member_state
from govcloud.adapters.ports import EndpointPort
from govcloud.errors import RuntimeFailure
from govcloud.failover.decide import decide as decide_one
from govcloud.failover.decide import path_state, primary_lease
from govcloud.failover.model import (
    Action,
    Decision,
    Policy,
    ProbeHistory,
    ProbeSnapshot,
    ReplicationMode,
    ServiceView,
    Standby,
)
from govcloud.failover.reconcile import JournalState, Outcome, Reconciliation, reconcile
from govcloud.model import Topology
from govcloud.services import probes as P
from govcloud.services.failover.backend import Backend, lab_topology, to_core_snapshot

log = logging.getLogger("govcloud.services.failover")


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
            journal.record_adoption(svc, line, db)
            if on_change is not None:
                on_change(replace(rec, reason=line))
        elif row is not None and rec.high_epoch > row.high_epoch:
            journal.set_cluster(replace(row, high_epoch=rec.high_epoch), db)  # remember the highest epoch seen
    return rec


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
    endpoints: EndpointPort | None = None  # the service's name: published, and aligned when the cluster is adopted
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

        first = self.last_reconciliation is None
        rec = reconcile_journal(self.backend, self.journal, reach, on_change=on_change)
        self.last_reconciliation = rec
        if adopted or first:
            self._align_endpoint()
        return rec

    def _align_endpoint(self) -> None:
        """Point the service's name at the journal's primary: published when absent (the first cycle),
        moved after the cluster's state was adopted. A later failover's compare-and-swap expects the
        name to hold the primary it replaces."""
        if self.endpoints is None:
            return
        row = self.journal.cluster(self.service)
        if row is None:
            return
        cur = self.endpoints.lookup(self.service)
        t = self.backend.target(row.primary)
        if cur is not None and cur.address == t.host:
            return
        why = "published" if cur is None else "adopted the cluster's state"
        self.endpoints.switch(self.service, address=t.host, port=t.port, site=row.primary,
                              expect=None if cur is None else cur.address,
                              reason=f"{why}: primary {row.primary} at epoch {row.epoch}")
        log.warning("%s: name %s -> %s (%s, %s)", self.service, "(absent)" if cur is None else cur.address, t.host,
                    row.primary, why)

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


def decision_dict(d: Decision) -> dict[str, Any]:
    return {"action": d.action.value, "service": d.service, "primary": d.primary, "epoch": d.epoch,
            "target": d.target, "new_epoch": d.new_epoch, "rule": d.rule.value if d.rule else None,
            "deciders": list(d.deciders), "reason": d.reason, "evidence": list(d.evidence), "at": d.at}




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


def status_payload(ctl: Controller, endpoints: EndpointPort) -> dict[str, Any]:
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
    ep = endpoints.lookup(ctl.service)
    d = ctl.last_decision
    rec = ctl.last_reconciliation
    source = {"outcome": rec.outcome.value if rec else "unknown", "reason": rec.reason if rec else "",
              "adopted": [x["reason"] for x in ctl.decision_log if x["action"] == "adopt"]}
    return {"service": ctl.service, "primary": view.primary, "epoch": view.epoch, "fenced": list(view.fenced),
            "next_epoch": view.next_epoch, "source": source,
            "members": members, "healthy": health.get("healthy"),
            "endpoint": None if ep is None else {"address": ep.address, "port": ctl.backend.target(view.primary).port,
                                                 "site": ctl.backend.site_of(ep.address), "generation": ep.version},
            "decision": None if d is None else decision_dict(d),
            "runs": [asdict(r) for r in ctl.journal.runs(ctl.service)[-5:]]}
