"""The name follows the Patroni leader (govcloud/failover/follow.py, services/ha_names.py): the decision
on each look, and watchers that agree through the record, against an in-memory etcd with etcd's
transaction semantics (the integration test uses the lab's real etcd and BIND)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from govcloud.failover.follow import Decision, LeaderKey, NameRecord, Step, decide
from govcloud.failover.shape import ClusterRole, ClusterShape
from govcloud.model.ha import DbHost
from govcloud.services.ha_names import LeaderFollower

ADDRESSES = {"a": "10.0.1.21", "b": "10.0.2.21"}
CLUSTER = ClusterShape("gdgov", "gz", ClusterRole.PRIMARY,
                       (DbHost("gz-a", "a", "10.0.1.21"), DbHost("gz-b", "b", "10.0.2.21")), True, ())


def test_no_leader_key_is_patronis_business_and_an_unknown_leader_is_refused() -> None:
    assert decide(None, None, ADDRESSES).step is Step.NONE
    assert decide(LeaderKey("x", 5), None, ADDRESSES).step is Step.UNKNOWN


def test_a_new_election_is_claimed_from_the_recorded_address_never_a_read_one() -> None:
    d = decide(LeaderKey("b", 9), NameRecord(5, None, "10.0.1.21", True, mod_revision=6), ADDRESSES)
    assert d == Decision(Step.CLAIM, d.why, NameRecord(9, "10.0.1.21", "10.0.2.21", False, mod_revision=6))
    first = decide(LeaderKey("a", 5), None, ADDRESSES)
    assert first.step is Step.CLAIM and first.record == NameRecord(5, None, "10.0.1.21", False, 0)


def test_the_same_election_is_left_alone_when_done_completed_when_not_and_a_stale_read_ignored() -> None:
    done = NameRecord(9, "10.0.1.21", "10.0.2.21", True, 10)
    assert decide(LeaderKey("b", 9), done, ADDRESSES).step is Step.NONE
    assert decide(LeaderKey("b", 9), replace(done, done=False), ADDRESSES).step is Step.COMPLETE
    assert decide(LeaderKey("a", 5), done, ADDRESSES).step is Step.NONE  # an older election read late


class Etcd:
    """The two keys, with etcd's compare-then-put transactions (the gateway's claim and finish)."""

    def __init__(self) -> None:
        self.leader_key: LeaderKey | None = None
        self.rec: NameRecord | None = None
        self.revision = 1

    def elect(self, member: str) -> None:
        self.revision += 1
        self.leader_key = LeaderKey(member, self.revision)

    def leader(self, scope: str) -> LeaderKey | None:
        return self.leader_key

    def record(self, scope: str) -> NameRecord | None:
        return self.rec

    def claim(self, scope: str, leader: LeaderKey, record: NameRecord) -> bool:
        if self.leader_key is None or self.leader_key.create_revision != leader.create_revision:
            return False
        if (self.rec.mod_revision if self.rec else 0) != record.mod_revision:
            return False
        self.revision += 1
        self.rec = replace(record, done=False, mod_revision=self.revision)
        return True

    def finish(self, scope: str, record: NameRecord) -> bool:
        if self.rec is None or (self.rec.revision, self.rec.address, self.rec.done) != (record.revision, record.address, False):
            return False
        self.revision += 1
        self.rec = replace(self.rec, done=True, mod_revision=self.revision)
        return True


class Zone:
    def __init__(self) -> None:
        self.address: str | None = None
        self.calls: list[tuple[str | None, str]] = []
        self.die = False

    def switch(self, service: str, *, address: str, port: int, site: str = "", expect: str | None = None,
               reason: str = "") -> None:
        self.calls.append((expect, address))
        if self.address not in (expect, address):
            raise RuntimeError(f"refused: {self.address} is neither {expect} nor {address}")
        if self.die:
            raise KeyboardInterrupt("the watcher died after the update")
        self.address = address


def test_two_watchers_claim_each_election_once_and_a_dead_watchers_claim_is_completed() -> None:
    etcd, zone = Etcd(), Zone()
    one, two = (LeaderFollower(CLUSTER, "pg", etcd, zone) for _ in range(2))
    etcd.elect("a")
    assert one.look().switched and zone.address == "10.0.1.21"
    assert two.look().decision.step is Step.NONE and one.settled() and two.settled()
    etcd.elect("b")
    # both read the same state; the first claim wins, the second's compare fails: one switch
    leader, record = etcd.leader("gdgov"), etcd.record("gdgov")
    d = decide(leader, record, ADDRESSES)
    assert d.record is not None and leader is not None
    assert etcd.claim("gdgov", leader, d.record) is True and etcd.claim("gdgov", leader, d.record) is False
    etcd.rec = record  # undo the demonstration: now through the followers
    assert one.look().switched and two.look().decision.step is Step.NONE
    assert zone.calls[-1] == ("10.0.1.21", "10.0.2.21") and len(zone.calls) == 2
    etcd.elect("a")
    zone.die = True
    with pytest.raises(KeyboardInterrupt):
        one.look()  # claimed and switched, not marked done
    zone.die = False
    zone.address = "10.0.1.21"
    look = two.look()
    assert look.decision.step is Step.COMPLETE and look.switched and two.settled()
    assert zone.calls[-1] == ("10.0.2.21", "10.0.1.21")  # the claim's own expected value, repeated
