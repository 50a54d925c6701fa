"""Step ``verify``: every declared health check passing on every target (``checks``: the ready check
first), each kind of data proven equal to the source as it was at the stop (by the final pass,
before the targets started), then the ``smoke_test`` hooks. The downtime (source stopped -> targets healthy) is measured here.

Journal: facts ``downtime_seconds`` and one ``hook`` per smoke test; outcome ``verified``, or ``failed``
- after which the driver rolls the system back (a failing smoke test exactly as a failing check).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from govcloud.errors import MigrationError
from govcloud.migrate.records import Target, TargetStarts
from govcloud.migrate.state import Action
from govcloud.model.services import HookPoint
from govcloud.services.migration import apps, checks, hooks
from govcloud.services.migration.context import RunContext
from govcloud.services.migration.kinds import kinds_of
from govcloud.services.migration.options import FACT_DOWNTIME
from govcloud.services.migration.work import Work


def run(ctx: RunContext, w: Work) -> None:
    targets = ctx.targets(w)
    ips = [t.ip for t in targets]
    with ctx.step(w, Action.VERIFY, {"targets": ips}) as out:
        not_started = _failed_starts(ctx, w, targets)
        if not_started:  # its control said the start failed: no health deadline to wait out
            errors = apps.start_errors(ctx, w)
            raise MigrationError(f"{w.id}: target services not healthy: their start failed on "
                                 + "; ".join(f"{t.name} ({t.ip}, exit {rc})" + (f": {errors[t.name]}" if t.name in
                                                                                  errors else "")
                                             for t, rc in not_started),
                                 hint="inspect the target (kept): the service's status command or "
                                      "`systemctl status <unit>`, and its logs")
        bad = checks.wait_healthy(ctx, w, apps.target_probed(ctx, w, targets))
        healthy_at = time.time()
        if bad:
            raise MigrationError(f"{w.id}: target services not healthy: {'; '.join(bad)}",
                                 hint="inspect the target (kept): the service's status and logs; the legacy "
                                      "services are started again")
        for kind in kinds_of(w):
            kind.check(ctx, w, targets)
        stopped = ctx.fact(w.id, "source_stopped_at")
        downtime = round(healthy_at - float(stopped), 3) if stopped is not None else None
        if downtime is not None:
            ctx.record(w.id, "verify", FACT_DOWNTIME, downtime)
        hooks.run_point(ctx, w, HookPoint.SMOKE_TEST, targets)
        out.update({"healthy": ips, "downtime_seconds": downtime})
        ctx.fault("verify.before_outcome", w.id)


def _failed_starts(ctx: RunContext, w: Work, targets: Sequence[Target]) -> list[tuple[Target, int]]:
    """Targets whose services' start exited non-zero at the last cutover (their control's own verdict)."""
    started = TargetStarts.from_fact(ctx.fact(w.id, TargetStarts.KEY))
    return [(t, started.exit_status(t.name)) for t in targets if started.exit_status(t.name) != 0]
