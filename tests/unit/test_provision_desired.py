"""Desired landing zones and CIDR allocation: pure, from the mini and the example inventories."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govcloud.errors import PlanError
from govcloud.inventory import load_inventory
from govcloud.provision import DesiredOptions, build_desired
from govcloud.provision.desired import (
    allocate_blocks,
    block_index_of,
    existing_blocks,
    preferred_block,
    zone_cidr,
)
from govcloud.provision.model import MANAGED_TAG, ObservedResource, make_params

REPO = Path(__file__).resolve().parents[2]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"


@pytest.fixture(scope="module")
def example():  # type: ignore[no-untyped-def]
    return load_inventory(REPO)


@pytest.fixture(scope="module")
def mini():  # type: ignore[no-untyped-def]
    return load_inventory(REPO / "tests" / "data" / "mini")


def test_every_resource_is_tagged_and_named_for_its_department(example) -> None:  # type: ignore[no-untyped-def]
    d = build_desired(example, DesiredOptions(public_key=KEY))
    for r in d.resources:
        assert r.name.startswith("gov-")
        if "tags" in r.p:
            assert MANAGED_TAG in r.p["tags"] and f"govcloud:dept={r.department}" in r.p["tags"]
    assert {r.kind for r in d.resources} == {"project", "role_assignment", "quota_compute", "quota_network", "network",
                                             "subnet", "router", "router_interface", "security_group", "keypair", "server_group"}


def test_regions_follow_placement(mini) -> None:  # type: ignore[no-untyped-def]
    d = build_desired(mini, DesiredOptions(public_key=KEY))
    regions = {(r.department, r.region) for r in d.resources if r.kind == "network"}
    # mini: hrss has an active-standby system, zsj an active-active one: both need the backup region
    assert regions == {("hrss", "gz"), ("hrss", "st"), ("zsj", "gz"), ("zsj", "st")}
    # server groups only for active-active systems, only in the primary region, one per role
    sgs = [r for r in d.resources if r.kind == "server_group"]
    assert sgs and all(r.region == "gz" and r.p["policy"] == "anti-affinity" for r in sgs)
    aa = {s.id for s in mini.systems if s.placement.value == "active-active"}
    assert {r.name.rsplit("-", 1)[0].removeprefix("gov-") for r in sgs} == aa


def test_subnets_do_not_overlap_and_stay_in_the_pool(example) -> None:  # type: ignore[no-untyped-def]
    d = build_desired(example, DesiredOptions(public_key=KEY))
    pools = {r.name: ipaddress.ip_network(r.network_pool) for r in example.topology.regions}
    for region, pool in pools.items():
        nets = [ipaddress.ip_network(r.p["cidr"]) for r in d.resources if r.kind == "subnet" and r.region == region]
        assert nets and all(n.subnet_of(pool) for n in nets)  # type: ignore[arg-type]
        nets.sort()
        assert all(not a.overlaps(b) for a, b in zip(nets, nets[1:]))


def test_allocation_is_deterministic_and_stable_when_departments_are_added() -> None:
    base = allocate_blocks(["amr", "hrss", "zsj"], 128, {})
    assert base == allocate_blocks(["zsj", "amr", "hrss"], 128, {})
    assert base["amr"] == preferred_block("amr", 128)
    grown = allocate_blocks(["amr", "hrss", "zsj", "aaa", "new"], 128, {})
    # without a record a new department only moves others on a hash collision; with the record never
    recorded = allocate_blocks(["amr", "hrss", "zsj", "aaa", "new"], 128, base)
    assert {k: recorded[k] for k in base} == base
    assert len(set(grown.values())) == len(grown)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.from_regex(r"[a-z][a-z0-9]{1,8}", fullmatch=True), min_size=1, max_size=40, unique=True),
       st.lists(st.from_regex(r"[a-z][a-z0-9]{1,8}", fullmatch=True), max_size=10, unique=True))
def test_existing_blocks_are_kept_and_blocks_are_unique(first: list[str], later: list[str]) -> None:
    before = allocate_blocks(first, 64, {})
    after = allocate_blocks(first + later, 64, before)
    assert {k: after[k] for k in before} == before
    assert len(set(after.values())) == len(after)


def test_pool_full_is_an_error() -> None:
    with pytest.raises(ValueError, match="pool full"):
        allocate_blocks(["a", "b", "c"], 2, {})


def test_existing_blocks_are_read_back_from_subnets(mini) -> None:  # type: ignore[no-untyped-def]
    cidr = zone_cidr("10.244.0.0/15", 77, "data")
    assert block_index_of("10.244.0.0/15", cidr) == 77
    assert block_index_of("10.244.0.0/15", "192.168.0.0/24") is None
    obs = [ObservedResource("subnet", "gz", "gov-hrss-data", "id1", True, "hrss", make_params({"cidr": cidr}))]
    ex = existing_blocks(obs, mini)
    assert ex == {("gz", "hrss"): 77}
    d = build_desired(mini, DesiredOptions(public_key=KEY), ex)
    got = {r.name: r.p["cidr"] for r in d.resources if r.kind == "subnet" and r.region == "gz"}
    assert got["gov-hrss-data"] == cidr and got["gov-hrss-app"] == zone_cidr("10.244.0.0/15", 77, "app")


def test_ssh_only_from_mgmt_and_ops_never_the_world(example) -> None:  # type: ignore[no-untyped-def]
    d = build_desired(example, DesiredOptions(public_key=KEY))
    ops = set(example.topology.ops_cidrs)
    for r in d.resources:
        if r.kind != "security_group":
            continue
        mgmt = next(x.p["cidr"] for x in d.resources if x.kind == "subnet" and x.region == r.region
                    and x.name == f"gov-{r.department}-mgmt")
        for rule in r.p["rules"]:
            proto, ports, cidr = rule.split(":", 2)
            assert not cidr.endswith("/0")
            if ports == "22":
                assert cidr in ops | {mgmt}


def test_quotas_cover_the_systems_plus_headroom(mini) -> None:  # type: ignore[no-untyped-def]
    d = build_desired(mini, DesiredOptions(public_key=KEY, headroom=0.25))
    for dept in mini.departments:
        systems = [mini.system(s) for s in dept.systems]
        q = next(r for r in d.resources if r.kind == "quota_compute" and r.region == "gz" and r.department == dept.id)
        assert q.p["cores"] >= sum(s.resources.vcpus for s in systems) * 1.25 - 1
        assert q.p["ram"] >= sum(s.resources.ram_gb for s in systems) * 1024


def test_filters(mini) -> None:  # type: ignore[no-untyped-def]
    d = build_desired(mini, DesiredOptions(public_key=KEY, regions=("st",), departments=("hrss",)))
    assert {r.region for r in d.resources} == {"global", "st"}
    assert {r.department for r in d.resources} == {"hrss"}
    with pytest.raises(PlanError, match="unknown region"):
        build_desired(mini, DesiredOptions(regions=("xx",)))


def test_dependencies_point_at_desired_resources(example) -> None:  # type: ignore[no-untyped-def]
    d = build_desired(example, DesiredOptions(public_key=KEY))
    keys = {r.key for r in d.resources}
    assert len(keys) == len(d.resources)
    assert all(dep in keys for r in d.resources for dep in r.depends)
