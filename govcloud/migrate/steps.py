"""The per-system step plan: what ``run``/``resume`` will do next, from the journal state (pure).

The executor asks :func:`next_steps` for the remaining actions of a system; ``--dry-run`` prints the
same list, so what is shown is what runs. Crash points (:data:`CRASH_POINTS`) are the named places
where fault injection (``GOVCLOUD_FAULT_KILL_AT``) may SIGKILL the process, one per side effect
boundary, so a test can prove that resume is correct from each of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from govcloud.migrate.state import Action, State, Status, resume_action

# the order the main line runs in after a given action
_AFTER: dict[Action, Action] = {
    Action.PREFLIGHT: Action.PROVISION,
    Action.PROVISION: Action.WARM_SYNC,
    Action.WARM_SYNC: Action.CUTOVER,
    Action.CUTOVER: Action.VERIFY,
    Action.VERIFY: Action.FINISH,
    Action.FINISH: Action.NOTHING,
    Action.ROLLBACK: Action.NOTHING,
}

CRASH_POINTS: tuple[str, ...] = (
    "preflight.after_intent",
    "provision.after_boot_request",  # Nova accepted a create, the server id is not journalled yet
    "provision.after_active",  # servers ACTIVE and reachable, Ansible not run
    "provision.after_configure",  # Ansible done, outcome not journalled
    "sync.after_key",  # per-migration key authorised on the target, rsync not started
    "sync.after_rsync",  # data copied, facts and outcome not journalled
    "cutover.after_stop",  # legacy app stopped, final sync not done
    "cutover.after_final_sync",
    "cutover.after_start",  # target app started, endpoint not switched
    "cutover.after_switch",  # endpoint switched, outcome not journalled
    "verify.before_outcome",
    "finish.before_outcome",
)


@dataclass(frozen=True)
class StepPlan:
    system: str
    state: State
    steps: tuple[Action, ...]
    reopen: bool  # a failed system goes back to its last good state first (journalled as `resumed`)
    note: str = ""


def next_steps(system: str, status: Status, *, manual_cutover: bool = False, retry_rolled_back: bool = True) -> StepPlan:
    """The actions still to run for ``system`` (empty when done). With ``manual_cutover`` the plan
    stops after the warm sync (``migrate cutover SYSTEM`` continues); a rolled-back system starts
    over (``retry``) when ``retry_rolled_back``."""
    if status.state == State.DONE:
        return StepPlan(system, status.state, (), False, "done")
    if status.state == State.ROLLED_BACK:
        if not retry_rolled_back:
            return StepPlan(system, status.state, (), False, "rolled back (run again to retry)")
        first = Action.PREFLIGHT
        note = "rolled back before: retry from preflight"
    else:
        first = resume_action(status)
        note = ""
    reopen = status.state == State.FAILED and first != Action.ROLLBACK
    steps: list[Action] = []
    act = first
    while act != Action.NOTHING:
        if manual_cutover and act == Action.CUTOVER:
            note = (note + "; " if note else "") + "cutover is manual: `govcloud migrate cutover " + system + "`"
            break
        steps.append(act)
        act = _AFTER[act]
    return StepPlan(system, status.state, tuple(steps), reopen, note)


def composite(entries: dict[str, str]) -> str:
    """One digest over named digests (``legacy-host:path -> manifest``), order independent."""
    import hashlib

    text = "\n".join(f"{k} {v}" for k, v in sorted(entries.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
