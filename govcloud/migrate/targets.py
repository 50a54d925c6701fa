"""What a migration builds and when it may cut over (pure: no I/O).

- :func:`target_sites` / :func:`targets_of`: one Nova server per legacy host and assigned site
  (active-active: the plan's primary and secondary Guangzhou sites; active-standby: the primary plus
  the standby, the plan's DR site; single: the primary), named ``<legacy host>-<site>`` so a rerun
  finds it by name (plus the ownership metadata) instead of booting a duplicate.
- :func:`pick_flavor`: the smallest flavor that holds the host's share of the system, the same share
  provisioning sized the quotas for.
- :func:`window_state`: whether ``now`` is inside the wave's weekly window and when it ends.
- :func:`order_by_dependencies`: systems of a wave in dependency order (a cycle moves together).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from govcloud.model import (
    DAYS,
    Host,
    Placement,
    SitePlacement,
    System,
    Topology,
    Window,
)

OWNER_KEY = "govcloud:migration"  # server metadata: "<plan>/<system>" (the ownership tag)
SYSTEM_KEY = "govcloud:system"
ROLE_KEY = "govcloud:role"
LEGACY_KEY = "govcloud:legacy-host"
MANAGED_KEY = "govcloud:managed"


@dataclass(frozen=True)
class TargetSpec:
    """One server to boot for one legacy host in one site."""

    name: str
    system: str
    department: str
    legacy_host: str
    legacy_address: str
    role: str
    site: str  # = availability zone
    region: str  # topology region name
    primary: bool  # the copy the service endpoint points at (primary site)
    vcpus: int
    ram_mb: int
    data: tuple[str, ...]

    def metadata(self, plan: str) -> dict[str, str]:
        return {OWNER_KEY: f"{plan}/{self.system}", SYSTEM_KEY: self.system, ROLE_KEY: self.role,
                LEGACY_KEY: self.legacy_host, MANAGED_KEY: "true"}


@dataclass(frozen=True)
class FlavorInfo:
    name: str
    vcpus: int
    ram_mb: int


def target_sites(system: System, placement: SitePlacement) -> tuple[str, ...]:
    """The sites a system's servers go to, primary first."""
    if system.placement is Placement.ACTIVE_ACTIVE:
        return tuple(s for s in (placement.primary, placement.secondary) if s)
    if system.placement is Placement.ACTIVE_STANDBY:
        return tuple(s for s in (placement.primary, placement.dr or placement.secondary) if s)
    return (placement.primary,)


def server_name(host: Host, site: str) -> str:
    return f"{host.name}-{site}"


def host_share(system: System, primary_region: bool) -> tuple[int, int]:
    """(vCPUs, RAM MB) of one host's server: the system's size (halved per site when active-active
    in the primary region) split over its hosts, rounded up, as provisioning sizes quotas."""
    hosts = max(1, len(system.hosts))
    res = system.resources.halved() if system.placement is Placement.ACTIVE_ACTIVE and primary_region else system.resources
    return -(-res.vcpus // hosts), -(-res.ram_gb * 1024 // hosts)


def targets_of(system: System, placement: SitePlacement, topology: Topology) -> tuple[TargetSpec, ...]:
    primary_region = topology.primary_region.name if topology.primary_region else ""
    out: list[TargetSpec] = []
    for i, site in enumerate(target_sites(system, placement)):
        region = topology.site(site).region
        vcpus, ram_mb = host_share(system, region == primary_region)
        for h in system.hosts:
            out.append(TargetSpec(name=server_name(h, site), system=system.id, department=system.department,
                                  legacy_host=h.name, legacy_address=h.address, role=h.role, site=site, region=region,
                                  primary=i == 0, vcpus=vcpus, ram_mb=ram_mb, data=h.data))
    return tuple(out)


def pick_flavor(flavors: Iterable[FlavorInfo], vcpus: int, ram_mb: int) -> FlavorInfo | None:
    """The smallest flavor (by vCPUs, then RAM, then name) that is at least (vcpus, ram_mb)."""
    fit = [f for f in flavors if f.vcpus >= vcpus and f.ram_mb >= ram_mb]
    return min(fit, key=lambda f: (f.vcpus, f.ram_mb, f.name)) if fit else None


# ------------------------------------------------------------------ maintenance windows

@dataclass(frozen=True)
class WindowState:
    inside: bool
    opens: datetime  # start of the current (inside) or next occurrence
    closes: datetime  # end of that occurrence


def _hm(text: str) -> tuple[int, int]:
    hh, mm = text.split(":")
    return int(hh), int(mm)


def window_state(window: Window, now: datetime) -> WindowState:
    """Where ``now`` (timezone-aware, in the window's local time) stands relative to a weekly window.

    An occurrence starts on each listed day at ``start`` and lasts until ``end`` (the next day when
    ``end`` is at or before ``start``)."""
    sh, sm = _hm(window.start)
    eh, em = _hm(window.end)
    length = timedelta(hours=eh - sh, minutes=em - sm)
    if length <= timedelta(0):
        length += timedelta(days=1)
    day0 = now.replace(hour=0, minute=0, second=0, microsecond=0)
    best: tuple[datetime, datetime] | None = None
    for back in range(-1, 8):  # yesterday's occurrence may still run; look a week ahead
        day = day0 + timedelta(days=back) if back >= 0 else day0 - timedelta(days=1)
        if DAYS[day.weekday()] not in window.days:
            continue
        start = day.replace(hour=sh, minute=sm)
        end = start + length
        if start <= now < end:
            return WindowState(True, start, end)
        if start > now and (best is None or start < best[0]):
            best = (start, end)
    if best is None:  # no days: never inside
        return WindowState(False, now, now)
    return WindowState(False, best[0], best[1])


# ------------------------------------------------------------------ dependency order

def order_by_dependencies(systems: Sequence[str], depends: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Batches in dependency order (each batch may run together); members of a cycle share a batch;
    dependencies outside ``systems`` are ignored (the preflight checks those)."""
    wanted = set(systems)
    deps = {s: {d for d in depends.get(s, ()) if d in wanted and d != s} for s in systems}
    # strongly connected components (Tarjan, iterative enough for wave sizes)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comp_of: dict[str, int] = {}
    comps: list[list[str]] = []
    counter = 0

    def strong(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on.add(v)
        for w in sorted(deps[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: list[str] = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp_of[w] = len(comps)
                comp.append(w)
                if w == v:
                    break
            comps.append(sorted(comp))

    for s in sorted(wanted):
        if s not in index:
            strong(s)
    # Tarjan emits components in reverse topological order of the dependency edges: deps first
    level: dict[int, int] = {}
    for ci, comp in enumerate(comps):
        lv = 0
        for v in comp:
            for d in deps[v]:
                if comp_of[d] != ci:
                    lv = max(lv, level[comp_of[d]] + 1)
        level[ci] = lv
    out: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for ci, comp in enumerate(comps):
        out[level[ci]].extend(comp)
    return [sorted(b) for b in out]
