"""The lab's network: address plan, safety checks, and the netns/veth/bridge/route plumbing.

Topology (docs/lab-addressing.md)::

    root ns (controller) --gcl-ctl-- [gcl-core router ns] --gcl-gza-- [gcl-r-gz-a: gcl-up, bridge gcl-br] -- hosts
                                                          --gcl-gzb-- [gcl-r-gz-b ...]
                                                          --gcl-sta-- [gcl-r-st-a ...]
                                                          --gcl-leg-- [gcl-r-legacy ...]

Bridges and router-side veth ends live *inside* the router namespaces, so the root namespace only
ever gets one link (``gcl-ctl``) and two routes (``10.240.0.0/13 via core`` and the ``unreachable``
guard). Deleting the namespaces deletes everything else. ``cut SITE`` sets the router's uplink down:
the site is then unreachable from the other sites *and from the controller* (a real outage).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from devcloud.errors import DevcloudError

PREFIX = "gcl-"
LAB_NET = IPv4Network("10.240.0.0/13")
CORE_NET = IPv4Network("10.240.0.0/24")
GUARD_METRIC = 4000
#: Addresses that must never be shadowed by the lab whatever the machine's routes say.
PROTECTED: tuple[IPv4Network, ...] = (IPv4Network("192.0.2.0/24"), IPv4Network("10.255.255.53/32"))

CORE_NS = "gcl-core"
CTL_DEV = "gcl-ctl"  # root side; the core side has the same name inside gcl-core
CTL_ADDR = IPv4Interface("10.240.0.2/30")
CORE_CTL_ADDR = IPv4Interface("10.240.0.1/30")
ROUTER_UPLINK = "gcl-up"
BRIDGE = "gcl-br"
HOST_DEV = "eth0"


class LabError(DevcloudError):
    """A lab failure the user can act on."""


@dataclass(frozen=True)
class Site:
    name: str  # gz-a
    short: str  # gza: suffix of the core-side uplink name
    subnet: IPv4Network  # site infrastructure (or the legacy machine rooms)
    index: int  # uplink /30 number inside 10.240.0.0/24
    pools: tuple[IPv4Network, ...] = ()  # landing-zone pools whose Neutron subnets may land here

    @property
    def router_ns(self) -> str:
        return f"{PREFIX}r-{self.name}"

    @property
    def core_dev(self) -> str:
        return f"{PREFIX}{self.short}"

    @property
    def core_addr(self) -> IPv4Interface:
        """Core's end of the site uplink (the site router's next hop)."""
        return IPv4Interface(f"{CORE_NET.network_address + 4 * self.index + 1}/30")

    @property
    def uplink_addr(self) -> IPv4Interface:
        """Site router's end of the uplink (the core's next hop for the site)."""
        return IPv4Interface(f"{CORE_NET.network_address + 4 * self.index + 2}/30")

    @property
    def gateway(self) -> IPv4Interface:
        """The router's address on the site bridge: first host of the site subnet."""
        return IPv4Interface(f"{self.subnet.network_address + 1}/{self.subnet.prefixlen}")


GZ_POOL = IPv4Network("10.244.0.0/15")
ST_POOL = IPv4Network("10.246.0.0/15")

SITES: tuple[Site, ...] = (
    Site("gz-a", "gza", IPv4Network("10.240.1.0/24"), 1, (GZ_POOL,)),
    Site("gz-b", "gzb", IPv4Network("10.240.2.0/24"), 2, (GZ_POOL,)),
    Site("st-a", "sta", IPv4Network("10.240.3.0/24"), 3, (ST_POOL,)),
    Site("legacy", "leg", IPv4Network("10.240.16.0/20"), 4),
)
DATACENTRES: tuple[str, ...] = ("gz-a", "gz-b", "st-a")


def site(name: str) -> Site:
    for s in SITES:
        if s.name == name:
            return s
    raise LabError(f"unknown site {name!r} (sites: {', '.join(s.name for s in SITES)})")


# ---------------------------------------------------------------- naming


_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def check_key(key: str) -> str:
    """Host keys become namespace and directory names: lowercase DNS labels only."""
    if not _KEY_RE.match(key):
        raise LabError(f"invalid lab host name {key!r}: use lowercase letters, digits and '-' (max 63)")
    return key


def host_ns(key: str) -> str:
    return f"{PREFIX}h-{key}"


def port_dev(key: str) -> str:
    """Router-side veth end for a host: short (<= 15 chars) and stable."""
    return "gclh" + hashlib.sha1(key.encode()).hexdigest()[:8]


# ---------------------------------------------------------------- safety (pure)


def _as_net(dst: str) -> IPv4Network | None:
    if dst in ("default", ""):
        return None
    try:
        return IPv4Network(dst, strict=False)
    except ValueError:
        return None


def is_lab_route(r: dict[str, Any]) -> bool:
    """A route the lab itself created (a previous run, or this one)."""
    dev = str(r.get("dev", ""))
    if dev.startswith(PREFIX):
        return True
    return r.get("type") in ("unreachable", "blackhole") and r.get("dst") == str(LAB_NET)


def overlap_problems(
    routes: Iterable[dict[str, Any]],
    addresses: Iterable[tuple[str, str]],
    nameservers: Iterable[str] = (),
    lab: IPv4Network = LAB_NET,
) -> list[str]:
    """Why the lab range may not be used on this machine; empty when it is safe.

    ``routes`` are ``ip -j -4 route show table all`` rows, ``addresses`` (ifname, cidr) pairs of
    the machine's interfaces, ``nameservers`` from resolv.conf. Default routes do not count (the
    guard route is more specific), the lab's own routes/links (``gcl-``) do not count.
    """
    problems: list[str] = []
    for p in PROTECTED:
        if p.overlaps(lab):
            problems.append(f"lab range {lab} would shadow protected {p}")
    for r in routes:
        if is_lab_route(r):
            continue
        net = _as_net(str(r.get("dst", "")))
        if net is None or net.prefixlen == 0:
            continue
        if net.overlaps(lab):
            problems.append(f"route {r.get('type', 'unicast')} {r.get('dst')} dev {r.get('dev', '-')} overlaps {lab}")
    for ifname, cidr in addresses:
        if ifname.startswith(PREFIX):
            continue
        iface = IPv4Interface(cidr)
        if iface.network.overlaps(lab) or iface.ip in lab:
            problems.append(f"address {cidr} on {ifname} overlaps {lab}")
    for ns in nameservers:
        try:
            if IPv4Address(ns) in lab:
                problems.append(f"DNS resolver {ns} is inside {lab}")
        except ValueError:
            continue
    return problems


def read_nameservers(resolv: Path = Path("/etc/resolv.conf")) -> list[str]:
    try:
        lines = resolv.read_text().splitlines()
    except OSError:
        return []
    return [ln.split()[1] for ln in lines if ln.startswith("nameserver") and len(ln.split()) > 1]


# ---------------------------------------------------------------- route plan (pure)


@dataclass(frozen=True)
class HostAddr:
    """What the routing plan needs to know about one host."""

    key: str
    site: str
    ip: IPv4Address
    prefixlen: int
    gateway: IPv4Address


@dataclass
class RouterPlan:
    addresses: set[str] = field(default_factory=set)  # extra gateway addresses on the site bridge
    routes: dict[str, str] = field(default_factory=dict)  # dst /32 -> via


def plan_routes(hosts: Iterable[HostAddr]) -> dict[str, RouterPlan]:
    """Per namespace (core and each site router): extra bridge addresses and host routes.

    Hosts in their site's own subnet are covered by the static site routes. A host on a Neutron
    subnet (10.244/15, 10.246/15) gets: its gateway address on its site's bridge; a /32 in the core
    via its site router; and a /32 via the core in every other site router, so two sites serving the
    same subnet (active-active across gz-a/gz-b) reach each other (proxy ARP answers on the bridge).
    """
    plans: dict[str, RouterPlan] = {CORE_NS: RouterPlan(), **{s.router_ns: RouterPlan() for s in SITES}}
    for h in hosts:
        s = site(h.site)
        if h.ip in s.subnet:
            continue
        plans[s.router_ns].addresses.add(f"{h.gateway}/{h.prefixlen}")
        plans[CORE_NS].routes[f"{h.ip}/32"] = str(s.uplink_addr.ip)
        for other in SITES:
            if other.name != s.name:
                plans[other.router_ns].routes[f"{h.ip}/32"] = str(other.core_addr.ip)
    return plans


PARTITION_PREF = 1000


def site_prefixes(hosts: Iterable[HostAddr], site_name: str) -> set[str]:
    """Every destination that lives in a site: its subnet and its Neutron-addressed hosts."""
    s = site(site_name)
    out = {str(s.subnet)}
    out |= {f"{h.ip}/32" for h in hosts if h.site == site_name and h.ip not in s.subnet}
    return out


def plan_partition_rules(hosts: Iterable[HostAddr], partitions: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Core policy rules ``(iif, dst)`` that blackhole traffic between partitioned site pairs.

    A partition A/B drops what enters the core from A's uplink towards B and the reverse, while
    both keep reaching every other site and the controller (a broken WAN path, not an outage).
    """
    hl = list(hosts)
    rules: set[tuple[str, str]] = set()
    for a, b in partitions:
        for src, dst in ((a, b), (b, a)):
            for prefix in site_prefixes(hl, dst):
                rules.add((site(src).core_dev, prefix))
    return rules


def apply_partition_rules(rules: set[tuple[str, str]]) -> None:
    if CORE_NS not in netns_list():
        return
    have = {
        (str(r.get("iif")), f"{r.get('dst')}/{r.get('dstlen', 32)}")
        for r in ip_json("-4", "rule", "show", ns=CORE_NS)
        if r.get("priority") == PARTITION_PREF
    }
    want = {(i, _norm(d)) for i, d in rules}
    for iif, dst in sorted(want - have):
        ip("rule", "add", "pref", str(PARTITION_PREF), "iif", iif, "to", dst, "blackhole", ns=CORE_NS)
    for iif, dst in sorted(have - want):
        ip("rule", "del", "pref", str(PARTITION_PREF), "iif", iif, "to", dst, ns=CORE_NS, check=False)


def _norm(dst: str) -> str:
    return dst if "/" in dst else f"{dst}/32"


def validate_host_address(s: Site, ip: IPv4Address, prefixlen: int, gateway: IPv4Address) -> None:
    """A host address must fit its site: site subnet, or (datacentres) a subnet of a landing pool."""
    net = IPv4Interface(f"{ip}/{prefixlen}").network
    if ip in s.subnet:
        if net != s.subnet:
            raise LabError(f"{ip}/{prefixlen}: hosts in {s.subnet} must use that prefix")
        if ip == s.gateway.ip or ip == s.subnet.network_address or ip == s.subnet.broadcast_address:
            raise LabError(f"{ip} is reserved in site {s.name} ({s.subnet})")
        return
    if not any(net.subnet_of(p) for p in s.pools):
        allowed = ", ".join(str(x) for x in (s.subnet, *s.pools))
        raise LabError(f"{ip}/{prefixlen} does not belong in site {s.name} (allowed: {allowed})")
    if gateway not in net or gateway == ip:
        raise LabError(f"gateway {gateway} invalid for {ip}/{prefixlen}")


# ---------------------------------------------------------------- plumbing


def run(argv: Sequence[str], *, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise LabError with its stderr."""
    r = subprocess.run(list(argv), capture_output=True, text=True, input=input, check=False)
    if check and r.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {r.stderr.strip() or r.stdout.strip()} (rc {r.returncode})")
    return r


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    return run(argv, check=check)


def ip_json(*args: str, ns: str | None = None) -> list[dict[str, Any]]:
    out = ip("-j", *args, ns=ns, check=False).stdout.strip()
    rows: list[dict[str, Any]] = json.loads(out) if out else []
    return rows


def netns_list() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.strip()]


def lab_netns() -> list[str]:
    return [n for n in netns_list() if n.startswith(PREFIX)]


def netns_pids(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False).stdout
    return [int(x) for x in out.split() if x.isdigit()]


def sysctl(ns: str, key: str, value: str) -> None:
    run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}"])


def machine_problems() -> list[str]:
    routes = ip_json("-4", "route", "show", "table", "all")
    addrs = [
        (i.get("ifname", ""), f"{a['local']}/{a['prefixlen']}")
        for i in ip_json("-4", "addr", "show")
        for a in i.get("addr_info", [])
        if a.get("family") == "inet"
    ]
    return overlap_problems(routes, addrs, read_nameservers())


def check_machine() -> None:
    problems = machine_problems()
    if problems:
        raise LabError("refusing to create the lab: " + "; ".join(problems))


def ensure_guard() -> None:
    """``unreachable 10.240.0.0/13``: with no more specific lab route, lab packets die here."""
    ip("route", "replace", "unreachable", str(LAB_NET), "metric", str(GUARD_METRIC))


def remove_guard() -> None:
    ip("route", "del", "unreachable", str(LAB_NET), "metric", str(GUARD_METRIC), check=False)


def guard_present() -> bool:
    return any(
        r.get("type") == "unreachable" and r.get("dst") == str(LAB_NET) for r in ip_json("-4", "route", "show")
    )


def _ns_add(name: str) -> None:
    if name not in netns_list():
        ip("netns", "add", name)
    ip("link", "set", "lo", "up", ns=name)


def link_exists(dev: str, ns: str | None = None) -> bool:
    return ip("link", "show", "dev", dev, ns=ns, check=False).returncode == 0


def build_core() -> None:
    """Core router namespace + the controller's veth into it + the root routes. Idempotent."""
    _ns_add(CORE_NS)
    sysctl(CORE_NS, "net.ipv4.ip_forward", "1")
    if not link_exists(CTL_DEV):
        ip("link", "add", CTL_DEV, "type", "veth", "peer", "name", CTL_DEV, "netns", CORE_NS)
    ip("addr", "replace", str(CTL_ADDR), "dev", CTL_DEV)
    ip("link", "set", CTL_DEV, "up")
    ip("addr", "replace", str(CORE_CTL_ADDR), "dev", CTL_DEV, ns=CORE_NS)
    ip("link", "set", CTL_DEV, "up", ns=CORE_NS)
    # the controller reaches the whole lab through the core; the guard stays underneath (metric)
    ip("route", "replace", str(LAB_NET), "via", str(CORE_CTL_ADDR.ip), "dev", CTL_DEV)


def build_site(s: Site) -> None:
    """Router namespace with the site bridge, uplink to the core, routes both ways. Idempotent."""
    ns = s.router_ns
    _ns_add(ns)
    sysctl(ns, "net.ipv4.ip_forward", "1")
    if not link_exists(s.core_dev, CORE_NS):
        ip("link", "add", s.core_dev, "netns", CORE_NS, "type", "veth", "peer", "name", ROUTER_UPLINK, "netns", ns)
    ip("addr", "replace", str(s.core_addr), "dev", s.core_dev, ns=CORE_NS)
    ip("link", "set", s.core_dev, "up", ns=CORE_NS)
    ip("addr", "replace", str(s.uplink_addr), "dev", ROUTER_UPLINK, ns=ns)
    if not link_exists(BRIDGE, ns):
        ip("link", "add", BRIDGE, "type", "bridge", ns=ns)
    ip("addr", "replace", str(s.gateway), "dev", BRIDGE, ns=ns)
    ip("link", "set", BRIDGE, "up", ns=ns)
    sysctl(ns, f"net.ipv4.conf.{BRIDGE}.proxy_arp", "1")
    sysctl(ns, f"net.ipv4.neigh.{BRIDGE}.proxy_delay", "0")  # default delays proxy replies up to 0.8 s
    ip("route", "replace", str(s.subnet), "via", str(s.uplink_addr.ip), "dev", s.core_dev, ns=CORE_NS)
    set_uplink(s, up=True)


def set_uplink(s: Site, *, up: bool) -> None:
    """Cut or restore a site: its router's uplink down/up (the core end sees carrier loss)."""
    ns = s.router_ns
    ip("link", "set", ROUTER_UPLINK, "up" if up else "down", ns=ns)
    if up:
        # admin-down flushed the default route; put it back, and forget ARP failures of the outage
        ip("route", "replace", "default", "via", str(s.core_addr.ip), "dev", ROUTER_UPLINK, ns=ns)
        ip("neigh", "flush", "all", ns=ns, check=False)
        wait_operstate_up([(ns, ROUTER_UPLINK), (CORE_NS, s.core_dev)])


def wait_operstate_up(links: Sequence[tuple[str, str]], timeout: float = 5.0) -> None:
    """Carrier comes back through the kernel's linkwatch, up to about 1 s after ``link set up``;
    until then the first packets are dropped. Wait for operstate UP on every given (ns, dev)."""
    deadline = time.monotonic() + timeout
    pending = list(links)
    while pending:
        pending = [(ns, dev) for ns, dev in pending if (ip_json("link", "show", "dev", dev, ns=ns) or [{}])[0].get("operstate") != "UP"]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise LabError(f"links not up after {timeout:.0f}s: {pending}")
        time.sleep(0.02)


def uplink_up(s: Site) -> bool:
    rows = ip_json("link", "show", "dev", ROUTER_UPLINK, ns=s.router_ns)
    return bool(rows) and "UP" in rows[0].get("flags", [])


def add_host_link(s: Site, key: str, ns: str, iface: IPv4Interface, gateway: IPv4Address) -> None:
    """veth from the site bridge into the host namespace, address + default route inside."""
    dev = port_dev(key)
    if link_exists(dev, s.router_ns) and not link_exists(HOST_DEV, ns):
        # the bridge port of a host of the same name removed a moment ago: the kernel destroys a deleted
        # namespace's veth pairs asynchronously, so its port can outlive it (and then vanish under the
        # new host, leaving it without eth0); delete it now, the new pair is made below
        ip("link", "del", dev, ns=s.router_ns, check=False)
    if not link_exists(dev, s.router_ns):
        ip("link", "add", dev, "netns", s.router_ns, "type", "veth", "peer", "name", HOST_DEV, "netns", ns)
    ip("link", "set", dev, "master", BRIDGE, "up", ns=s.router_ns)
    ip("addr", "replace", str(iface), "dev", HOST_DEV, ns=ns)
    ip("link", "set", HOST_DEV, "up", ns=ns)
    ip("route", "replace", "default", "via", str(gateway), "dev", HOST_DEV, ns=ns)
    # a host of the same address removed a moment ago left the router's neighbour entry on its MAC: the
    # router would send the new host's packets to a MAC that is gone until that entry fails its probes
    # (seconds: long enough to time out an SSH connect), so forget it now
    ip("neigh", "flush", "to", str(iface.ip), ns=s.router_ns, check=False)


def apply_plan(plans: dict[str, RouterPlan], cut: Iterable[str]) -> None:
    """Make the namespaces' host routes and bridge addresses match the plan (add and remove)."""
    cut_ns = {site(c).router_ns for c in cut}
    present = set(netns_list())
    for ns, plan in plans.items():
        if ns not in present:
            continue
        if ns != CORE_NS:
            have_addrs = {
                f"{a['local']}/{a['prefixlen']}"
                for i in ip_json("-4", "addr", "show", "dev", BRIDGE, ns=ns)
                for a in i.get("addr_info", [])
            }
            base = next(str(s.gateway) for s in SITES if s.router_ns == ns)
            for a in sorted(plan.addresses - have_addrs):
                ip("addr", "add", a, "dev", BRIDGE, ns=ns)
            for a in sorted(have_addrs - plan.addresses - {base}):
                ip("addr", "del", a, "dev", BRIDGE, ns=ns, check=False)
        have = {r["dst"]: r.get("gateway") for r in ip_json("-4", "route", "show", "proto", "static", ns=ns)}
        for dst, via in sorted(plan.routes.items()):
            if ns in cut_ns and ns != CORE_NS:
                continue  # uplink is down: no route via it can exist until restore
            d = dst.removesuffix("/32")
            if have.get(d) != via:
                ip("route", "replace", dst, "via", via, "proto", "static", ns=ns)
        for d in have:
            if f"{d}/32" not in plan.routes and d not in plan.routes:
                ip("route", "del", d, "proto", "static", ns=ns, check=False)


def delete_netns(ns: str) -> None:
    ip("netns", "del", ns, check=False)


def delete_netns_many(names: Sequence[str]) -> None:
    """``ip -batch``: one process for hundreds of namespaces (``-force`` goes on past errors)."""
    if names:
        run(["ip", "-force", "-batch", "-"], input="".join(f"netns del {n}\n" for n in names), check=False)


def root_lab_links() -> list[str]:
    return [i["ifname"] for i in ip_json("link", "show") if str(i.get("ifname", "")).startswith(PREFIX)]


def root_lab_routes() -> list[dict[str, Any]]:
    """Routes in the root namespace that belong to the lab (its links, its guard)."""
    return [r for r in ip_json("-4", "route", "show", "table", "all") if is_lab_route(r)]


def addr_in_lab(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr) in LAB_NET
    except ValueError:
        return False
