"""Step ``rollback``: the ``before_rollback`` hooks, the target services stopped (the targets are kept
for inspection), the legacy services started again as declared, the endpoint back on the legacy host,
and every legacy check passing. Run by the driver after a failed verify (a failing check or smoke
test), by a resume that finds a cutover cut short, and by ``govcloud migrate rollback SYSTEM``.

Journal: the intent with the reason; outcome ``rolled_back``.
"""

from __future__ import annotations

from govcloud.migrate.records import targets_from_fact
from govcloud.migrate.state import Action, Event
from govcloud.services.migration import apps
from govcloud.services.migration.context import RunContext
from govcloud.services.migration.work import Work


def run(ctx: RunContext, w: Work, reason: str = "") -> None:
    targets = targets_from_fact(ctx.fact(w.id, "targets"))
    with ctx.step(w, Action.ROLLBACK, {"reason": reason[:300]}, event=Event.ROLLED_BACK) as out:
        cur = ctx.ports.endpoints.lookup(w.id)
        apps.restore_legacy(ctx, w, targets, switched_to=cur.address if cur else None, reason=reason)
        out["legacy_healthy"] = True
