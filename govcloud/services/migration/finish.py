"""Step ``finish``: the system is done. The legacy copy stays, stopped and intact, until
``govcloud migrate decommission`` deletes it. Journal: outcome ``done``."""

from __future__ import annotations

from govcloud.migrate.state import Action
from govcloud.services.migration.context import RunContext
from govcloud.services.migration.work import Work


def run(ctx: RunContext, w: Work) -> None:
    with ctx.step(w, Action.FINISH) as out:
        out["legacy"] = "stopped, intact until `govcloud migrate decommission`"
        ctx.fault("finish.before_outcome", w.id)
