"""A system's hooks (docs/inventory.md, "Hook points"): commands its owner runs at fixed points of a
migration, each on the host it names, with its timeout, its output kept in the journal.

Where a hook runs: ``before_cutover`` and ``before_rollback`` on the named legacy host (the system
lives there, or is going back there); ``after_cutover`` and ``smoke_test`` on that host's primary
target (the system lives there now). A hook of ``before_cutover``, ``after_cutover`` or ``smoke_test``
that fails (non-zero exit, timeout, unreachable host) fails its step, which puts the system back on its
legacy hosts; a failing ``before_rollback`` hook is journaled and the rollback goes on (a rollback is
never held up). Every run is the journal fact ``hook``: point, host, command, exit status, seconds and
the tail of its output, with anything that looks like a secret masked.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from govcloud.adapters.ports import Endpoint
from govcloud.errors import MigrationError, SSHError
from govcloud.migrate.records import Target
from govcloud.model.services import Hook, HookPoint
from govcloud.services.migration.context import RunContext
from govcloud.services.migration.work import Work

FACT = "hook"
OUTPUT_CHARS = 2000  # the tail of a hook's output kept in the journal
_SECRET = re.compile(r"(?i)\b([\w.-]*(?:password|passwd|secret|token|api[_-]?key|private[_-]?key)[\w.-]*)"
                     r"(\s*[:=]\s*|\s+)(\"[^\"]*\"|'[^']*'|\S+)")
_KEY_BLOCK = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.DOTALL)
ON_TARGET = (HookPoint.AFTER_CUTOVER, HookPoint.SMOKE_TEST)


def redact(text: str) -> str:
    """``text`` with private keys and ``password=...``-like values masked (the journal is read widely)."""
    text = _KEY_BLOCK.sub("<private key masked>", text)
    return _SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


@dataclass(frozen=True)
class HookRun:
    """One hook's run, as the journal keeps it."""

    point: str
    host: str
    command: str
    status: int
    seconds: float
    output: str

    def to_fact(self) -> dict[str, object]:
        return {"point": self.point, "host": self.host, "command": redact(self.command), "status": self.status,
                "seconds": self.seconds, "output": self.output}


def _where(ctx: RunContext, w: Work, hook: Hook, targets: Sequence[Target]) -> Endpoint:
    if hook.point in ON_TARGET:
        t = next((t for t in targets if t.legacy_host == hook.host and t.primary), None)
        if t is None:
            raise MigrationError(f"{w.id}: {hook.point.value} hook: host {hook.host} has no primary target")
        return ctx.target_ep(t)
    return ctx.legacy_ep(w.system, hook.host)


def _run_one(ctx: RunContext, w: Work, hook: Hook, targets: Sequence[Target]) -> HookRun:
    t0 = time.monotonic()
    try:
        ep = _where(ctx, w, hook, targets)
        r = ctx.ports.hosts.run(ep, hook.command, timeout=hook.timeout_s)
        status, output, label = r.status, (r.stdout + r.stderr), ep.label
    except (SSHError, MigrationError) as exc:
        status, output, label = 255, exc.message, hook.host
    return HookRun(hook.point.value, label, hook.command, status, round(time.monotonic() - t0, 3),
                   redact(output.strip()[-OUTPUT_CHARS:]))


def run_point(ctx: RunContext, w: Work, point: HookPoint, targets: Sequence[Target], *, must_pass: bool = True) -> None:
    """The hooks of ``point`` in file order, each journaled; the first failure raises when ``must_pass``
    (the later hooks of the point do not run), else every hook runs."""
    for hook in w.system.hooks_at(point):
        run = _run_one(ctx, w, hook, targets)
        ctx.record(w.id, point.value, FACT, run.to_fact())
        if run.status != 0 and must_pass:
            last = run.output.splitlines()[-1] if run.output else ""
            raise MigrationError(f"{w.id}: {point.value} hook `{redact(hook.command)}` on {run.host} exited "
                                 f"{run.status}{': ' + last if last else ''}",
                                 hint=f"see its output: `govcloud migrate log {w.id}` (fact hook)")
