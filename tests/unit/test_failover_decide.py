"""The quorum failover decision over snapshot sequences: the issue's four scenarios, and random ones.

The probes here are simulated from a ground truth (which sites are up, which links are cut) because
these tests are about the pure decision; the lab drills exercise real probes and real PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from govcloud.errors import InvalidInputError
from govcloud.failover.decide import decide, decide_cluster, path_state, primary_lease
from govcloud.failover.model import (
    Action,
    ClusterView,
    Decision,
    FailoverRefused,
    Observation,
    Policy,
    ProbeHistory,
    ProbeSnapshot,
    RegionLossRule,
    ReplicationMode,
    Rule,
    ServiceView,
    Standby,
)
from govcloud.failover.runbook import StepKind, runbook_for
from govcloud.model import (
    Region,
    RegionRole,
    ReplicationLink,
    Resources,
    Site,
    Topology,
)

SITES = ("gz-a", "gz-b", "st-a")
WITNESS = "ops-witness"  # a probe agent outside both regions
NODES = (*SITES, WITNESS)
CAP = Resources(64, 256, 10000)
TOPO = Topology(
    name="lab",
    regions=(Region("gz", RegionRole.PRIMARY, "gz", "RegionGZ", ("gz-a", "gz-b")),
             Region("st", RegionRole.BACKUP, "st", "RegionST", ("st-a",))),
    sites=(Site("gz-a", "gz", "gz-a", CAP), Site("gz-b", "gz", "gz-b", CAP), Site("st-a", "st", "st-a", CAP)),
    replication=(ReplicationLink("gz-a", "gz-b", "sync"), ReplicationLink("gz", "st", "async", 30)),
)
POLICY = Policy(grace_s=5.0, lease_s=3.0, max_gap_s=2.0, max_age_s=3.0, witness=WITNESS)


def pg_view(lag: int = 4096) -> ServiceView:
    return ServiceView("pg", "gz-a", 3, (Standby("gz-b", ReplicationMode.SYNC, lag_bytes=0),
                                         Standby("st-a", ReplicationMode.ASYNC, lag_bytes=lag, lag_seconds=0.4)))


@dataclass
class World:
    """Ground truth at one tick: dead nodes and cut (undirected) links."""

    dead: frozenset[str] = frozenset()
    cut: frozenset[frozenset[str]] = frozenset()

    def reach(self, a: str, b: str) -> bool:
        return a not in self.dead and b not in self.dead and frozenset((a, b)) not in self.cut


def snapshot(t: float, world: World) -> ProbeSnapshot:
    """What every live node's probes report at ``t``: each other node (round trips) and pg on each site."""
    obs = []
    for o in NODES:
        if o in world.dead:
            continue
        for target in NODES:
            if target != o:
                ok = world.reach(o, target)
                obs.append(Observation(o, target, ok, t, 0.002 if ok else None))
                if target in SITES:
                    obs.append(Observation(o, target, ok, t, service="pg"))
    return ProbeSnapshot(t, TOPO, tuple(obs))


@dataclass
class Run:
    decisions: list[Decision] = field(default_factory=list)
    views: list[ServiceView] = field(default_factory=list)


def run(worlds: Callable[[int], World], ticks: int, policy: Policy = POLICY, view: ServiceView | None = None,
        check: Callable[[int, ProbeSnapshot, ProbeHistory, ServiceView, Decision], None] | None = None) -> Run:
    """Feed one snapshot per second to ``decide``, carrying out each failover on the view."""
    view = view or pg_view()
    history = ProbeHistory()
    out = Run()
    for t in range(ticks):
        snap = snapshot(float(t), worlds(t))
        d = decide(snap, view, history, policy)
        if check is not None:
            check(t, snap, history, view, d)
        out.decisions.append(d)
        view = view.after(d)
        out.views.append(view)
        history = history.add(snap, keep_s=policy.grace_s * 3)
    return out


def failovers(r: Run) -> list[Decision]:
    return [d for d in r.decisions if d.action is Action.FAILOVER]


# --- the scenarios ---------------------------------------------------------------------------


def test_site_loss_gz_a_promotes_the_sync_standby_after_grace() -> None:
    r = run(lambda t: World(dead=frozenset({"gz-a"}) if t >= 10 else frozenset()), 25)
    assert [d.action for d in r.decisions[:10]] == [Action.NONE] * 10
    assert [d.action for d in r.decisions[10:15]] == [Action.WAIT] * 5  # the clock runs for 5 s
    (f,) = failovers(r)
    assert f.at == 15.0 and f.target == "gz-b" and f.rule is Rule.SITE_LOSS and f.new_epoch == 4
    assert f.reason == ("gz-a unreachable from gz-b and st-a for 5 s (grace 5 s): quorum 2/2; "
                        "promote gz-b (synchronous standby, lag 0 B) at epoch 4")
    assert set(f.deciders) == {"gz-b", "st-a"}
    final = r.views[-1]
    assert (final.primary, final.epoch, final.fenced) == ("gz-b", 4, ("gz-a",))
    assert not final.accepts_primary("gz-a", 3)  # the old primary coming back at its old epoch is fenced
    assert r.decisions[-1].action is Action.NONE and "gz-b (primary of pg, epoch 4)" in r.decisions[-1].reason


def test_region_loss_gz_promotes_shantou_with_the_witness() -> None:
    r = run(lambda t: World(dead=frozenset({"gz-a", "gz-b"}) if t >= 10 else frozenset()), 25)
    (f,) = failovers(r)
    assert f.at == 15.0 and f.target == "st-a" and f.rule is Rule.REGION_LOSS
    assert f.deciders == ("st-a", WITNESS)
    assert f.reason.startswith("region gz (gz-a and gz-b) unreachable from st-a for 5 s (grace 5 s), "
                               "confirmed by the witness ops-witness; promote st-a (asynchronous standby, lag 4096 B)")
    assert runbook_for(f).max_rpo_bytes == 4096  # RPO bounded by the last known lag


def test_region_loss_without_the_witness_is_refused() -> None:
    r = run(lambda t: World(dead=frozenset({"gz-a", "gz-b", WITNESS}) if t >= 10 else frozenset()), 25)
    assert not failovers(r)
    last = r.decisions[-1]
    assert last.action is Action.REFUSE
    assert "the witness ops-witness sent no fresh report about gz-a and gz-b" in last.reason


def test_isolated_shantou_never_promotes_itself_under_the_witness_rule() -> None:
    """st-a cut off from both gz sites sees 'region loss'; the witness still reaches gz: refused."""
    cut = frozenset({frozenset({"st-a", "gz-a"}), frozenset({"st-a", "gz-b"})})
    r = run(lambda t: World(cut=cut if t >= 5 else frozenset()), 25)
    assert not failovers(r)
    assert "the witness ops-witness still reaches gz-a and gz-b" in r.decisions[-1].reason


def test_region_loss_single_observer_policy_promotes_and_the_old_primary_self_fences() -> None:
    policy = replace(POLICY, region_loss=RegionLossRule.SINGLE_OBSERVER_FENCED)
    cut = frozenset({frozenset({"st-a", "gz-a"}), frozenset({"st-a", "gz-b"})})
    leases: list[bool] = []

    def check(t: int, snap: ProbeSnapshot, hist: ProbeHistory, view: ServiceView, d: Decision) -> None:
        if view.primary == "gz-a":
            leases.append(primary_lease(snap, view, hist, policy).holds)
        if d.action is Action.FAILOVER:
            assert not primary_lease(snap, view, hist, policy).holds  # gz-a stopped writing first

    r = run(lambda t: World(cut=cut if t >= 5 else frozenset()), 20, policy=policy, check=check)
    (f,) = failovers(r)
    assert f.target == "st-a" and "single observer + fencing" in f.reason
    assert leases[:8] == [True] * 8 and leases[-1] is False  # 5..7 isolated < 3 s, lapses at t=8


def test_region_loss_never_policy_refuses() -> None:
    policy = replace(POLICY, region_loss=RegionLossRule.NEVER)
    r = run(lambda t: World(dead=frozenset({"gz-a", "gz-b"}) if t >= 10 else frozenset()), 25, policy=policy)
    assert not failovers(r)
    assert "region_loss=never" in r.decisions[-1].reason


def test_partition_gz_a_st_a_never_fails_over() -> None:
    cut = frozenset({frozenset({"gz-a", "st-a"})})
    leases: list[bool] = []

    def check(t: int, snap: ProbeSnapshot, hist: ProbeHistory, view: ServiceView, d: Decision) -> None:
        leases.append(primary_lease(snap, view, hist, POLICY).holds)

    r = run(lambda t: World(cut=cut if t >= 5 else frozenset()), 40, check=check)
    assert not failovers(r)
    assert all(leases)  # gz-a still reaches gz-b: it keeps writing
    assert r.decisions[-1].action is Action.REFUSE
    # durations are measured within the kept history (15 s + a probe)
    assert r.decisions[-1].reason == ("gz-a unreachable from st-a (for 16 s), reachable from gz-b: "
                                      "quorum 1/2 not met (need 2); no failover")


@pytest.mark.parametrize("site", ["gz-b", "gz-a"])
def test_flap_never_fails_over(site: str) -> None:
    """down 4 s, up 1 s, over and over: every outage is shorter than the grace period."""
    r = run(lambda t: World(dead=frozenset({site}) if t % 5 != 0 else frozenset()), 60)
    assert not failovers(r)
    assert {d.action for d in r.decisions} <= {Action.NONE, Action.WAIT, Action.REFUSE}


def test_one_missed_probe_does_not_reset_the_clock_but_a_success_does() -> None:
    def snaps(oks: list[bool | None]) -> list[ProbeSnapshot]:
        return [ProbeSnapshot(float(t), TOPO, () if ok is None else (Observation("st-a", "gz-a", ok, float(t)),))
                for t, ok in enumerate(oks)]

    gap = snaps([False, False, None, False, False])
    assert path_state(gap, "st-a", "gz-a", POLICY).down_for == 4.0
    flap = snaps([False, False, True, False, False])
    assert path_state(flap, "st-a", "gz-a", POLICY).down_for == 1.0
    long_gap = snaps([False, None, None, None, False])
    assert path_state(long_gap, "st-a", "gz-a", POLICY).down_for == 0.0
    assert path_state(snaps([False, None, None, None, None]), "st-a", "gz-a", POLICY).status.value == "unknown"


def test_a_standby_failing_its_service_probe_is_skipped() -> None:
    def world(t: int) -> World:
        return World(dead=frozenset({"gz-a"}) if t >= 2 else frozenset())

    view = pg_view()
    history = ProbeHistory()
    d = None
    for t in range(10):
        snap = snapshot(float(t), world(t))
        # pg on gz-b is down although the site answers (a fault the simulated site probe cannot show)
        snap = replace(snap, observations=tuple(
            replace(o, ok=False) if o.service == "pg" and o.target == "gz-b" else o for o in snap.observations))
        d = decide(snap, view, history, POLICY)
        history = history.add(snap, 15)
    assert d is not None and d.action is Action.FAILOVER and d.target == "st-a"
    assert d.target_standby is not None and d.target_standby.mode is ReplicationMode.ASYNC


def test_async_lag_over_the_limit_refuses() -> None:
    policy = replace(POLICY, max_async_lag_bytes=1024)
    r = run(lambda t: World(dead=frozenset({"gz-a", "gz-b"}) if t >= 2 else frozenset()), 12, policy=policy)
    assert not failovers(r)
    assert "st-a lag 4096 B is over the 1024 B limit" in r.decisions[-1].reason


# --- runbook, fencing, policy ------------------------------------------------------------------------


def test_runbook_from_a_site_loss_decision() -> None:
    r = run(lambda t: World(dead=frozenset({"gz-a"}) if t >= 1 else frozenset()), 8)
    (f,) = failovers(r)
    book = runbook_for(f)
    assert [s.kind for s in book.steps] == [StepKind.FENCE_OLD_PRIMARY, StepKind.PROMOTE,
                                            StepKind.REPOINT_STANDBYS, StepKind.MOVE_ENDPOINT,
                                            StepKind.VERIFY_WRITES, StepKind.RECORD_RTO_RPO]
    assert book.steps[0].site == "gz-a" and all(s.site == "gz-b" for s in book.steps[1:])
    assert {s.epoch for s in book.steps} == {4} and book.max_rpo_bytes == 0
    assert book.render().splitlines()[1].startswith("1. fence-old-primary pg@gz-a (epoch 4)")


def test_runbook_for_a_non_failover_decision_raises_with_the_reason() -> None:
    r = run(lambda t: World(cut=frozenset({frozenset({"gz-a", "st-a"})})), 8)
    with pytest.raises(FailoverRefused, match="quorum 1/2 not met"):
        runbook_for(r.decisions[-1])


def test_a_stale_decision_cannot_be_applied_to_a_newer_view() -> None:
    r = run(lambda t: World(dead=frozenset({"gz-a"}) if t >= 1 else frozenset()), 8)
    (f,) = failovers(r)
    with pytest.raises(FailoverRefused):
        r.views[-1].after(f)


def test_policy_requires_the_lease_to_lapse_before_the_grace_period() -> None:
    with pytest.raises(InvalidInputError, match="lease"):
        Policy(grace_s=5, lease_s=4, max_gap_s=2)


def test_decide_cluster_decides_each_service() -> None:
    snap = snapshot(0.0, World())
    other = ServiceView("app", "gz-b", 1, (Standby("gz-a", ReplicationMode.SYNC),))
    ds = decide_cluster(snap, ClusterView((pg_view(), other)), ProbeHistory(), POLICY)
    assert [(d.service, d.action) for d in ds] == [("pg", Action.NONE), ("app", Action.NONE)]
    assert ds[1].reason == "gz-b (primary of app, epoch 1) reachable from gz-a and st-a; no failover"


# --- random sequences --------------------------------------------------------------------------------

LINKS = [frozenset((a, b)) for i, a in enumerate(NODES) for b in NODES[i + 1:]]
fault = st.tuples(
    st.integers(0, 50),  # start tick
    st.integers(1, 15),  # duration
    st.one_of(st.sampled_from((*NODES, "gz")).map(lambda n: ("dead", n)),  # "gz": the whole region
              st.sampled_from(LINKS).map(lambda link: ("cut", link))),
)


def world_at(events: list[tuple[int, int, tuple[str, object]]], t: int) -> World:
    dead: set[str] = set()
    cut: set[frozenset[str]] = set()
    for start, length, (kind, what) in events:
        if start <= t < start + length:
            if kind == "dead":
                dead.update(("gz-a", "gz-b") if what == "gz" else (str(what),))
            else:
                assert isinstance(what, frozenset)
                cut.add(what)
    return World(frozenset(dead), frozenset(cut))


@settings(max_examples=int(os.environ.get("FAILOVER_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(fault, max_size=8), rule=st.sampled_from(list(RegionLossRule)))
def test_random_sequences_never_split_brain_nor_promote_without_quorum(
        events: list[tuple[int, int, tuple[str, object]]], rule: RegionLossRule) -> None:
    policy = replace(POLICY, region_loss=rule)
    epochs: dict[int, str] = {3: "gz-a"}
    grace = int(policy.grace_s)

    def saw_down(t: int, observer: str, target: str) -> bool:
        """Ground truth: the observer's last probe is fresh (``max_age_s`` 3 s) and, back over at least the
        grace period, every probe it made failed, missing no two probes in a row (``max_gap_s`` is 2 s:
        one missed probe does not break a continuous outage)."""
        probed = [k for k in range(t + 1) if observer not in world_at(events, k).dead]
        if not probed or probed[-1] < t - 3 or world_at(events, probed[-1]).reach(observer, target):
            return False
        last = start = probed[-1]
        for k in reversed(probed[:-1]):
            if start - k > 2 or world_at(events, k).reach(observer, target):
                break
            start = k
        return last - start >= grace

    def check(t: int, snap: ProbeSnapshot, hist: ProbeHistory, view: ServiceView, d: Decision) -> None:
        assert d.reason and any(s in d.reason for s in SITES)
        if d.action is not Action.FAILOVER:
            return
        assert d.target is not None and d.new_epoch == view.epoch + 1
        assert epochs.setdefault(d.new_epoch, d.target) == d.target  # one primary per epoch
        assert not primary_lease(snap, view, hist, policy).holds, "the old primary could still be writing"
        others = [s for s in SITES if s != view.primary]
        if d.rule is Rule.SITE_LOSS:
            seen = [o for o in others if saw_down(t, o, view.primary)]
            assert len(seen) >= len(others) // 2 + 1, (t, d.reason)
        else:
            assert d.rule is Rule.REGION_LOSS and rule is not RegionLossRule.NEVER
            assert d.target == "st-a"
            assert saw_down(t, "st-a", "gz-a") and saw_down(t, "st-a", "gz-b")
            if rule is RegionLossRule.WITNESS:
                assert saw_down(t, WITNESS, "gz-a") and saw_down(t, WITNESS, "gz-b")

    r = run(lambda t: world_at(events, t), 70, policy=policy, check=check)
    for d in failovers(r):
        event(f"failover by {d.rule}")
    if not failovers(r) and any(d.action is Action.REFUSE for d in r.decisions):
        event("refused only")
    primaries = {(v.epoch, v.primary) for v in r.views}
    assert len({e for e, _ in primaries}) == len(primaries)  # never two primaries at one epoch


def test_an_old_primary_hearing_a_higher_epoch_is_fenced_at_once() -> None:
    """gz-a comes back and reaches gz-b, which answers with epoch 4: gz-a must not write at epoch 3."""
    snap = snapshot(100.0, World())
    snap = replace(snap, observations=tuple(
        replace(o, epoch=4) if o.observer == "gz-a" and o.target == "gz-b" else o for o in snap.observations))
    lease = primary_lease(snap, pg_view(), ProbeHistory(), POLICY)
    assert not lease.holds
    assert lease.reason == "gz-b answers with epoch 4, above gz-a's 3: gz-a is fenced and stops accepting writes for pg"
    assert primary_lease(snapshot(100.0, World()), pg_view(), ProbeHistory(), POLICY).holds


@settings(max_examples=int(os.environ.get("FAILOVER_EXAMPLES", "200")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(fault, max_size=8), rule=st.sampled_from(list(RegionLossRule)),
       offsets=st.tuples(*[st.floats(0, 0.99) for _ in NODES]))
def test_the_old_primary_lease_lapses_first_even_when_probes_are_not_simultaneous(
        events: list[tuple[int, int, tuple[str, object]]], rule: RegionLossRule,
        offsets: tuple[float, ...]) -> None:
    """Each node probes up to a second before the snapshot; the max_gap margin still covers it."""
    policy = replace(POLICY, region_loss=rule)
    lag = dict(zip(NODES, offsets))
    view, history = pg_view(), ProbeHistory()
    for t in range(70):
        base = snapshot(float(t), world_at(events, t))
        snap = replace(base, observations=tuple(replace(o, at=t - lag[o.observer]) for o in base.observations))
        d = decide(snap, view, history, policy)
        if d.action is Action.FAILOVER:
            assert not primary_lease(snap, view, history, policy).holds, (t, d.reason)
        view = view.after(d)
        history = history.add(snap, keep_s=policy.grace_s * 3)
