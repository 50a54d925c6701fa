"""The driver: runs a wave's steps from the journal's state.

One run: mark runs a killed process left ``running`` as crashed, revoke per-migration keys a killed
run authorised, plan each system (``govcloud.migrate.steps.next_steps``), then the batch steps
(preflight, provision) for the systems that need them, then per system - in dependency order, at
most ``concurrency`` at a time - whatever its state asks for next, until it is done, waits for a
manual cutover, or fails. The pure core decides what comes next; the step modules do it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from govcloud.adapters.journal import Journal, pid_alive, this_host
from govcloud.errors import GovcloudError, OutsideWindowError, SSHError
from govcloud.migrate.records import TransferKeyRef
from govcloud.migrate.state import Action, Event, State, Status
from govcloud.migrate.steps import StepPlan, next_steps
from govcloud.migrate.targets import order_by_dependencies
from govcloud.services.migration import (
    cutover,
    finish,
    preflight,
    rollback,
    sync,
    targets,
    verify,
)
from govcloud.services.migration.context import RunContext
from govcloud.services.migration.options import (
    FACT_BYTES,
    FACT_DOWNTIME,
    RunSummary,
    SystemResult,
)
from govcloud.services.migration.work import Work

log = logging.getLogger(__name__)

SystemStep = Callable[[RunContext, Work], None]
SYSTEM_STEPS: Mapping[Action, SystemStep] = {
    Action.WARM_SYNC: sync.run, Action.CUTOVER: cutover.run, Action.VERIFY: verify.run, Action.FINISH: finish.run,
    Action.ROLLBACK: rollback.run,
}


def dry_run(ctx: RunContext) -> RunSummary:
    """Each system's step plan from the journal as it is (nothing is written, nothing is opened)."""
    summary = RunSummary("dry-run", ctx.plan.name, ctx.wave.number)
    j = Journal(ctx.journal_file, create=False) if ctx.journal_file.exists() else None
    try:
        for w in ctx.work:
            st = j.status(ctx.plan.name, w.id) if j else Status()
            summary.dry_run.append(next_steps(w.id, st, manual_cutover=ctx.options.manual_cutover))
            summary.targets[w.id] = list(w.specs)
    finally:
        if j:
            j.close()
    return summary


def execute(ctx: RunContext) -> RunSummary:
    """One run of the wave (``run``, ``resume``, ``cutover``), journalled and under the wave's lock."""
    started = time.monotonic()
    j = ctx.journal
    ctx.run_id = j.start_run(ctx.plan.name, ctx.wave.number, ctx.options.command, options=ctx.options.as_record())
    summary = RunSummary(ctx.run_id, ctx.plan.name, ctx.wave.number)
    status = "failed"
    try:
        if ctx.stale_plan is not None:  # --allow-stale-plan: the operator's choice is on the record
            ctx.audit("plan.allow_stale", f"{ctx.plan.name}/wave-{ctx.wave.number}", "allowed", ctx.stale_plan)
        with j.wave_lock(ctx.plan.name, ctx.wave.number, ctx.run_id):
            _mark_crashed_runs(ctx)
            _revoke_leftover_keys(ctx)
            plans = {w.id: _plan_for(ctx, w) for w in ctx.work}
            preflight.run(ctx, [w for w in ctx.work if Action.PREFLIGHT in plans[w.id].steps])
            targets.run(ctx, [w for w in ctx.work if Action.PROVISION in plans[w.id].steps])
            _pipeline(ctx)
            summary.results = [result(ctx, w.id) for w in ctx.work]
            summary.refused = sorted(ctx.refused)
            status = "done" if summary.ok else "failed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        try:
            j.finish_run(ctx.run_id, status)
        finally:
            summary.seconds = time.monotonic() - started
            ctx.close()
    return summary


def _mark_crashed_runs(ctx: RunContext) -> None:
    """Runs of this wave still 'running' whose process is gone were killed: say so (resume takes over)."""
    for r in ctx.journal.runs(ctx.plan.name):
        ours = r["status"] == "running" and r["id"] != ctx.run_id and int(r["wave"]) == ctx.wave.number
        if ours and (r["host"] != this_host() or not pid_alive(int(r["pid"]), None)):
            ctx.journal.finish_run(r["id"], "crashed")


def _revoke_leftover_keys(ctx: RunContext) -> None:
    """Per-migration keys that a killed run authorised (named by its open intents) are revoked now;
    their expiry-time is only the safety net."""
    j = ctx.journal
    for it in j.open_intents(ctx.plan.name):
        pairs = (it.get("detail") or {}).get("transfer_keys") or []
        if not pairs or it["system"] not in ctx.by_id:
            continue
        later = [t for t in j.transitions(ctx.plan.name, it["system"]) if t["id"] > it["id"]]
        if later:  # a later step already ran: this key was dealt with by an earlier resume
            continue
        w = ctx.by_id[it["system"]]
        for doc in pairs:
            try:
                ref = TransferKeyRef.from_fact(doc)
                target = ctx.target_ep_at(ref.target, ref.target_name)
                ctx.ports.hosts.revoke_key(ctx.legacy_ep(w.system, ref.source_host), target, mig_id=ref.mig_id)
                ctx.audit("migrate.revoke_key", it["system"], "ok", {"mig_id": ref.mig_id})
            except (SSHError, OSError, KeyError, StopIteration) as exc:
                log.warning("could not revoke leftover key %s: %s", doc, exc)


def _plan_for(ctx: RunContext, w: Work) -> StepPlan:
    j = ctx.journal
    st = j.ensure_system(ctx.plan.name, w.id, ctx.wave.number)
    sp = next_steps(w.id, st, manual_cutover=ctx.options.manual_cutover)
    if st.state == State.ROLLED_BACK:
        j.mark(ctx.run_id, ctx.plan.name, w.id, Event.RETRY, {"reason": "run again after a rollback"})
    elif sp.reopen:
        j.mark(ctx.run_id, ctx.plan.name, w.id, Event.RESUMED, {"reason": "resume after a failure before cutover"})
    return sp


def result(ctx: RunContext, system: str) -> SystemResult:
    """What the run did for ``system``: its state, this run's bytes, its downtime and why it stopped."""
    st = ctx.status(system)
    facts = ctx.journal.facts(ctx.plan.name, system)
    sent = sum(int(f["value"]) for f in facts if f["key"] == FACT_BYTES and f["run_id"] == ctx.run_id)
    down = next((float(f["value"]) for f in reversed(facts) if f["key"] == FACT_DOWNTIME), None)
    note = ""
    if system in ctx.refused:
        note = ctx.refused[system]
    elif st.state == State.SYNCED and ctx.options.manual_cutover:
        note = f"manual cutover: govcloud migrate cutover {system}"
    elif st.state != State.DONE:
        err = next((f["value"] for f in reversed(facts) if f["key"] == "error"
                    and (f["run_id"] == ctx.run_id or st.state in (State.FAILED, State.ROLLED_BACK))), "")
        note = str(err)
    return SystemResult(system, st.state.value, down if st.state == State.DONE else None, sent, note)


def _pipeline(ctx: RunContext) -> None:
    """Systems level by level of the dependency order; one whose dependency failed is not continued."""
    depends = {w.id: w.system.depends_on for w in ctx.work}
    batches = order_by_dependencies([w.id for w in ctx.work], depends)
    bad: set[str] = set()
    ctx.reporter.phase(f"migrate: {len(ctx.work)} system(s), {len(batches)} dependency level(s), "
                       f"concurrency {ctx.options.concurrency}")
    for batch in batches:
        runnable = []
        for sid in batch:
            blocked = [d for d in depends[sid] if d in bad]
            if sid in ctx.failed_now:
                bad.add(sid)
                continue
            if blocked:
                ctx.record(sid, "pipeline", "error", f"not continued: dependency {', '.join(blocked)} failed")
                ctx.reporter.finished(sid, ctx.status(sid).state.value, f"dependency {', '.join(blocked)} failed")
                bad.add(sid)
                continue
            runnable.append(sid)
        with ThreadPoolExecutor(max_workers=max(1, ctx.options.concurrency)) as pool:
            for sid, ok in pool.map(lambda s: _system(ctx, ctx.by_id[s]), runnable):
                if not ok:
                    bad.add(sid)


def _system(ctx: RunContext, w: Work) -> tuple[str, bool]:
    """One system's steps until it is done, waits (manual cutover) or fails; ``(id, ok)``."""
    sid = w.id
    try:
        while True:
            st = ctx.status(sid)
            sp = next_steps(sid, st, manual_cutover=ctx.options.manual_cutover, retry_rolled_back=False)
            if not sp.steps:
                ctx.reporter.finished(sid, st.state.value, sp.note)
                return sid, st.state in (State.DONE, State.SYNCED)
            act = sp.steps[0]
            if sp.reopen:
                ctx.journal.mark(ctx.run_id, ctx.plan.name, sid, Event.RESUMED, {"reason": "resume"})
            if act in (Action.PREFLIGHT, Action.PROVISION):
                ctx.reporter.finished(sid, st.state.value, f"needs {act.value} (another run will do it)")
                return sid, False
            _step(ctx, w, act)
            if act == Action.ROLLBACK:
                ctx.reporter.finished(sid, ctx.status(sid).state.value, "rolled back")
                return sid, False
    except OutsideWindowError as exc:
        ctx.refused[sid] = exc.message
        ctx.reporter.finished(sid, ctx.status(sid).state.value, exc.message[:200])
        return sid, False
    except GovcloudError as exc:
        log.debug("system %s failed", sid, exc_info=True)
        ctx.reporter.finished(sid, ctx.status(sid).state.value, exc.message[:200])
        return sid, False


def _step(ctx: RunContext, w: Work, act: Action) -> None:
    """Run one step; a failed verify rolls the system back before the failure goes on."""
    try:
        SYSTEM_STEPS[act](ctx, w)
    except GovcloudError as exc:
        if act == Action.VERIFY:
            rollback.run(ctx, w, reason=exc.message)
        raise
