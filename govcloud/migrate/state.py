"""The per-system migration state machine, as data (pure: no I/O).

A system's *state* is the last step that completed; the journal records the intent of the next step
before its side effect and the outcome after it, so a crash between the two leaves the state at the
last completed step and resume re-runs that (idempotent) step. ``failed`` remembers the last good
state (``last_good``) so resume knows where to pick up, and whether the legacy service may already be
stopped (then the way back is a rollback, never a blind retry).

    pending -> preflight -> provisioned -> synced (warm, repeatable) -> cutover -> verified -> done
    any non-terminal -> failed;  cutover/verified/failed -> rolled_back;  failed/rolled_back -> pending (retry)
    failed --resumed--> last_good (when last_good is before cutover)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class State(StrEnum):
    PENDING = "pending"
    PREFLIGHT = "preflight"  # pre-flight checks passed
    PROVISIONED = "provisioned"  # targets exist and are configured
    SYNCED = "synced"  # a warm sync completed (the source may keep running)
    CUTOVER = "cutover"  # source stopped, final delta synced, target started, endpoint switched
    VERIFIED = "verified"  # target healthy and manifests equal
    DONE = "done"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class Event(StrEnum):
    PREFLIGHT_PASSED = "preflight_passed"
    PROVISIONED = "provisioned"
    SYNCED = "synced"
    CUT_OVER = "cut_over"
    VERIFIED = "verified"
    FINISHED = "finished"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    RESUMED = "resumed"  # failed -> back to last_good (only before the source may have been stopped)
    RETRY = "retry"


class Action(StrEnum):
    """What ``resume`` (and ``run``) does next for a system in a given state."""

    PREFLIGHT = "preflight"
    PROVISION = "provision"
    WARM_SYNC = "warm_sync"
    CUTOVER = "cutover"  # includes the final delta sync (skipped when the source is proven unchanged)
    VERIFY = "verify"
    FINISH = "finish"
    ROLLBACK = "rollback"
    NOTHING = "nothing"


MAIN_LINE: tuple[State, ...] = (State.PENDING, State.PREFLIGHT, State.PROVISIONED, State.SYNCED,
                                State.CUTOVER, State.VERIFIED, State.DONE)
TERMINAL: frozenset[State] = frozenset({State.DONE, State.ROLLED_BACK})
# states in which the legacy service may have been stopped: a failure there must be rolled back
SOURCE_MAY_BE_STOPPED: frozenset[State] = frozenset({State.CUTOVER, State.VERIFIED})

TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.PENDING, Event.PREFLIGHT_PASSED): State.PREFLIGHT,
    (State.PREFLIGHT, Event.PROVISIONED): State.PROVISIONED,
    (State.PROVISIONED, Event.SYNCED): State.SYNCED,
    (State.SYNCED, Event.SYNCED): State.SYNCED,  # warm sync is repeatable while the source runs
    (State.SYNCED, Event.CUT_OVER): State.CUTOVER,
    (State.CUTOVER, Event.VERIFIED): State.VERIFIED,
    (State.VERIFIED, Event.FINISHED): State.DONE,
    **{(s, Event.FAILED): State.FAILED for s in (State.PENDING, State.PREFLIGHT, State.PROVISIONED, State.SYNCED,
                                                 State.CUTOVER, State.VERIFIED)},
    (State.CUTOVER, Event.ROLLED_BACK): State.ROLLED_BACK,
    (State.VERIFIED, Event.ROLLED_BACK): State.ROLLED_BACK,
    (State.FAILED, Event.ROLLED_BACK): State.ROLLED_BACK,
    (State.FAILED, Event.RETRY): State.PENDING,
    (State.ROLLED_BACK, Event.RETRY): State.PENDING,
}
# the one transition whose target is not fixed: back to the last good state, allowed only while the
# legacy service was certainly never stopped (else the way back is a rollback)
BACK_TO_LAST_GOOD: tuple[State, Event] = (State.FAILED, Event.RESUMED)

NEXT_ACTION: dict[State, Action] = {
    State.PENDING: Action.PREFLIGHT,
    State.PREFLIGHT: Action.PROVISION,
    State.PROVISIONED: Action.WARM_SYNC,
    State.SYNCED: Action.CUTOVER,
    State.CUTOVER: Action.VERIFY,
    State.VERIFIED: Action.FINISH,
    State.DONE: Action.NOTHING,
    State.ROLLED_BACK: Action.NOTHING,  # a new `migrate run` retries it (RETRY -> pending)
}


class IllegalTransition(ValueError):
    """An event that the state machine does not allow from the current state (a bug or a corrupt journal)."""

    def __init__(self, state: State, event: Event) -> None:
        allowed = sorted(e.value for e in allowed_events(state))
        super().__init__(f"event {event.value!r} is not allowed in state {state.value!r} "
                         f"(allowed: {', '.join(allowed) or 'none, the state is terminal'})")
        self.state = state
        self.event = event


@dataclass(frozen=True)
class Status:
    """A system's position: its state and, when failed, the last good state before the failure."""

    state: State = State.PENDING
    last_good: State = State.PENDING

    def __post_init__(self) -> None:
        if self.last_good in (State.FAILED, State.ROLLED_BACK):
            raise ValueError(f"last_good cannot be {self.last_good.value}")
        if self.state not in (State.FAILED, State.ROLLED_BACK) and self.last_good != self.state:
            raise ValueError(f"last_good must equal the state outside failed/rolled_back ({self!r})")

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


def allowed_events(state: State) -> tuple[Event, ...]:
    fixed = tuple(e for (s, e) in TRANSITIONS if s == state)
    return fixed + ((BACK_TO_LAST_GOOD[1],) if state == BACK_TO_LAST_GOOD[0] else ())


def apply(status: Status, event: Event) -> Status:
    """The status after ``event``; raises IllegalTransition if the event is not allowed."""
    if (status.state, event) == BACK_TO_LAST_GOOD:
        if status.last_good in SOURCE_MAY_BE_STOPPED:
            raise IllegalTransition(status.state, event)
        return Status(state=status.last_good, last_good=status.last_good)
    target = TRANSITIONS.get((status.state, event))
    if target is None:
        raise IllegalTransition(status.state, event)
    if target in (State.FAILED, State.ROLLED_BACK):
        return replace(status, state=target)  # keep last_good
    return Status(state=target, last_good=target)


def resume_action(status: Status) -> Action:
    """What resume does next: continue after the last completed step; a failure after the source may
    have been stopped is rolled back (the legacy service comes back first); an earlier failure is
    retried from its last good state (every step is idempotent)."""
    if status.state == State.FAILED:
        if status.last_good in SOURCE_MAY_BE_STOPPED:
            return Action.ROLLBACK
        return NEXT_ACTION[status.last_good]
    return NEXT_ACTION[status.state]


def reopen(status: Status) -> Status:
    """Before resuming a failed system whose failure came before cutover: back to its last good state
    (the executor journals this ``resumed`` transition, then runs ``resume_action``)."""
    if status.state == State.FAILED and status.last_good not in SOURCE_MAY_BE_STOPPED:
        return apply(status, Event.RESUMED)
    return status


def event_for(action: Action) -> Event | None:
    """The success event of an action (``None`` for NOTHING)."""
    return {
        Action.PREFLIGHT: Event.PREFLIGHT_PASSED,
        Action.PROVISION: Event.PROVISIONED,
        Action.WARM_SYNC: Event.SYNCED,
        Action.CUTOVER: Event.CUT_OVER,
        Action.VERIFY: Event.VERIFIED,
        Action.FINISH: Event.FINISHED,
        Action.ROLLBACK: Event.ROLLED_BACK,
        Action.NOTHING: None,
    }[action]


class SyncDecision(StrEnum):
    SKIP = "skip"  # the target holds a copy proven fresh: no bytes to move
    DELTA = "delta"  # the target holds an older copy: rsync sends only the differences
    FULL = "full"  # nothing synced yet (rsync still sends only what is missing)


def sync_decision(last_source_manifest: str | None, last_target_manifest: str | None, current_source_manifest: str) -> SyncDecision:
    """Resume never re-copies data proven fresh and never trusts stale data: skip only when the last
    sync's source and target manifests were equal and the source still has that manifest now."""
    if not last_source_manifest or not last_target_manifest:
        return SyncDecision.FULL
    if last_source_manifest == last_target_manifest == current_source_manifest:
        return SyncDecision.SKIP
    return SyncDecision.DELTA
