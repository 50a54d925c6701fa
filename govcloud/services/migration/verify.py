"""Step ``verify``: every target app healthy, and each kind of data still equal to the source as it
was at the stop. The downtime (source stopped -> targets healthy) is measured here.

Journal: facts ``downtime_seconds``; outcome ``verified``, or ``failed`` - after which the driver rolls
the system back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from govcloud.errors import MigrationError
from govcloud.migrate.records import Target, TargetStarts
from govcloud.migrate.state import Action
from govcloud.services.migration import apps
from govcloud.services.migration.context import RunContext
from govcloud.services.migration.kinds import kinds_of
from govcloud.services.migration.options import FACT_DOWNTIME, TARGET_APP_CTL
from govcloud.services.migration.work import Work


def run(ctx: RunContext, w: Work) -> None:
    targets = ctx.targets(w)
    ips = [t.ip for t in targets]
    with ctx.step(w, Action.VERIFY, {"targets": ips}) as out:
        not_started = _failed_starts(ctx, w, targets)
        if not_started:  # its control said the start failed: no health deadline to wait out
            raise MigrationError(f"{w.id}: target app not healthy: its start failed on "
                                 f"{', '.join(f'{t.name} ({t.ip}, exit {rc})' for t, rc in not_started)}",
                                 hint=f"inspect the target (kept): {TARGET_APP_CTL} start; /srv/app/sampleapp.log")
        bad = apps.wait_healthy(ctx, ips, ctx.options.health_timeout)
        healthy_at = time.time()
        if bad:
            raise MigrationError(f"{w.id}: target app not healthy on {', '.join(bad)} within "
                                 f"{ctx.options.health_timeout:.0f}s (GET /health)",
                                 hint=f"inspect the target (kept): {TARGET_APP_CTL} status; /srv/app/sampleapp.log")
        for kind in kinds_of(w):
            kind.check(ctx, w, targets)
        stopped = ctx.fact(w.id, "source_stopped_at")
        downtime = round(healthy_at - float(stopped), 3) if stopped is not None else None
        if downtime is not None:
            ctx.record(w.id, "verify", FACT_DOWNTIME, downtime)
        out.update({"healthy": ips, "downtime_seconds": downtime})
        ctx.fault("verify.before_outcome", w.id)


def _failed_starts(ctx: RunContext, w: Work, targets: Sequence[Target]) -> list[tuple[Target, int]]:
    """Targets whose app's start exited non-zero at the last cutover (its control's own verdict)."""
    started = TargetStarts.from_fact(ctx.fact(w.id, TargetStarts.KEY))
    return [(t, started.exit_status(t.name)) for t in targets if started.exit_status(t.name) != 0]
