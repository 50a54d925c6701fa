"""Pure logic of the site lab: address plan safety, route planning, reconcile plan, inventory hosts, data."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from devcloud.lab import net
from devcloud.lab.legacy import generate_data, legacy_hosts
from devcloud.lab.reconcile import ServerInfo, desired_hosts, diff, host_key, hostname_of
from devcloud.lab.state import HostSpec, LabState

MACHINE_ROUTES: list[dict[str, Any]] = [
    {"type": "unicast", "dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
    {"type": "unicast", "dst": "192.0.2.0/24", "dev": "eth0"},
    {"type": "local", "dst": "192.0.2.2", "dev": "eth0", "table": "local"},
]


def test_this_machine_kind_is_clear() -> None:
    assert net.overlap_problems(MACHINE_ROUTES, [("eth0", "192.0.2.2/24")], ["10.255.255.53"]) == []


def test_own_routes_and_links_do_not_count() -> None:
    ours: list[dict[str, Any]] = [
        {"type": "unreachable", "dst": "10.240.0.0/13", "metric": 4000},
        {"type": "unicast", "dst": "10.240.0.0/13", "gateway": "10.240.0.1", "dev": "gcl-ctl"},
    ]
    assert net.overlap_problems(MACHINE_ROUTES + ours, [("gcl-ctl", "10.240.0.2/30")]) == []


@pytest.mark.parametrize(
    "route",
    [
        {"type": "unicast", "dst": "10.0.0.0/8", "dev": "tun0"},  # covers the lab
        {"type": "unicast", "dst": "10.244.7.0/24", "dev": "br0"},  # inside it
    ],
)
def test_overlapping_route_is_refused(route: dict[str, Any]) -> None:
    problems = net.overlap_problems([*MACHINE_ROUTES, route], [])
    assert problems and route["dst"] in problems[0]


def test_overlapping_address_and_resolver_are_refused() -> None:
    assert net.overlap_problems([], [("eth1", "10.241.0.5/16")])
    assert net.overlap_problems([], [], ["10.240.9.9"])


def test_names_are_short_and_prefixed() -> None:
    for s in net.SITES:
        for name in (s.core_dev, net.ROUTER_UPLINK, net.BRIDGE, net.CTL_DEV, net.port_dev("a-very-long-host-name-" * 2)):
            assert len(name) <= 15 and name.startswith(("gcl-", "gclh"))
        assert s.router_ns.startswith(net.PREFIX)
    assert net.port_dev("x") == net.port_dev("x") != net.port_dev("y")


def test_site_addressing_matches_the_plan() -> None:
    assert [str(s.subnet) for s in net.SITES] == ["10.240.1.0/24", "10.240.2.0/24", "10.240.3.0/24", "10.240.16.0/20"]
    links = [s.uplink_addr.network for s in net.SITES] + [net.CTL_ADDR.network]
    assert len(set(links)) == len(links) and all(n.subnet_of(net.CORE_NET) for n in links)
    for s in net.SITES:
        assert s.subnet.subnet_of(net.LAB_NET)
        assert all(p.subnet_of(net.LAB_NET) for p in s.pools)


@pytest.mark.parametrize(
    ("site", "ip", "plen", "gw", "ok"),
    [
        ("gz-a", "10.240.1.20", 24, "10.240.1.1", True),
        ("gz-a", "10.240.1.1", 24, "10.240.1.1", False),  # the router
        ("gz-a", "10.244.3.5", 24, "10.244.3.1", True),  # a Neutron subnet of the gz pool
        ("st-a", "10.244.3.5", 24, "10.244.3.1", False),  # gz pool in a st site
        ("st-a", "10.246.0.9", 24, "10.246.0.1", True),
        ("legacy", "10.240.16.10", 20, "10.240.16.1", True),
        ("legacy", "10.244.3.5", 24, "10.244.3.1", False),
        ("gz-b", "192.0.2.9", 24, "192.0.2.1", False),  # the uplink: never
    ],
)
def test_validate_host_address(site: str, ip: str, plen: int, gw: str, ok: bool) -> None:
    s = net.site(site)
    if ok:
        net.validate_host_address(s, IPv4Address(ip), plen, IPv4Address(gw))
    else:
        with pytest.raises(net.LabError):
            net.validate_host_address(s, IPv4Address(ip), plen, IPv4Address(gw))


def _ha(key: str, site: str, ip: str, plen: int = 24, gw: str | None = None) -> net.HostAddr:
    gw = gw or ip.rsplit(".", 1)[0] + ".1"
    return net.HostAddr(key, site, IPv4Address(ip), plen, IPv4Address(gw))


def test_route_plan_for_a_subnet_spanning_two_sites() -> None:
    plans = net.plan_routes(
        [_ha("infra", "gz-a", "10.240.1.11"), _ha("a", "gz-a", "10.244.5.10"), _ha("b", "gz-b", "10.244.5.11")]
    )
    gza, gzb, sta = (net.site(n) for n in ("gz-a", "gz-b", "st-a"))
    core = plans[net.CORE_NS]
    assert core.routes == {"10.244.5.10/32": str(gza.uplink_addr.ip), "10.244.5.11/32": str(gzb.uplink_addr.ip)}
    assert plans[gza.router_ns].addresses == {"10.244.5.1/24"} == plans[gzb.router_ns].addresses
    assert plans[gza.router_ns].routes == {"10.244.5.11/32": str(gza.core_addr.ip)}
    assert plans[gzb.router_ns].routes == {"10.244.5.10/32": str(gzb.core_addr.ip)}
    assert plans[sta.router_ns].addresses == set() and len(plans[sta.router_ns].routes) == 2


def test_no_hosts_no_dynamic_routes() -> None:
    assert all(not p.routes and not p.addresses for p in net.plan_routes([]).values())


def _srv(i: int, **kw: object) -> ServerInfo:
    base: dict[str, object] = dict(
        id=f"0000000{i}-aaaa-bbbb-cccc-dddddddddddd", name=f"App_Server {i}", region="RegionGZ", az="gz-a",
        status="ACTIVE", ip=f"10.244.9.{10 + i}", cidr="10.244.9.0/24", gateway="10.244.9.1",
        key_name="k", public_key="ssh-ed25519 AAAA test",
    )
    base.update(kw)
    return ServerInfo(**base)  # type: ignore[arg-type]


def test_desired_hosts_maps_servers_to_sites() -> None:
    want, skipped = desired_hosts(
        [
            _srv(1),
            _srv(2, az="gz-b"),
            _srv(3, status="BUILD"),
            _srv(4, az="nova"),
            _srv(5, ip=None, cidr=None),
            _srv(6, region="RegionST", az="st-a", ip="10.244.9.16"),  # gz pool address in st-a
            _srv(7, ip="10.244.9.11"),  # clashes with server 1
            _srv(8, public_key=None),
        ]
    )
    assert sorted(h.hostname for h in want.values()) == ["app-server-1", "app-server-2", "app-server-8"]
    h1 = want[host_key(_srv(1).id)]
    assert (h1.site, h1.ip, h1.prefixlen, h1.gateway, h1.kind) == ("gz-a", "10.244.9.11", 24, "10.244.9.1", "nova")
    assert h1.authorized_keys == ["ssh-ed25519 AAAA test"] and h1.meta["server_id"] == _srv(1).id
    assert want[host_key(_srv(8).id)].authorized_keys == []
    assert len(skipped) == 5  # az, no ip, wrong pool, clash, no key (host still created)


def test_diff_creates_replaces_removes_and_keeps() -> None:
    want, _ = desired_hosts([_srv(1), _srv(2)])
    k1, k2 = host_key(_srv(1).id), host_key(_srv(2).id)
    changed = HostSpec(**{**want[k2].__dict__, "authorized_keys": ["ssh-ed25519 OLD"]})
    gone = HostSpec(key="n-gone", hostname="old", site="gz-a", ip="10.244.9.99", prefixlen=24, gateway="10.244.9.1", kind="nova")
    legacy = HostSpec(key="leg", hostname="leg", site="legacy", ip="10.240.16.10", prefixlen=20, gateway="10.240.16.1", kind="legacy")
    plan = diff(want, [want[k1], changed, gone, legacy])
    assert plan.keep == [k1] and [h.key for h in plan.replace] == [k2] and plan.remove == ["n-gone"] and not plan.create
    assert diff(want, []).create and diff({}, [legacy]).remove == []  # never touches non-nova hosts


def test_hostname_of() -> None:
    assert hostname_of("Tax Portal_01") == "tax-portal-01"
    assert hostname_of("***") == "server"
    assert len(hostname_of("x" * 100)) == 63


def test_state_roundtrip() -> None:
    st = LabState(up=True, cut=["gz-a"], hosts={"h": HostSpec("h", "h", "gz-a", "10.240.1.11", 24, "10.240.1.1")})
    assert LabState.from_json(st.to_json()) == st


def _inv(hosts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"version": 1, "department": {"id": "d", "name": "D"}, "systems": [{"id": "s1", "hosts": hosts}]}]


def test_legacy_hosts_validation() -> None:
    ok = legacy_hosts(_inv([{"name": "a-01", "address": "10.240.16.50", "port": 22, "user": "root", "role": "app", "data": ["/srv/a"]}]))
    assert ok[0].system == "s1" and ok[0].data == ("/srv/a",)
    for bad in (
        {"name": "a-01", "address": "10.240.1.50", "data": ["/srv/a"]},  # not in the legacy site
        {"name": "a-01", "address": "10.240.16.50", "data": ["/var/lib/a"]},  # not under /srv
        {"name": "a-01", "address": "10.240.16.50", "data": ["/srv/../etc"]},
        {"name": "A_01", "address": "10.240.16.50", "data": []},
        {"name": "a-01", "address": "10.240.16.50", "port": 2222, "data": []},
    ):
        with pytest.raises(net.LabError):
            legacy_hosts(_inv([bad]))
    with pytest.raises(net.LabError, match="not in the inventory"):
        legacy_hosts(_inv([]), ["nope"])


def test_generated_data_is_deterministic(tmp_path: Path) -> None:
    assert generate_data(tmp_path / "a", "seed", files=3, size=1000) == 3000
    generate_data(tmp_path / "b", "seed", files=3, size=1000)
    generate_data(tmp_path / "c", "other", files=3, size=1000)
    a, b, c = ((tmp_path / d / "part-0001.bin").read_bytes() for d in "abc")
    assert a == b != c and len(a) == 1000


def test_partition_rules_cover_both_directions_and_neutron_hosts() -> None:
    hosts = [_ha("a", "gz-a", "10.244.5.10"), _ha("i", "st-a", "10.240.3.11"), _ha("n", "st-a", "10.246.1.5")]
    rules = net.plan_partition_rules(hosts, [("gz-a", "st-a")])
    assert rules == {
        ("gcl-gza", "10.240.3.0/24"), ("gcl-gza", "10.246.1.5/32"),
        ("gcl-sta", "10.240.1.0/24"), ("gcl-sta", "10.244.5.10/32"),
    }
    assert net.plan_partition_rules(hosts, []) == set()
