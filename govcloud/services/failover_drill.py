"""Failover drills on the devcloud lab: break links, keep writing, let the controller decide and act, report.

A drill is a lab tool: it cuts links with ``devcloud.lab`` (imported lazily here, never by the core),
keeps a writer committing numbered rows through the service's name the whole time (resolved as a
client does; every acknowledged commit recorded), runs the controller cycle by cycle (the lease acting for the primary's own agent),
executes a failover decision as soon as one is made, restores the links at the end, and reports
detection time, RTO (loss -> writable), RPO (acknowledged commits lost) and the decision log.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from govcloud.adapters.postgres import PostgresError, Writer, present_ids
from govcloud.errors import InvalidInputError
from govcloud.failover.model import Action, FailoverRefused, Policy
from govcloud.services.failover import (
    ClusterRow,
    Controller,
    Executor,
    Journal,
    RunResult,
    decision_dict,
)
from govcloud.services.failover_lab import LabBackend, WitnessListener, lab_names
from govcloud.services.names import NameService

log = logging.getLogger(__name__)

SCENARIOS = ("site-loss:gz-a", "region-loss:gz", "partition:gz-a/st-a", "flap:gz-b")
#: the policy the lab drills use: short, and still lease + max gap <= grace (see docs/failover.md)
LAB_POLICY = Policy(grace_s=4.0, lease_s=2.0, max_gap_s=1.5, max_age_s=2.5, witness="controller")


@dataclass(frozen=True)
class Scenario:
    kind: str  # site-loss | region-loss | partition | flap
    sites: tuple[str, ...]
    text: str

    @property
    def expects_failover(self) -> bool:
        return self.kind in ("site-loss", "region-loss")


def parse_scenario(text: str, regions: dict[str, str]) -> Scenario:
    """``site-loss:gz-a``, ``region-loss:gz``, ``partition:gz-a/st-a``, ``flap:gz-b`` (InvalidInputError otherwise)."""
    kind, _, arg = text.partition(":")
    hint = f"one of {', '.join(SCENARIOS)} (any lab site or region)"
    if kind in ("site-loss", "flap") and arg in regions:
        return Scenario(kind, (arg,), text)
    if kind == "region-loss" and arg in set(regions.values()):
        return Scenario(kind, tuple(s for s, r in sorted(regions.items()) if r == arg), text)
    if kind == "partition":
        a, _, b = arg.partition("/")
        if a in regions and b in regions and a != b:
            return Scenario(kind, (a, b), text)
    raise InvalidInputError(f"unknown drill scenario {text!r}", hint=hint)


@dataclass
class DrillOptions:
    interval_s: float = 0.5  # one controller cycle (probe round + decision) every interval
    deadline_s: float = 40.0  # a failover scenario must be writable again within this (RTO target is 15 s)
    observe_s: float = 12.0  # how long a no-failover scenario is watched
    flap_down_s: float = 1.5
    flap_up_s: float = 1.5
    policy: Policy = field(default_factory=lambda: LAB_POLICY)


def run_drill(root: Path, scenario_text: str, opts: DrillOptions | None = None, *, lab: Any | None = None,
              report_dir: Path | None = None) -> dict[str, Any]:
    """Run one drill on the lab; returns (and writes) the report. Links are restored whatever happens."""
    opts = opts or DrillOptions()
    backend = LabBackend(lab)
    sc = parse_scenario(scenario_text, backend.sites())
    journal = Journal(root / ".govcloud" / "failover.db")
    names = lab_names()
    ctl = Controller(backend, journal, opts.policy, publish_path=root / ".govcloud" / "failover.json",
                     enforce_lease=True, endpoints=names)
    try:
        return _drill(backend, journal, names, ctl, sc, opts, report_dir or root / ".govcloud" / "drills")
    finally:
        journal.close()


def _drill(backend: LabBackend, journal: Journal, names: NameService, ctl: Controller, sc: Scenario,
           opts: DrillOptions, report_dir: Path) -> dict[str, Any]:
    """Phases: check the cluster is healthy and the endpoint at its primary, start the writer and the
    witness, break the links, run the controller until it failed over (or the watch ends), restore the
    links, count what was lost, write the report."""
    row = _require_healthy(backend, ctl, sc)  # the controller's first cycle published the name at the primary
    t_primary = backend.target(row.primary)
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"

    def endpoint() -> tuple[Any, str] | None:
        addresses = names.resolve(backend.service)  # as a client: the first server that answers
        site = None if not addresses else backend.site_of(min(addresses))
        return None if site is None else (backend.target(site), site)

    writer = Writer(run_id, endpoint)
    writer.prepare(t_primary)
    witness = WitnessListener(port=backend.witness_port).start()
    run = _DrillRun(backend, ctl, Executor(backend, journal, names, reachable=backend.reachable), writer, sc, opts)
    try:
        writer.start()
        _poll(lambda: len(writer.acked()) >= 10, 15, "the writer's first commits")
        for _ in range(3):  # warm up: a history of healthy snapshots
            ctl.cycle()
        run.break_links()
        run.watch()
        if run.result is not None:
            run.names["clients_after_failover"] = _clients_follow(backend, names, run.result.run.new_primary, sc)
    finally:
        restored_at = run.restore_links()
        if sys.exc_info()[0] is not None:  # failing: stop our threads and free the witness port too
            writer.stop()
            witness.stop()
    try:
        _poll(lambda: writer.first_ack_after(restored_at) is not None, 20, "a write after the links were restored")
    except TimeoutError:
        log.warning("no acknowledged write after the links were restored")
    writer.stop()
    witness.stop()
    if run.result is not None:
        run.names.update(_servers_after_restore(names, backend.target(row.primary).host, restored_at))
    for _ in range(2):
        ctl.cycle()
    report = run.report(journal, run_id, epoch_before=row.epoch)
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"{run_id}-{sc.text.replace(':', '_').replace('/', '_')}.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    report["report_path"] = str(path)
    return report


def _require_healthy(backend: LabBackend, ctl: Controller, sc: Scenario) -> ClusterRow:
    """A drill starts from one writable member at the journal's primary, where the scenario strikes."""
    health = backend.healthy()
    row = ctl.cluster()
    primaries = backend.primaries()
    if not health["healthy"] or primaries != [row.primary]:
        raise FailoverRefused(
            f"drill {sc.text}: the cluster is not healthy (writable members {primaries or 'none'}, journal primary "
            f"{row.primary} at epoch {row.epoch}, streaming standbys {health['streaming'] or 'none'})",
            hint="run `govcloud failover failback --switch-back` (or `devcloud lab pg up`) first")
    if sc.kind == "site-loss" and row.primary != sc.sites[0]:
        raise FailoverRefused(f"drill {sc.text}: the primary is in {row.primary}, not {sc.sites[0]}",
                              hint="run `govcloud failover failback --switch-back` first")
    if sc.kind == "region-loss" and row.primary not in sc.sites:
        raise FailoverRefused(f"drill {sc.text}: the primary {row.primary} is not in that region",
                              hint="run `govcloud failover failback --switch-back` first")
    return row


@dataclass
class _DrillRun:
    """One drill's moving parts: what is cut, when the loss began, and the failover the controller ran."""

    backend: LabBackend
    ctl: Controller
    executor: Executor
    writer: Writer
    sc: Scenario
    opts: DrillOptions
    cut: list[str] = field(default_factory=list)
    partitioned: tuple[str, str] | None = None
    result: RunResult | None = None
    first: dict[str, float] = field(default_factory=dict)
    loss_at: float = 0.0
    cut_call_s: float = 0.0
    names: dict[str, Any] = field(default_factory=dict)  # what clients and servers answered for the name

    def break_links(self) -> None:
        sc, lab = self.sc, self.backend.lab
        asked = time.time()
        if sc.kind == "partition":
            lab.partition(*sc.sites)
            self.partitioned = (sc.sites[0], sc.sites[1])
            what = f"partition {sc.sites[0]} <-> {sc.sites[1]}"
        else:  # site-loss, region-loss, flap
            for s in sc.sites:
                lab.cut(s)
                self.cut.append(s)
            what = f"cut {' and '.join(sc.sites)}"
        # the loss is complete when the lab has applied the last cut (a cut takes ~0.04 s, but waits for
        # the lab's state lock, which other lab users may hold for seconds): the RTO clock starts here
        self.loss_at = time.time()
        self.cut_call_s = self.loss_at - asked
        self.ctl._log(self.loss_at, "lab", f"{what} (applied in {self.cut_call_s:.2f} s)")

    def watch(self) -> None:
        """Controller cycles until the failover is writable for clients, or the watch ends."""
        sc, opts, loss_at = self.sc, self.opts, self.loss_at
        flap_next = loss_at + opts.flap_down_s
        end = loss_at + (opts.deadline_s if sc.expects_failover else opts.observe_s)
        while time.time() < end:
            started = time.monotonic()
            d = self.ctl.cycle()
            now = time.time()
            if d.action is not Action.NONE and d.action is not Action.REFUSE:
                self.first.setdefault(f"first_{d.action.value}", now - loss_at)
            if sc.kind == "flap" and now >= flap_next:
                flap_next = now + self._flap()
            if d.action is Action.FAILOVER and self.result is None:
                self.first.setdefault("detected", now - loss_at)
                self.result = self.executor.execute(
                    d, loss_at, measure=lambda new, la: _measure(self.backend, self.writer, new, la))
                self.ctl.publish()
                if not sc.expects_failover:
                    break
            if (self.result is not None and sc.expects_failover
                    and self.writer.first_ack_after(loss_at, self.result.run.new_primary) is not None):
                break
            _pace(started, opts.interval_s)

    def _flap(self) -> float:
        """Restore a cut link or cut it again; returns how long until the next flip."""
        site, lab = self.sc.sites[0], self.backend.lab
        if self.cut:
            lab.restore(site)
            self.cut.clear()
        else:
            lab.cut(site)
            self.cut.append(site)
        self.ctl._log(time.time(), "lab", f"{'cut' if self.cut else 'restore'} {site}")
        return self.opts.flap_down_s if self.cut else self.opts.flap_up_s

    def restore_links(self) -> float:
        lab = self.backend.lab
        for s in self.cut:
            lab.restore(s)
        if self.partitioned is not None:
            lab.heal(*self.partitioned)
        restored_at = time.time()
        if self.cut or self.partitioned:
            self.ctl._log(restored_at, "lab", "links restored")
        return restored_at

    def report(self, journal: Journal, run_id: str, *, epoch_before: int) -> dict[str, Any]:
        """What the drill measured: detection, RTO, lost commits, the cluster after, the decision log."""
        backend, ctl, writer, opts, result = self.backend, self.ctl, self.writer, self.opts, self.result
        after = journal.cluster(backend.service)
        assert after is not None
        primaries_after = backend.primaries()
        acked = writer.acked()
        lost: list[int] = []
        try:
            have = present_ids(backend.target(after.primary), run_id)
            lost = sorted(a.id for a in acked if a.id not in have)
        except PostgresError as exc:
            log.warning("cannot count lost commits: %s", exc)
        client_rto = None
        if result is not None:
            ack = writer.first_ack_after(self.loss_at, result.run.new_primary)
            client_rto = None if ack is None else ack.at - self.loss_at
        return {
            "scenario": self.sc.text,
            "run": run_id,
            "policy": {"grace_s": opts.policy.grace_s, "lease_s": opts.policy.lease_s,
                       "max_gap_s": opts.policy.max_gap_s, "interval_s": opts.interval_s},
            "loss_at": self.loss_at,
            "cut_call_s": self.cut_call_s,
            "expected_failover": self.sc.expects_failover,
            "failover": result is not None,
            "detection_s": self.first.get("detected"),
            "first_suspicion_s": self.first.get("first_wait"),
            "rto_s": result.run.rto_s if result else None,
            "client_rto_s": client_rto,
            "lost_commits": len(lost),
            "lost_ids": lost[:50],
            "rpo_s": result.run.rpo_s if result else 0.0,
            "acknowledged_commits": len(acked),
            "writer_errors": len(writer.errors),
            "epoch_before": epoch_before,
            "epoch_after": after.epoch,
            "primary_after": after.primary,
            "writable_members_after": primaries_after,
            "exactly_one_primary": len(primaries_after) == 1 and primaries_after == [after.primary],
            "fenced_after": list(after.fenced),
            "self_fenced": [f"{s}@{e}: {why}" for (s, e), why in ctl.self_fenced.items()],
            "steps": [{"number": n, "kind": k, "site": s, "status": st, "detail": det}
                      for n, k, s, st, det in (result.steps if result else [])],
            "names": self.names,
            "move_endpoint_s": self.executor.step_seconds.get("move-endpoint"),
            "decision_log": ctl.decision_log,
            "last_decision": decision_dict(ctl.last_decision) if ctl.last_decision else None,
        }


def _clients_follow(backend: LabBackend, names: NameService, new_primary: str, sc: Scenario) -> dict[str, Any]:
    """After the failover: what a client in each surviving site resolves the name to (its own site's
    server first), polled until it is the new primary or TTL + 2 s have passed."""
    fqdn, want = names.config.name_of(backend.service), backend.target(new_primary).host
    out: dict[str, Any] = {}
    for site in backend.members():
        if site in sc.sites:
            continue
        deadline = time.monotonic() + names.ttl_of(backend.service) + 2
        while True:
            got = backend.client_resolve(site, fqdn)
            if got == want or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # a client's view of the zone: poll with a deadline
        out[site] = {"resolved": got, "expected": want}
    return out


def _servers_after_restore(names: NameService, old: str, restored_at: float) -> dict[str, Any]:
    """Each server asked directly as a client, right after the links came back and until every one
    serves the current address again: none may ever answer the old primary's address."""
    fqdn = names.config.name_of("pg")
    seen: dict[str, set[str]] = {s.site: set() for s in names.config.servers}
    deadline = time.monotonic() + 20
    converged = None
    while time.monotonic() < deadline:
        answers = [names.servers.resolve([s], fqdn) for s in names.config.servers]
        for s, a in zip(names.config.servers, answers):
            seen[s.site].add("refused or no answer" if a is None else ",".join(sorted(a)) or "absent")
        if all(a is not None and old not in a for a in answers):
            converged = time.time() - restored_at
            break
        time.sleep(0.1)  # waiting for the guards to repair and serve again: poll with a deadline
    return {"servers_after_restore": {site: sorted(v) for site, v in seen.items()},
            "old_address": old, "old_address_answered": sorted(site for site, v in seen.items() if old in v),
            "servers_serving_s": converged}


def _measure(backend: LabBackend, writer: Writer, new: str, loss_at: float) -> tuple[int | None, float | None]:
    """Acknowledged commits the new primary lacks, and how far back the oldest of them was acknowledged."""
    try:
        have = present_ids(backend.target(new), writer.run)
    except PostgresError:
        return None, None
    missing = [a for a in writer.acked() if a.id not in have]
    return len(missing), (max(0.0, loss_at - min(a.at for a in missing)) if missing else 0.0)


def _poll(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)  # polling with a deadline


def _pace(started: float, interval: float) -> None:
    left = interval - (time.monotonic() - started)
    if left > 0:
        time.sleep(left)  # the controller's cycle period, not a synchronisation
