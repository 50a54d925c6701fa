"""Health of a system's services: every declared check on every host that runs the service, each tried
every ``interval_s`` until it passes or its ``deadline_s`` has passed.

Why this shape: a check is the service's own definition of "up" (docs/inventory.md, "Services"), so
the engine judges a started copy by exactly the checks its owner declared, and by nothing else. The
system's ``ready_check`` (if named) is awaited first, on every host that declares it: when it does not
pass, the other checks are not waited out. Then all the other checks run side by side; all must pass.
http and tcp probes run from the controller against the host's address; a command probe runs on the
host over SSH and passes when it exits 0 within its timeout.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from govcloud.adapters.ports import Endpoint
from govcloud.errors import SSHError
from govcloud.model import Host
from govcloud.model.services import (
    CommandProbe,
    HealthCheck,
    HttpProbe,
    Service,
    TcpProbe,
)
from govcloud.services.migration.context import RunContext
from govcloud.services.migration.work import Work

PROBE_TIMEOUT_S = 3.0  # one http or tcp attempt (never longer than the check's interval plus this)


@dataclass(frozen=True)
class Probed:
    """A host whose services are checked: the inventory host (its services), where it answers now
    (the legacy address, or its target's), and how to reach it over SSH for command checks."""

    host: Host
    address: str
    ep: Endpoint


@dataclass(frozen=True)
class _Job:
    at: Probed
    service: Service
    check: HealthCheck

    def describe(self) -> str:
        p = self.check.probe
        if isinstance(p, HttpProbe):
            how = f"GET http://{self.at.address}:{p.port}{p.path} expecting {p.status}" + (
                f" and {p.body!r} in the body" if p.body else "")
        elif isinstance(p, TcpProbe):
            how = f"TCP connect to {self.at.address}:{p.port}"
        else:
            how = f"`{p.run}` exiting 0"
        return f"check {self.service.name}/{self.check.name} on {self.at.ep.label} ({how})"


def _attempt(ctx: RunContext, job: _Job) -> bool:
    p = job.check.probe
    if isinstance(p, HttpProbe):
        return ctx.ports.health.http(job.at.address, p, timeout=PROBE_TIMEOUT_S)
    if isinstance(p, TcpProbe):
        return ctx.ports.health.tcp(job.at.address, p.port, timeout=PROBE_TIMEOUT_S)
    assert isinstance(p, CommandProbe)
    try:
        return ctx.ports.hosts.run(job.at.ep, p.run, timeout=p.timeout_s).status == 0
    except SSHError:
        return False


def _deadline(ctx: RunContext, check: HealthCheck) -> float:
    """The check's deadline, shortened by ``MigrateOptions.health_timeout`` when that is set (tests)."""
    cap = ctx.options.health_timeout
    return check.deadline_s if cap is None else min(check.deadline_s, cap)


def _wait(ctx: RunContext, job: _Job) -> str:
    """"" once the check passes; what failed at its deadline otherwise."""
    end = time.monotonic() + _deadline(ctx, job.check)
    while True:
        if _attempt(ctx, job):
            return ""
        if time.monotonic() + job.check.interval_s > end:
            return f"{job.describe()} not passing after {_deadline(ctx, job.check):g}s"
        time.sleep(job.check.interval_s)  # a service has no readiness push: poll with its declared interval


def _run(ctx: RunContext, jobs: Sequence[_Job]) -> list[str]:
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(jobs))) as pool:
        return [bad for bad in pool.map(lambda j: _wait(ctx, j), jobs) if bad]


def wait_healthy(ctx: RunContext, w: Work, hosts: Sequence[Probed]) -> list[str]:
    """What did not pass (empty: every check of every service on every host passed), the ready check first."""
    jobs = [_Job(at, s, c) for at in hosts for s in at.host.services for c in s.checks]
    ref = w.system.ready_check
    ready = [j for j in jobs if ref is not None and (j.service.name, j.check.name) == (ref.service, ref.check)]
    bad = _run(ctx, ready)
    if bad:
        return bad
    return _run(ctx, [j for j in jobs if j not in ready])
