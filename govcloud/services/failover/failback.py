"""Failback: rejoin fenced or detached members as standbys, and optionally switch the primary back home."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from govcloud.adapters.failover_journal import ClusterRow, Journal
from govcloud.adapters.postgres import member_state, write_check
from govcloud.adapters.ports import EndpointPort
from govcloud.errors import RuntimeFailure
from govcloud.failover.model import FailoverRefused
from govcloud.failover.reconcile import Outcome
from govcloud.migrate.replication import pg_caught_up
from govcloud.services.failover.backend import Backend, FailoverFailed
from govcloud.services.failover.controller import reconcile_journal


@dataclass
class FailbackResult:
    rejoined: list[tuple[str, str]]  # (site, method)
    switched: str | None
    primary: str
    epoch: int
    seconds: float


def failback(backend: Backend, journal: Journal, endpoints: EndpointPort, *, switch_back: bool = False) -> FailbackResult:
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
            switched = _switchover(backend, journal, endpoints, replace(row, fenced=()), backend.home_primary)
        final = journal.cluster(svc)
        assert final is not None
    return FailbackResult(rejoined, switched, final.primary, final.epoch, time.monotonic() - t0)


def _switchover(backend: Backend, journal: Journal, endpoints: EndpointPort, row: ClusterRow, target: str) -> str:
    """A planned switch to ``target`` with no loss: stop the primary cleanly, let ``target`` replay it all, promote."""
    svc, old = row.service, row.primary
    epoch = reconcile_journal(backend, journal).next_epoch  # above every epoch any member or journal has seen
    run = journal.start_switchover(row, target, epoch)
    backend.stop(old)  # a clean (fast) shutdown sends every WAL record to the standbys first
    lsn = backend.checkpoint_lsn(old)
    deadline = time.monotonic() + 30
    while True:
        st = member_state(backend.target(target))
        if pg_caught_up(lsn, st.lsn):
            break
        if time.monotonic() > deadline:
            raise FailoverFailed(f"{svc}: {target} did not replay up to {old}'s shutdown checkpoint {lsn} in 30 s",
                                 hint=f"start {old} again as primary with `devcloud lab pg up` and investigate")
        time.sleep(0.1)  # polling a remote LSN with a deadline
    backend.promote(target, epoch)
    t = backend.target(target)
    cur = endpoints.lookup(svc)
    endpoints.switch(svc, address=t.host, port=t.port, site=target, expect=None if cur is None else cur.address,
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
