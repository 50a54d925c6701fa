"""The journal/cluster reconcile rule (govcloud.failover.reconcile): the cluster is the source of truth."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from govcloud.failover.model import ServiceView
from govcloud.failover.reconcile import (
    JournalState,
    MemberObservation,
    Outcome,
    next_epoch,
    reconcile,
)

M = MemberObservation


def cluster(primary: str, epoch: int, **others: MemberObservation) -> list[MemberObservation]:
    ms = {s: M(s, running=True) for s in ("gz-a", "gz-b", "st-a")}
    ms[primary] = M(primary, running=True, writable=True, epoch=epoch)
    ms.update({k.replace("_", "-"): v for k, v in others.items()})
    return list(ms.values())


def test_agreeing_journal_is_kept() -> None:
    r = reconcile(JournalState("gz-a", 3), cluster("gz-a", 3))
    assert r.outcome is Outcome.KEEP and (r.primary, r.epoch, r.next_epoch) == ("gz-a", 3, 4)
    assert not r.changed


def test_fresh_cluster_is_adopted_but_the_next_epoch_stays_above_the_journal() -> None:
    # the demo's bug: a fresh cluster at epoch 1, a journal from older drills at epoch 7
    r = reconcile(JournalState("gz-a", 7, high_epoch=7), cluster("gz-a", 1))
    assert r.outcome is Outcome.ADOPT and (r.primary, r.epoch) == ("gz-a", 1)
    assert r.next_epoch == 8 and "epoch 7" in r.reason and "epoch 1" in r.reason


def test_another_controllers_failover_is_adopted_with_its_fenced_member() -> None:
    ms = cluster("gz-b", 5, gz_a=M("gz-a", running=False, fenced_epoch=4, epoch=4))
    r = reconcile(JournalState("gz-a", 4), ms)
    assert r.outcome is Outcome.ADOPT and (r.primary, r.epoch, r.fenced) == ("gz-b", 5, ("gz-a",))
    assert r.next_epoch == 6


def test_a_rejoined_member_is_no_longer_fenced() -> None:
    r = reconcile(JournalState("gz-b", 5, fenced=("gz-a",)), cluster("gz-b", 5))
    assert r.outcome is Outcome.ADOPT and r.fenced == ()
    kept = reconcile(JournalState("gz-b", 5, fenced=("gz-a",)),
                     cluster("gz-b", 5, gz_a=M("gz-a", running=False, fenced_epoch=4)))
    assert kept.outcome is Outcome.KEEP and kept.fenced == ("gz-a",)


def test_two_writable_members_hold() -> None:
    ms = cluster("gz-a", 4, gz_b=M("gz-b", running=True, writable=True, epoch=5))
    r = reconcile(JournalState("gz-a", 4), ms)
    assert r.outcome is Outcome.HOLD and "2 writable members" in r.reason and r.next_epoch == 6


def test_no_writable_member_holds_unless_the_primary_is_lost_or_fenced_itself() -> None:
    stopped = [M("gz-a", running=False, epoch=4), M("gz-b", running=True), M("st-a", running=True)]
    r = reconcile(JournalState("gz-a", 4), stopped)
    assert r.outcome is Outcome.HOLD and "no writable member" in r.reason
    cut = [M("gz-a", running=True, epoch=4, reachable=False), *stopped[1:]]
    assert reconcile(JournalState("gz-a", 4), cut).outcome is Outcome.KEEP
    self_fenced = [M("gz-a", running=False, epoch=4, fenced_epoch=4), *stopped[1:]]
    assert reconcile(JournalState("gz-a", 4), self_fenced).outcome is Outcome.KEEP
    assert reconcile(None, stopped).outcome is Outcome.HOLD


def test_a_run_in_progress_resumes_instead_of_adopting() -> None:
    r = reconcile(JournalState("gz-b", 5, fenced=("gz-a",)), cluster("gz-a", 4), run_in_progress=True)
    assert r.outcome is Outcome.RESUME and (r.primary, r.epoch) == ("gz-b", 5)


def test_no_journal_adopts_the_writable_member() -> None:
    r = reconcile(None, cluster("gz-a", 1))
    assert r.outcome is Outcome.ADOPT and (r.primary, r.epoch, r.next_epoch) == ("gz-a", 1, 2)


SITES = ("gz-a", "gz-b", "st-a")
epochs = st.one_of(st.none(), st.integers(min_value=-1, max_value=50))
members = st.lists(st.builds(M, st.sampled_from(SITES), st.booleans(), st.booleans(), st.booleans(), epochs, epochs,
                             st.booleans()), max_size=4)
journals = st.one_of(st.none(), st.builds(JournalState, st.sampled_from(SITES), st.integers(0, 50),
                                          st.lists(st.sampled_from(SITES), max_size=2).map(tuple),
                                          st.integers(0, 60)))


@given(journals, members, st.booleans())
def test_the_next_epoch_is_above_every_epoch_any_member_or_journal_has_seen(
        journal: JournalState | None, ms: list[MemberObservation], running: bool) -> None:
    r = reconcile(journal, ms, run_in_progress=running)
    seen = [e for m in ms for e in (m.epoch, m.fenced_epoch) if e is not None]
    if journal is not None:
        seen += [journal.epoch, journal.high_epoch]
    assert all(r.next_epoch > e for e in seen)
    assert r.next_epoch > r.epoch
    assert next_epoch(journal, ms) == r.next_epoch
    assert r.primary not in r.fenced
    # what the decision core promotes at, from the reconciled view, is that next epoch
    v = ServiceView("pg", r.primary, r.epoch, (), fenced=r.fenced, high_epoch=r.high_epoch)
    assert v.next_epoch == r.next_epoch


@given(journals, members)
def test_at_most_one_writable_member_is_ever_adopted_and_never_while_ambiguous(
        journal: JournalState | None, ms: list[MemberObservation]) -> None:
    r = reconcile(journal, ms)
    writable = {m.site for m in ms if m.observed and m.writable}
    if len([m for m in ms if m.observed and m.writable]) > 1:
        assert r.outcome is Outcome.HOLD
    if r.outcome is Outcome.ADOPT:
        assert r.primary in writable


class Members:
    """Only what ``reconcile_journal`` reads: the members' roles and markers (the lab test uses the real ones)."""

    service = "pg"

    def __init__(self, ms: list[MemberObservation]) -> None:
        self.ms = ms

    def observe_members(self) -> list[MemberObservation]:
        return self.ms


def test_the_journal_adopts_a_fresh_cluster_logs_it_and_never_lowers_its_high_epoch(tmp_path: Path) -> None:
    from govcloud.services.failover import ClusterRow, Journal, reconcile_journal

    j = Journal(tmp_path / "failover.db")
    with j.tx() as db:
        j.set_cluster(ClusterRow("pg", "gz-b", 7, ("gz-a",)), db)
    rec = reconcile_journal(Members(cluster("gz-a", 1)), j)  # type: ignore[arg-type]
    assert rec.outcome is Outcome.ADOPT and rec.next_epoch == 8
    row = j.cluster("pg")
    assert row is not None and (row.primary, row.epoch, row.fenced, row.high_epoch) == ("gz-a", 1, (), 7)
    logged = j.db.execute("SELECT action, reason FROM decisions").fetchall()
    assert [a for a, _ in logged] == ["adopt"] and "gz-b@7 fenced gz-a -> gz-a@1 (next epoch 8)" in logged[0][1]
    again = reconcile_journal(Members(cluster("gz-a", 1)), j)  # type: ignore[arg-type]
    assert again.outcome is Outcome.KEEP and again.next_epoch == 8
    j.close()
