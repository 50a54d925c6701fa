"""Step ``cutover`` (inside the wave's window): the ``before_cutover`` hooks, stop the legacy services
(``apps``: declared order, db hosts last), make each kind of data on the targets equal to the stopped
source, start the target services (db hosts first), switch the endpoint to the primary target, then
the ``after_cutover`` hooks on the targets.

Journal: the intent names the per-migration keys and the window's end; the fact ``source_stopped_at``
as soon as the legacy services are stopped (a resumed cutover keeps the first stop time, so the measured
downtime is honest); outcome ``cutover``. A failure after the stop puts the system back on its legacy
hosts at once (``apps.restore_legacy``) and leaves it ``failed`` with last good ``synced``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from govcloud.errors import GovcloudError, OutsideWindowError, RefusedError
from govcloud.migrate.records import Target, TargetStarts, transfer_keys_for
from govcloud.migrate.services import Control
from govcloud.migrate.state import Action
from govcloud.migrate.targets import window_state
from govcloud.model.services import HookPoint
from govcloud.services.migration import apps, hooks
from govcloud.services.migration.context import Outcome, RunContext
from govcloud.services.migration.kinds import kinds_of
from govcloud.services.migration.options import FACT_WINDOW_END
from govcloud.services.migration.work import Work


def check_window(ctx: RunContext, w: Work) -> str:
    """The ISO end of the window occurrence the cutover runs in; refuses outside it unless told."""
    tz = ZoneInfo(ctx.options.timezone)
    ws = window_state(ctx.wave.window, datetime.now(tz))
    if ws.inside:
        return ws.closes.isoformat()
    if not ctx.options.outside_window:
        ctx.audit("migrate.cutover", w.id, "refused", {"reason": "outside window", "window": str(ctx.wave.window),
                                                       "next_opens": ws.opens.isoformat()})
        raise OutsideWindowError(
            f"{w.id}: cutover refused: now is outside wave {ctx.wave.number}'s window {ctx.wave.window} "
            f"({ctx.options.timezone}); it next opens {ws.opens.isoformat()}",
            hint="run it inside the window, or pass --outside-window (audited) if the change board allows")
    ctx.audit("migrate.cutover", w.id, "outside_window", {"window": str(ctx.wave.window)})
    return datetime.now(tz).isoformat()


def run(ctx: RunContext, w: Work) -> None:
    window_end = check_window(ctx, w)
    targets = ctx.targets(w)
    keys = [k.to_fact() for k in transfer_keys_for(targets)]
    home = w.endpoint_host
    primary = next(t for t in targets if t.primary and t.legacy_host == home.name)
    switched = False
    try:
        with ctx.step(w, Action.CUTOVER, {"transfer_keys": keys, "window_end": window_end}) as out:
            ctx.record(w.id, "cutover", FACT_WINDOW_END, window_end)
            out.update(_stop_and_sync(ctx, w, targets))
            ctx.fault("cutover.after_final_sync", w.id)
            starts = TargetStarts(apps.start_targets(ctx, w, targets))
            out[TargetStarts.KEY] = starts.to_fact()
            ctx.record(w.id, "cutover", TargetStarts.KEY, starts.to_fact())
            ctx.fault("cutover.after_start", w.id)
            _switch(ctx, w, primary)
            switched = True
            ctx.fault("cutover.after_switch", w.id)
            out["endpoint"] = primary.ip
            hooks.run_point(ctx, w, HookPoint.AFTER_CUTOVER, targets)
    except GovcloudError as exc:
        if isinstance(exc, RefusedError):
            raise
        # the legacy service may be stopped: bring it back now (state is failed with last good `synced`)
        apps.restore_legacy(ctx, w, targets, switched_to=primary.ip if switched else None, reason=exc.message)
        raise


def _stop_and_sync(ctx: RunContext, w: Work, targets: Sequence[Target]) -> Outcome:
    """Each kind prepares before the stop (not part of the downtime), then runs its final pass."""
    out: Outcome = {}
    with contextlib.ExitStack() as stack:
        finals = [stack.enter_context(kind.before_stop(ctx, w, targets)) for kind in kinds_of(w)]
        stopped_at = _stopped_at(ctx, w)
        hooks.run_point(ctx, w, HookPoint.BEFORE_CUTOVER, targets)
        apps.legacy_all(ctx, w, Control.STOP)
        if stopped_at is None:
            ctx.record(w.id, "cutover", "source_stopped_at", time.time())
        ctx.fault("cutover.after_stop", w.id)
        for final in finals:
            out.update(final())
    return out


def _switch(ctx: RunContext, w: Work, primary: Target) -> None:
    """The endpoint from the legacy host to the primary target (a compare-and-swap on what it is now:
    a resumed cutover that already switched finds the target's address and switches idempotently)."""
    legacy_addr = w.endpoint_host.address
    cur = ctx.ports.endpoints.lookup(w.id)
    if cur is None:
        ctx.ports.endpoints.switch(w.id, address=legacy_addr, port=ctx.options.app_port, site="legacy", expect="",
                                   reason=f"registered by migration {ctx.run_id}")
        cur = ctx.ports.endpoints.lookup(w.id)
    assert cur is not None
    expect = cur.address if cur.address in (legacy_addr, primary.ip) else legacy_addr
    ctx.record(w.id, "cutover", "switch_intent", {"from": expect, "to": primary.ip})
    apps.switch_endpoint(ctx, w, to=primary.ip, site=primary.site, expect=expect, reason=f"cutover {ctx.run_id}")


def _stopped_at(ctx: RunContext, w: Work) -> float | None:
    """The source stop time of this cutover attempt, if a killed attempt already stopped it."""
    trs = ctx.journal.transitions(ctx.plan.name, w.id)
    last_sync = max((t["at"] for t in trs if t["action"] == Action.WARM_SYNC.value and t["phase"] == "outcome"),
                    default="")
    for f in reversed(ctx.journal.facts(ctx.plan.name, w.id, "source_stopped_at")):
        return float(f["value"]) if f["at"] > last_sync else None
    return None
