"""The applications on both sides, shared by the steps that stop, start, probe or switch them:
the legacy app's control on every legacy host, the target app's, health polling, and putting a
system back on its legacy hosts (what a failed cutover and a rollback both need)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from govcloud.errors import DnsConflictError, MigrationError, SSHError
from govcloud.migrate.records import Target
from govcloud.model import Host
from govcloud.services.migration.context import RunContext
from govcloud.services.migration.options import LEGACY_APP_CTL, TARGET_APP_CTL
from govcloud.services.migration.work import Work

log = logging.getLogger(__name__)

HEALTH_POLL_SECONDS = 0.2


def legacy_all(ctx: RunContext, w: Work, action: str) -> None:
    """``start`` / ``stop`` the legacy app on every legacy host of the system, side by side."""

    def one(h: Host) -> None:
        r = ctx.ports.hosts.app(ctx.legacy_ep(w.system, h.name), LEGACY_APP_CTL, action)
        if r.status != 0:
            raise MigrationError(f"{w.id}: `{action}` of the legacy app on {h.name} ({h.address}) exited {r.status}: "
                                 f"{(r.stderr or r.stdout).strip()[-300:]}",
                                 hint=f"check /srv/app/sampleapp.log on {h.name}")

    with ThreadPoolExecutor(max_workers=max(1, len(w.system.hosts))) as pool:
        list(pool.map(one, w.system.hosts))


def target_app(ctx: RunContext, t: Target, action: str) -> int:
    """``start`` / ``stop`` the target app; its exit status."""
    return ctx.ports.hosts.app(ctx.target_ep(t), TARGET_APP_CTL, action).status


def wait_healthy(ctx: RunContext, addresses: Sequence[str], timeout: float) -> list[str]:
    """The addresses still unhealthy at the deadline (empty: all healthy)."""
    end = time.monotonic() + timeout
    left = list(addresses)
    while left:
        left = [a for a in left if not ctx.ports.health.healthy(a, ctx.options.app_port)]
        if not left or time.monotonic() > end:
            break
        time.sleep(HEALTH_POLL_SECONDS)  # the app has no readiness push: poll with a deadline
    return left


def switch_endpoint(ctx: RunContext, w: Work, *, to: str, site: str, expect: str, reason: str,
                    audit_reason: str = "") -> None:
    """Compare-and-swap the system's endpoint from ``expect`` to ``to``, audited; a refusal (the
    record was changed by someone else) is audited too, and nothing is changed."""
    detail = {"from": expect, "to": to, **({"reason": audit_reason} if audit_reason else {})}
    try:
        ctx.ports.endpoints.switch(w.id, address=to, port=ctx.options.app_port, site=site, expect=expect, reason=reason)
    except DnsConflictError as exc:
        ctx.audit("name.switch", w.id, "refused", {**detail, "error": exc.message})
        ctx.record(w.id, "dns", "refused", {"from": expect, "to": to, "error": exc.message})
        raise
    ctx.audit("name.switch", w.id, "ok", detail)


def restore_legacy(ctx: RunContext, w: Work, targets: Sequence[Target], *, switched_to: str | None, reason: str) -> None:
    """Target apps stopped (the targets are kept), legacy app started, endpoint back on the legacy
    host, and the legacy app healthy again."""
    for t in targets:
        try:
            target_app(ctx, t, "stop")
        except SSHError as exc:
            log.warning("%s: could not stop the target app on %s: %s", w.id, t.name, exc)
    legacy_all(ctx, w, "start")
    home = w.endpoint_host
    if switched_to and switched_to != home.address:
        switch_endpoint(ctx, w, to=home.address, site="legacy", expect=switched_to,
                        reason=f"rollback {ctx.run_id}: {reason[:120]}", audit_reason="rollback")
    bad = wait_healthy(ctx, [h.address for h in w.system.hosts], ctx.options.health_timeout)
    if bad:
        raise MigrationError(f"{w.id}: legacy app not healthy again on {', '.join(bad)} after rollback",
                             hint="start it by hand: python3 /srv/app/sampleapp.py start")
