"""Pure logic of the site lab: address plan safety, route planning, reconcile plan, inventory hosts, data."""

from __future__ import annotations

import time
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


# ------------------------------------------------------------------ reconcile watcher


def _listed(sid: str = "S1", status: str = "ACTIVE", **kw: Any) -> Any:
    """A server as openstacksdk lists it (only the attributes the watcher reads)."""
    from types import SimpleNamespace

    base = {"id": sid, "name": "web-01", "status": status, "availability_zone": "gz-a", "key_name": "k",
            "user_id": "u", "addresses": {"net": [{"addr": "10.244.5.10", "version": 4}]}}
    return SimpleNamespace(**{**base, **kw})


def test_server_signature_tracks_what_changes_a_host() -> None:
    from devcloud.lab.reconcile import server_signature

    s = server_signature(_listed())
    assert s == server_signature(_listed())
    for change in ({"status": "SHUTOFF"}, {"name": "web-02"}, {"availability_zone": "gz-b"}, {"key_name": "k2"},
                   {"addresses": {"net": [{"addr": "10.244.5.11", "version": 4}]}}):
        assert server_signature(_listed(**change)) != s, change


def test_backoff_doubles_up_to_the_cap() -> None:
    from devcloud.lab.reconcile import backoff_delay

    assert [backoff_delay(1.0, n, 15.0) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    assert backoff_delay(1.0, 10_000, 15.0) == 15.0


def test_quiet_log_reports_a_lasting_failure_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from devcloud.lab.reconcile import QuietLog

    now = [0.0]
    q = QuietLog(logging.getLogger("t.quiet"), every=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="t.quiet"):
        assert q.failed("cloud gz", "refused")
        for _ in range(100):  # one a second for 100 s: logged at 0 s and 60 s only
            now[0] += 1.0
            q.failed("cloud gz", "refused")
        assert q.failed("cloud gz", "timeout")  # a different error is logged at once
        q.ok("cloud gz")
        q.ok("cloud gz")
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs[0] == "cloud gz: refused" and "still failing (60 times" in msgs[1]
    assert msgs[2:] == ["cloud gz: timeout", "cloud gz: recovered"]


class _FlakyCloud:
    """Fault injection (a region's API failing after it answered cannot be produced in a unit test):
    a connection whose server list raises while ``down`` is set; counts the API calls."""

    def __init__(self, region: str, servers: list[Any]) -> None:
        from types import SimpleNamespace

        self.config = SimpleNamespace(region_name=region)
        self.servers_, self.down, self.calls = servers, False, {"list": 0, "ports": 0, "keypair": 0}
        self.portless = 0
        self.queries: list[dict[str, Any]] = []
        self.compute = SimpleNamespace(servers=self._servers, get_keypair=self._keypair)
        self.network = SimpleNamespace(ports=self._ports, get_subnet=self._subnet)

    def _servers(self, **kw: Any) -> list[Any]:
        self.calls["list"] += 1
        assert {k: v for k, v in kw.items() if k != "changes_since"} == {"details": True, "all_projects": True}
        self.queries.append(kw)
        if self.down:
            raise ConnectionRefusedError("nova-api down")
        return list(self.servers_)

    def _ports(self, device_id: str) -> list[Any]:
        from types import SimpleNamespace

        self.calls["ports"] += 1
        if self.calls["ports"] <= self.portless:  # ACTIVE before Neutron shows the port's fixed IP
            return [SimpleNamespace(fixed_ips=[])]
        return [SimpleNamespace(fixed_ips=[{"subnet_id": "sub", "ip_address": "10.244.5.10"}])]

    def _subnet(self, sid: str) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(ip_version=4, cidr="10.244.5.0/24", gateway_ip="10.244.5.1")

    def _keypair(self, name: str, user_id: str) -> Any:
        from types import SimpleNamespace

        self.calls["keypair"] += 1
        return SimpleNamespace(public_key="ssh-ed25519 AAAA k")

    def close(self) -> None:
        pass


def test_watcher_looks_up_only_new_servers_and_keeps_a_failing_regions_last_list(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from devcloud.lab.reconcile import Watcher

    (tmp_path / "clouds.yaml").write_text("clouds: {}\n")
    clouds = {"gz": _FlakyCloud("RegionGZ", [_listed()]), "st": _FlakyCloud("RegionST", [])}
    clouds["st"].down = True
    lab = SimpleNamespace(paths=SimpleNamespace(clouds_yaml=tmp_path / "clouds.yaml"))
    w = Watcher(lab, connect_fn=lambda c, _p: clouds[c])
    assert set(w.poll()) == {"st"}
    assert list(w.cache.get("gz") or {}) == ["S1"] and w.servers() is None
    assert w.servers() is None  # st never listed: its hosts must not be judged (nothing is applied)
    clouds["st"].down = False
    for _ in range(3):
        assert w.poll() == {}
    servers = w.servers()
    assert servers is not None and [(s.id, s.ip, s.public_key) for s in servers] == [("S1", "10.244.5.10", "ssh-ed25519 AAAA k")]
    # one list per region per poll; port and keypair look-ups only when the server was new
    assert clouds["gz"].calls == {"list": 4, "ports": 1, "keypair": 1}
    clouds["gz"].down = True
    assert set(w.poll()) == {"gz"}
    assert [s.id for s in w.servers() or []] == ["S1"]  # gz down: its last list stands, its host is not removed
    clouds["gz"].down = False
    # after the first full list, only what changed since the last list (overlapping by 5 s)
    q = clouds["gz"].queries
    assert "changes_since" not in q[0] and all("changes_since" in x for x in q[1:]), q
    clouds["gz"].servers_ = []  # a changes-since list without S1: unchanged, kept
    assert w.poll() == {} and [s.id for s in w.servers() or []] == ["S1"]
    clouds["gz"].servers_ = [_listed(status="DELETED")]  # how changes-since shows a deleted server
    assert w.poll() == {} and w.servers() == []


def test_watcher_survives_a_cloud_that_refuses_connections(tmp_path: Path) -> None:
    """Real failure: Keystone on a closed local port. poll() reports, never raises."""
    from types import SimpleNamespace

    from devcloud.lab.reconcile import Watcher

    cy = tmp_path / "clouds.yaml"
    cy.write_text(
        "clouds:\n" + "".join(
            f"  {c}:\n    auth: {{auth_url: 'http://127.0.0.1:9/v3', username: a, password: p, project_name: a,"
            f" user_domain_name: Default, project_domain_name: Default}}\n    region_name: {r}\n"
            for c, r in (("gz", "RegionGZ"), ("st", "RegionST"))
        )
    )
    w = Watcher(SimpleNamespace(paths=SimpleNamespace(clouds_yaml=cy)))
    errs = w.poll()
    assert set(errs) == {"gz", "st"} and w.servers() is None and w.conns == {}
    assert set(Watcher(SimpleNamespace(paths=SimpleNamespace(clouds_yaml=tmp_path / "none.yaml"))).poll()) == {"gz", "st"}


def test_watcher_exits_when_the_lab_stays_down_and_stops_on_request(tmp_path: Path) -> None:
    import threading
    from types import SimpleNamespace

    from devcloud.lab.reconcile import Watcher

    lab = SimpleNamespace(paths=SimpleNamespace(clouds_yaml=tmp_path / "c.yaml"), state=lambda: SimpleNamespace(up=False))
    t0 = time.monotonic()
    assert Watcher(lab, interval=0.05).run(threading.Event(), lab_down_exit=0.3) == 0  # `down` lost its PID file
    assert time.monotonic() - t0 < 5
    stop = threading.Event()
    th = threading.Thread(target=Watcher(lab, interval=10).run, args=(stop,), kwargs={"lab_down_exit": 3600})
    th.start()
    stop.set()  # what SIGTERM does; the 10 s wait ends at once
    th.join(timeout=5)
    assert not th.is_alive()


def test_watcher_looks_again_at_an_active_server_without_its_fixed_ip_yet(tmp_path: Path) -> None:
    """Seen on the devcloud: ACTIVE listed before the port shows its fixed IP, and the listed server
    (its signature) never changes after that; the watcher must not keep the incomplete answer."""
    from types import SimpleNamespace

    from devcloud.lab.reconcile import Watcher, retry_delay
    from devcloud.procs import wait_for

    assert [retry_delay(n) for n in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    (tmp_path / "clouds.yaml").write_text("clouds: {}\n")
    gz = _FlakyCloud("RegionGZ", [_listed()])
    gz.portless = 1
    w = Watcher(SimpleNamespace(paths=SimpleNamespace(clouds_yaml=tmp_path / "clouds.yaml")),
                connect_fn=lambda c, _p: gz, clouds=("gz",))
    assert w.poll() == {} and [s.ip for s in w.servers() or []] == [None]
    assert w.poll() == {} and gz.calls["ports"] == 1  # not at once: after retry_delay(0) = 1 s
    wait_for(lambda: not w.poll() and [s.ip for s in w.servers() or []] == ["10.244.5.10"], timeout=5, interval=0.1,
             what="the fixed IP picked up")
    calls = gz.calls["ports"]
    for _ in range(3):
        w.poll()
    assert gz.calls["ports"] == calls == 2  # complete now: no more look-ups


def test_changes_since_is_utc_and_overlaps() -> None:
    from devcloud.lab.reconcile import changes_since

    assert changes_since(1_700_000_005.0) == "2023-11-14T22:13:20Z"
    assert changes_since(1_700_000_005.0, overlap=0) == "2023-11-14T22:13:25Z"


class _RecordingLab:
    """Fault injection for apply_servers: a lab whose batch add fails on one address (a real clash
    needs a foreign host on that address), recording what is called."""

    def __init__(self, current: list[HostSpec], bad_ip: str) -> None:
        self.current = {h.key: h for h in current}
        self.bad_ip = bad_ip
        self.calls: list[str] = []

    def hosts(self, *, kind: str | None = None) -> list[HostSpec]:
        return [h for h in self.current.values() if kind is None or h.kind == kind]

    def remove_hosts(self, keys: list[str]) -> list[str]:
        self.calls.append(f"remove {','.join(keys)}")
        return [k for k in keys if self.current.pop(k, None)]

    def _make(self, kw: dict[str, Any]) -> None:
        if kw["ip"] == self.bad_ip:
            raise net.LabError(f"{kw['ip']} is already lab host x")
        self.current[kw["key"]] = HostSpec(key=kw["key"], hostname=kw["hostname"], site=kw["site"], ip=kw["ip"],
                                           prefixlen=kw["prefixlen"], gateway=kw["gateway"], kind="nova",
                                           authorized_keys=list(kw["authorized_keys"]))

    def add_hosts(self, specs: list[dict[str, Any]]) -> None:
        self.calls.append(f"add_hosts {len(specs)}")
        for kw in specs:
            self._make(kw)

    def add_host(self, **kw: Any) -> None:
        self.calls.append(f"add_host {kw['key']}")
        self._make(kw)


def test_apply_removes_in_one_batch_then_adds_in_one_batch_and_isolates_a_bad_server() -> None:
    from devcloud.lab.reconcile import apply_servers

    servers = [_srv(1), _srv(2), _srv(3)]
    want, _ = desired_hosts(servers)
    gone = HostSpec(key="n-gone", hostname="old", site="gz-a", ip="10.244.9.99", prefixlen=24, gateway="10.244.9.1", kind="nova")
    lab = _RecordingLab([gone], bad_ip="")
    res = apply_servers(lab, servers)
    assert lab.calls == ["remove n-gone", "add_hosts 3"] and sorted(res.created) == sorted(want) and res.removed == ["n-gone"]
    # a batch that fails part-way: the others are still made, the bad one is reported
    lab = _RecordingLab([], bad_ip="10.244.9.12")
    res = apply_servers(lab, servers)
    assert sorted(res.created) == sorted(k for k, h in want.items() if h.ip != "10.244.9.12")
    assert len(res.skipped) == 1 and "10.244.9.12" in res.skipped[0]
    assert lab.calls[0] == "add_hosts 3" and "add_host " + next(k for k, h in want.items() if h.ip == "10.244.9.12") in lab.calls


def test_database_hosts_come_from_the_topology_and_must_fit_the_lab(tmp_path: Path) -> None:
    from devcloud.lab.dbhosts import DbHost, db_hosts

    repo = Path(__file__).resolve().parents[2]
    assert db_hosts(repo / "inventories" / "topology.yaml") == [
        DbHost("gz-a", "gz-a-db1", "10.240.1.21"), DbHost("gz-b", "gz-b-db1", "10.240.2.21"),
        DbHost("st-a", "st-a-db1", "10.240.3.21")]
    topo = tmp_path / "topology.yaml"
    for bad, why in (("gz-a: [{name: x1, address: 10.240.2.21}]", "x1"), ("gz-c: [{name: x1, address: 10.240.1.21}]",
                                                                          "unknown site 'gz-c'")):
        topo.write_text(f"ha:\n  postgres:\n    hosts:\n      {bad}\n")
        with pytest.raises(net.LabError, match=why):
            db_hosts(topo)
    topo.write_text("version: 1\n")
    with pytest.raises(net.LabError, match="declares no ha.postgres"):
        db_hosts(topo)
