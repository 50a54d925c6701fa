"""The accelerator's decision (issue 31, item 5): when govcloud may revoke the dead leader's etcd lease.

The probes are simulated from a ground truth (dead sites, cut links), as in test_failover_decide.py:
these tests are about the pure rule. A revoke needs the leader's site confirmed lost by a majority of
the other sites for ``confirm_s`` and a healthy synchronous standby elsewhere; a partition, a flap, a
lost standby site or a missing synchronous standby never revokes early.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govcloud.failover.accelerate import (
    Acceleration,
    ClusterState,
    LeaderKey,
    Member,
    Verdict,
    accelerate,
)
from govcloud.failover.model import Observation, Policy, ProbeHistory, ProbeSnapshot
from govcloud.model import Region, RegionRole, Resources, Site, Topology
from govcloud.model.ha import Accelerator

SITES = ("gz-a", "gz-b", "st-a")
CAP = Resources(1, 1, 1)
TOPO = Topology("t", (Region("gz", RegionRole.PRIMARY, "gz", "R", ("gz-a", "gz-b")),
                      Region("st", RegionRole.BACKUP, "st", "S", ("st-a",))),
                tuple(Site(s, s[:2], s, CAP) for s in SITES), ())
POLICY = Policy(grace_s=5.0, lease_s=3.0, max_gap_s=2.0, max_age_s=3.0)
ACCEL = Accelerator(enabled=True, confirm_s=4.0)
LEASE = 0x694D7A1B2C3D4E5F


def cluster(sync_state: str = "streaming", sync_lag: int | None = 0, sync_site: str = "gz-b",
            with_sync: bool = True) -> ClusterState:
    members = [Member("gz-a-db1", "gz-a", "leader", "running")]
    if with_sync:
        members.append(Member(f"{sync_site}-db1", sync_site, "sync_standby", sync_state, sync_lag))
    return ClusterState("gdgov", tuple(members), LeaderKey("gz-a-db1", LEASE, 42), at=0.0)


@dataclass(frozen=True)
class World:
    dead: frozenset[str] = frozenset()
    cut: frozenset[frozenset[str]] = frozenset()

    def reach(self, a: str, b: str) -> bool:
        return a not in self.dead and b not in self.dead and frozenset((a, b)) not in self.cut


def run(worlds: list[World], state: ClusterState | None = None, accel: Accelerator = ACCEL,
        step: float = 0.5) -> list[Acceleration]:
    """The verdict after each probe round; ``worlds[i]`` holds from round i (the last one repeats)."""
    history = ProbeHistory()
    out = []
    for i, world in enumerate(worlds):
        t = i * step
        obs = tuple(Observation(o, target, world.reach(o, target), t, 0.001)
                    for o in SITES if o not in world.dead for target in SITES if target != o)
        snap = ProbeSnapshot(t, TOPO, obs)
        out.append(accelerate(snap, history, state or cluster(), accel, POLICY, 0))
        history = history.add(snap, keep_s=30)
    return out


def dead(site: str) -> World:
    return World(dead=frozenset({site}))


def test_the_leaders_site_lost_is_confirmed_then_its_lease_revoked() -> None:
    verdicts = run([World()] * 2 + [dead("gz-a")] * 12)
    assert [v.verdict for v in verdicts[:2]] == [Verdict.NONE, Verdict.NONE]
    first_revoke = next(i for i, v in enumerate(verdicts) if v.verdict is Verdict.REVOKE)
    assert all(v.verdict is Verdict.WAIT for v in verdicts[2:first_revoke])
    assert (first_revoke - 2) * 0.5 == pytest.approx(4.0)  # the first round at which 4 s of outage are seen
    v = verdicts[first_revoke]
    assert v.lease == LEASE and v.leader == "gz-a-db1" and v.successor == "gz-b-db1"
    assert "gz-a (leader gz-a-db1 of gdgov) unreachable from gz-b and st-a" in v.reason
    assert f"revoke the lease {LEASE:#x}" in v.reason


@pytest.mark.parametrize("cut", [("gz-a", "st-a"), ("gz-a", "gz-b")])
def test_a_partition_never_revokes(cut: tuple[str, str]) -> None:
    verdicts = run([World(cut=frozenset({frozenset(cut)}))] * 30)
    assert all(v.verdict is Verdict.NONE for v in verdicts), verdicts[-1].reason
    assert "no early revoke" in verdicts[-1].reason


def test_a_flap_never_adds_up_to_a_revoke() -> None:
    # gz-a gone for 1.5 s, back for 1 s, again and again: never 4 s in one run
    pattern = [dead("gz-a")] * 3 + [World()] * 2
    verdicts = run(pattern * 8)
    assert Verdict.REVOKE not in {v.verdict for v in verdicts}


def test_losing_the_standbys_site_or_st_a_is_patronis_business() -> None:
    for site in ("gz-b", "st-a"):
        verdicts = run([dead(site)] * 20)
        assert {v.verdict for v in verdicts} == {Verdict.NONE}, (site, verdicts[-1].reason)


@pytest.mark.parametrize(("state", "why"), [
    (cluster(with_sync=False), "had no synchronous standby"),
    (cluster(sync_site="gz-a"), "is in the lost site too"),
    (cluster(sync_state="stopped"), "was stopped"),
    (cluster(sync_lag=None), "lagged unknown"),
    (cluster(sync_lag=5), "lagged 5 bytes"),
])
def test_without_a_healthy_synchronous_standby_elsewhere_patroni_decides(state: ClusterState, why: str) -> None:
    v = run([dead("gz-a")] * 12, state)[-1]
    assert v.verdict is Verdict.REFUSE and why in v.reason and v.lease is None, v.reason


def test_the_whole_primary_region_lost_never_revokes() -> None:
    # the synchronous standby went with it: a region loss is a declared disaster (ha promote), not this
    v = run([World(dead=frozenset({"gz-a", "gz-b"}))] * 12)[-1]
    assert v.verdict is not Verdict.REVOKE, v.reason


def test_off_means_patroni_alone_and_no_leader_key_means_nothing_to_do() -> None:
    assert run([dead("gz-a")] * 12, accel=Accelerator(enabled=False))[-1].verdict is Verdict.OFF
    keyless = ClusterState("gdgov", cluster().members, None, at=0.0)
    assert run([dead("gz-a")] * 12, keyless)[-1].verdict is Verdict.NONE


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sets(st.sampled_from(SITES)), st.sets(st.sampled_from([("gz-a", "gz-b"), ("gz-a", "st-a"),
                                                                                   ("gz-b", "st-a")]))),
                min_size=1, max_size=30))
def test_a_revoke_only_ever_follows_a_confirmed_loss_of_the_leaders_site(rounds: list[tuple[set[str],
                                                                                          set[tuple[str, str]]]]) -> None:
    """Random worlds: whenever the verdict is REVOKE, gz-a has been unreachable from both other sites
    for at least confirm_s, and gz-b (the synchronous standby's site) is alive."""
    worlds = [World(frozenset(d), frozenset(frozenset(c) for c in cuts)) for d, cuts in rounds]
    for i, v in enumerate(run(worlds)):
        if v.verdict is not Verdict.REVOKE:
            continue
        window = worlds[max(0, i - 8):i + 1]  # the last 4 s of rounds, 0.5 s apart
        assert i >= 8, v.reason
        assert all(not w.reach("gz-b", "gz-a") and not w.reach("st-a", "gz-a") for w in window), v.reason
        assert "gz-b" not in worlds[i].dead
