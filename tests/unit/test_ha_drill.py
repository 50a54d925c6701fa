"""HA drills' pure part (govcloud/failover/ha_drill.py): scenarios, the blackhole routes each injects,
and the outcome drawn from the writer's acknowledged commits."""

from __future__ import annotations

from pathlib import Path

import pytest

from govcloud.errors import InvalidInputError
from govcloud.failover.ha_drill import (
    Ack,
    Kind,
    RouteFault,
    faults,
    leader_lost,
    outcome,
    parse_scenario,
)
from govcloud.failover.shape import plan_shape
from govcloud.inventory import load_inventory

REPO = Path(__file__).resolve().parents[2]
TOPOLOGY = load_inventory(REPO).topology
HA = TOPOLOGY.ha_postgres
assert HA is not None
SHAPE = plan_shape(TOPOLOGY, HA)


def test_scenarios_name_the_topologys_sites_and_regions_and_anything_else_is_refused_with_examples() -> None:
    assert parse_scenario("site-loss:gz-a", TOPOLOGY).sites == ("gz-a",)
    assert parse_scenario("region-loss:gz", TOPOLOGY).sites == ("gz-a", "gz-b")
    assert parse_scenario("partition:gz-a/st-a", TOPOLOGY).kind is Kind.PARTITION
    for bad in ("site-loss:gz-c", "partition:gz-a/gz-a", "flood:gz-a", "region-loss:sz"):
        with pytest.raises(InvalidInputError) as err:
            parse_scenario(bad, TOPOLOGY)
        assert "site-loss:gz-a" in err.value.hint


def test_a_site_loss_cuts_its_hosts_from_every_other_host_in_both_directions() -> None:
    routes = faults(parse_scenario("site-loss:gz-a", TOPOLOGY), HA)  # type: ignore[arg-type]
    assert set(routes) == {RouteFault("gz-a-db1", "10.240.1.21", "10.240.2.21"),
                           RouteFault("gz-a-db1", "10.240.1.21", "10.240.3.21"),
                           RouteFault("gz-b-db1", "10.240.2.21", "10.240.1.21"),
                           RouteFault("st-a-db1", "10.240.3.21", "10.240.1.21")}


def test_a_partition_cuts_only_its_two_sides_and_loses_no_leader() -> None:
    scenario = parse_scenario("partition:gz-a/st-a", TOPOLOGY)
    assert set(faults(scenario, HA)) == {RouteFault("gz-a-db1", "10.240.1.21", "10.240.3.21"),  # type: ignore[arg-type]
                                         RouteFault("st-a-db1", "10.240.3.21", "10.240.1.21")}
    assert not leader_lost(scenario, SHAPE, "gz-a-db1")
    assert leader_lost(parse_scenario("site-loss:gz-a", TOPOLOGY), SHAPE, "gz-a-db1")
    assert not leader_lost(parse_scenario("site-loss:gz-b", TOPOLOGY), SHAPE, "gz-a-db1")


def test_outcome_measures_rto_to_the_new_leaders_first_commit_the_lost_commits_and_the_longest_pause() -> None:
    acks = [Ack(1, -0.5, "a"), Ack(2, 0.2, "a"), Ack(3, 21.0, "b"), Ack(4, 21.1, "b")]
    got = outcome(acks, present={1, 2, 3, 4}, new_leader="b")
    assert (got.rto_s, got.lost, got.acked, got.paused_s) == (21.0, (), 4, pytest.approx(20.8))
    assert outcome(acks, present={1, 3, 4}, new_leader="b").lost == (2,)
    assert outcome(acks[:2], present={1, 2}, new_leader="b").rto_s is None
