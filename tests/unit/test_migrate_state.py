"""The per-system state machine as data: its table, resume decisions, and random event sequences."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govcloud.migrate.state import (
    BACK_TO_LAST_GOOD, MAIN_LINE, NEXT_ACTION, TERMINAL, TRANSITIONS, Action, Event, IllegalTransition, State, Status, SyncDecision,
    allowed_events, apply, reopen, event_for, resume_action, sync_decision,
)


def test_happy_path_walks_the_main_line() -> None:
    s = Status()
    seen = [s.state]
    while not s.terminal:
        event = event_for(resume_action(s))
        assert event is not None
        s = apply(s, event)
        seen.append(s.state)
    assert tuple(seen) == MAIN_LINE


def test_every_state_has_a_resume_answer_and_terminal_states_do_nothing() -> None:
    for state in State:
        for last_good in (state,) if state not in (State.FAILED, State.ROLLED_BACK) else [
                s for s in State if s not in (State.FAILED, State.ROLLED_BACK)]:
            action = resume_action(Status(state, last_good))
            assert isinstance(action, Action)
    assert {s for s in State if NEXT_ACTION.get(s) == Action.NOTHING} == set(TERMINAL)


def test_failure_after_the_source_may_be_stopped_is_rolled_back_earlier_ones_retried() -> None:
    assert resume_action(apply(Status(State.CUTOVER, State.CUTOVER), Event.FAILED)) == Action.ROLLBACK
    assert resume_action(apply(Status(State.VERIFIED, State.VERIFIED), Event.FAILED)) == Action.ROLLBACK
    assert resume_action(apply(Status(State.PROVISIONED, State.PROVISIONED), Event.FAILED)) == Action.WARM_SYNC
    assert resume_action(apply(Status(), Event.FAILED)) == Action.PREFLIGHT
    assert resume_action(Status(State.SYNCED, State.SYNCED)) == Action.CUTOVER
    failed = apply(Status(State.PROVISIONED, State.PROVISIONED), Event.FAILED)
    assert reopen(failed) == Status(State.PROVISIONED, State.PROVISIONED)
    stopped = apply(Status(State.CUTOVER, State.CUTOVER), Event.FAILED)
    assert reopen(stopped) == stopped
    with pytest.raises(IllegalTransition):
        apply(stopped, Event.RESUMED)  # never resume blindly once the source may be stopped


def test_illegal_event_names_the_state_and_what_is_allowed() -> None:
    with pytest.raises(IllegalTransition, match=r"'cut_over' is not allowed in state 'pending' \(allowed: failed, preflight_passed\)"):
        apply(Status(), Event.CUT_OVER)
    with pytest.raises(IllegalTransition, match="none, the state is terminal"):
        apply(Status(State.DONE, State.DONE), Event.FAILED)
    assert allowed_events(State.SYNCED) == (Event.SYNCED, Event.CUT_OVER, Event.FAILED)


def test_status_rejects_inconsistent_last_good() -> None:
    with pytest.raises(ValueError):
        Status(State.SYNCED, State.PENDING)
    with pytest.raises(ValueError):
        Status(State.FAILED, State.FAILED)


def test_sync_decision_never_trusts_stale_data_nor_recopies_fresh_data() -> None:
    assert sync_decision(None, None, "a") == SyncDecision.FULL
    assert sync_decision("a", None, "a") == SyncDecision.FULL
    assert sync_decision("a", "a", "a") == SyncDecision.SKIP
    assert sync_decision("a", "a", "b") == SyncDecision.DELTA  # source changed since
    assert sync_decision("a", "x", "a") == SyncDecision.DELTA  # target differed (partial copy)


@settings(max_examples=500)
@given(st.lists(st.sampled_from(list(Event)), max_size=40))
def test_random_event_sequences_never_reach_an_illegal_state(events: list[Event]) -> None:
    s = Status()
    reached_cutover = False
    path = [s.state]
    for e in events:
        try:
            nxt = apply(s, e)
        except IllegalTransition:
            assert (s.state, e) not in TRANSITIONS
            continue
        if (s.state, e) == BACK_TO_LAST_GOOD:
            assert nxt.state == s.last_good
        else:
            assert TRANSITIONS[(s.state, e)] == nxt.state
        # invariants of every reachable status
        assert nxt.last_good not in (State.FAILED, State.ROLLED_BACK)
        if nxt.state not in (State.FAILED, State.ROLLED_BACK):
            assert nxt.last_good == nxt.state
        if nxt.state == State.PENDING:
            reached_cutover = False  # a retry starts over
        if nxt.state == State.CUTOVER:
            assert s.state == State.SYNCED  # never cut over without a completed sync
            reached_cutover = True
        if nxt.state == State.DONE:
            assert s.state == State.VERIFIED and reached_cutover  # done only after cutover and verify
        if s.state == State.FAILED and nxt.state not in (State.FAILED, State.ROLLED_BACK, State.PENDING):
            assert e == Event.RESUMED and nxt.state == s.last_good and nxt.state not in (State.CUTOVER, State.VERIFIED)
        if nxt.state == State.ROLLED_BACK:
            assert s.state in (State.CUTOVER, State.VERIFIED, State.FAILED)
        assert isinstance(resume_action(nxt), Action)
        s = nxt
        path.append(s.state)
    if s.terminal and s.state == State.DONE:
        assert State.SYNCED in path and State.VERIFIED in path


@given(st.lists(st.sampled_from(list(Event)), max_size=30))
def test_following_resume_from_any_reachable_status_terminates(events: list[Event]) -> None:
    s = Status()
    for e in events:
        try:
            s = apply(s, e)
        except IllegalTransition:
            pass
    for _ in range(len(MAIN_LINE) + 2):
        s = reopen(s)
        action = resume_action(s)
        if action == Action.NOTHING:
            break
        event = event_for(action)
        assert event is not None
        s = apply(s, event)  # resume's success event is always legal
    assert s.terminal
