"""The declared services on both sides, shared by the steps that stop, start, probe or switch them:
each host's services by their control (in the order ``govcloud.migrate.services`` decides), health
checks (``checks``), and putting a system back on its legacy hosts (what a failed cutover and a
rollback both need). A host that declares no services has nothing to stop or start: its data moves alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from govcloud.adapters.ports import Endpoint
from govcloud.errors import DnsConflictError, MigrationError, SSHError
from govcloud.migrate.records import Target
from govcloud.migrate.services import (
    Control,
    control_command,
    host_groups,
    service_order,
    systemd_units,
)
from govcloud.model import Host
from govcloud.model.services import HookPoint
from govcloud.services.migration import checks, hooks
from govcloud.services.migration.context import RunContext
from govcloud.services.migration.work import Work

log = logging.getLogger(__name__)

START_ERRORS = "target_start_errors"  # fact: target name -> what failed in its start (for verify's message)
T = TypeVar("T")


@dataclass(frozen=True)
class ControlFailure:
    """A control action that exited non-zero: which service, by which unit or command, on which host."""

    service: str
    what: str
    host: str
    status: int
    output: str

    def text(self, action: Control) -> str:
        tail = f": {self.output}" if self.output else ""
        return f"{action.value} of service {self.service} ({self.what}) on {self.host} exited {self.status}{tail}"


def control_host(ctx: RunContext, ep: Endpoint, host: Host, action: Control, *,
                 reload_units: bool = False) -> ControlFailure | None:
    """``action`` on each service of ``host`` reached at ``ep``, in its order; stops at the first failure
    (a later service may need the one that failed). ``reload_units``: a target's units may have arrived
    with its synced directories, so systemd reads them again before the first start."""
    if reload_units and systemd_units(host):
        ctx.ports.hosts.run(ep, "systemctl daemon-reload", timeout=60)
    for service in service_order(host, action):
        cmd = control_command(service, action)
        if cmd is None:
            continue
        r = ctx.ports.hosts.run(ep, cmd.command, timeout=cmd.timeout_s)
        if r.status != 0:
            return ControlFailure(service.name, cmd.what, ep.label, r.status, (r.stderr or r.stdout).strip()[-300:])
    return None


def _in_order(items: Sequence[T], role_of: Callable[[T], str], action: Control,
              one: Callable[[T], ControlFailure | None]) -> list[tuple[T, ControlFailure | None]]:
    """``one`` on every item, group after group (``host_groups``: db hosts start first, stop last), the
    members of a group side by side."""
    out: list[tuple[T, ControlFailure | None]] = []
    for group in host_groups(items, role_of, action):
        with ThreadPoolExecutor(max_workers=len(group)) as pool:
            out += zip(group, pool.map(one, group), strict=True)
    return out


def legacy_all(ctx: RunContext, w: Work, action: Control) -> None:
    """``start`` / ``stop`` the declared services on every legacy host of the system; raises naming
    each service, its unit or command and its host that failed."""
    done = _in_order(w.system.hosts, lambda h: h.role, action,
                     lambda h: control_host(ctx, ctx.legacy_ep(w.system, h.name), h, action))
    failed = [f for _, f in done if f is not None]
    if failed:
        raise MigrationError(f"{w.id}: " + "; ".join(f.text(action) for f in failed),
                             hint=f"check the service on the legacy host: `{_status_hint(w, failed[0])}`")


def _status_hint(w: Work, f: ControlFailure) -> str:
    host = next((h for h in w.system.hosts if f.host.startswith(h.name)), None)
    svc = host.service(f.service) if host else None
    cmd = control_command(svc, Control.STATUS) if svc else None
    return cmd.command if cmd else f.what


def targets_all(ctx: RunContext, w: Work, targets: Sequence[Target], action: Control) -> dict[str, ControlFailure]:
    """``action`` on every target's services (those of the legacy host it copies); target name -> what
    failed (empty: all did it)."""
    def one(t: Target) -> ControlFailure | None:
        ep = ctx.target_ep(t)
        try:
            return control_host(ctx, ep, w.host(t.legacy_host), action, reload_units=action is Control.START)
        except SSHError as exc:  # one unreachable target is its own failure, not the others'
            return ControlFailure("*", "ssh", ep.label, 255, exc.message[-300:])

    done = _in_order(list(targets), lambda t: w.host(t.legacy_host).role, action, one)
    return {t.name: f for t, f in done if f is not None}


def start_targets(ctx: RunContext, w: Work, targets: Sequence[Target]) -> dict[str, int]:
    """Start every target's services; target name -> exit status of its start (0: all started). What
    failed is recorded (fact ``target_start_errors``) for verify to name."""
    failed = targets_all(ctx, w, targets, Control.START)
    ctx.record(w.id, "cutover", START_ERRORS, {name: f.text(Control.START) for name, f in failed.items()})
    return {t.name: failed[t.name].status if t.name in failed else 0 for t in targets}


def start_errors(ctx: RunContext, w: Work) -> Mapping[str, str]:
    value = ctx.fact(w.id, START_ERRORS)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def legacy_probed(ctx: RunContext, w: Work) -> list[checks.Probed]:
    return [checks.Probed(h, h.address, ctx.legacy_ep(w.system, h.name)) for h in w.system.hosts]


def target_probed(ctx: RunContext, w: Work, targets: Sequence[Target]) -> list[checks.Probed]:
    return [checks.Probed(w.host(t.legacy_host), t.ip, ctx.target_ep(t)) for t in targets]


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
    """The ``before_rollback`` hooks, target services stopped (the targets are kept), legacy services
    started, endpoint back on the legacy host, and every legacy check passing again."""
    hooks.run_point(ctx, w, HookPoint.BEFORE_ROLLBACK, targets, must_pass=False)
    for name, f in targets_all(ctx, w, targets, Control.STOP).items():
        log.warning("%s: could not stop the services of target %s: %s", w.id, name, f.text(Control.STOP))
    legacy_all(ctx, w, Control.START)
    home = w.endpoint_host
    if switched_to and switched_to != home.address:
        switch_endpoint(ctx, w, to=home.address, site="legacy", expect=switched_to,
                        reason=f"rollback {ctx.run_id}: {reason[:120]}", audit_reason="rollback")
    bad = checks.wait_healthy(ctx, w, legacy_probed(ctx, w))
    if bad:
        raise MigrationError(f"{w.id}: legacy services not healthy again after rollback: {'; '.join(bad)}",
                             hint="start them by hand on the legacy host (their start commands or systemctl start)")
