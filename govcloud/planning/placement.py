"""Assign sites to systems by placement policy, balancing load, never over a site's capacity."""

from __future__ import annotations

from dataclasses import dataclass

from govcloud.errors import CapacityError, Diagnostic
from govcloud.model import Inventory, Placement, Resources, SitePlacement, System, Topology


@dataclass(frozen=True)
class SiteLoad:
    site: str
    capacity: Resources
    used: Resources

    @property
    def utilisation(self) -> float:
        c, u = self.capacity, self.used
        return max(u.vcpus / c.vcpus if c.vcpus else 0.0, u.ram_gb / c.ram_gb if c.ram_gb else 0.0,
                   u.storage_gb / c.storage_gb if c.storage_gb else 0.0)


def site_demands(system: System, placement: SitePlacement) -> list[tuple[str, Resources]]:
    """What each assigned site carries.

    Active-active runs half on each primary-region site; the disaster-recovery copy (``dr``, in the
    backup region, for active-active and active-standby systems) is sized to run the whole system.
    """
    out: list[tuple[str, Resources]]
    if system.placement is Placement.ACTIVE_ACTIVE:
        half = system.resources.halved()
        out = [(placement.primary, half), *([(placement.secondary, half)] if placement.secondary else [])]
    else:
        out = [(placement.primary, system.resources)]
    if placement.dr:
        out.append((placement.dr, system.resources))
    return out


class _Ledger:
    def __init__(self, topology: Topology) -> None:
        self.capacity = {s.name: s.capacity for s in topology.sites}
        self.used = {s.name: Resources() for s in topology.sites}
        self.overflow = {s.name: Resources() for s in topology.sites}
        self.overflow_systems: dict[str, list[str]] = {s.name: [] for s in topology.sites}

    def fits(self, site: str, need: Resources) -> bool:
        return (self.used[site] + need).fits_in(self.capacity[site])

    def score(self, site: str, need: Resources) -> tuple[float, str]:
        after = self.used[site] + need
        c = self.capacity[site]
        util = max(after.vcpus / max(c.vcpus, 1), after.ram_gb / max(c.ram_gb, 1), after.storage_gb / max(c.storage_gb, 1))
        return util, site

    def best(self, sites: list[str], need: Resources) -> str | None:
        fitting = [s for s in sites if self.fits(s, need)]
        return min(fitting, key=lambda s: self.score(s, need)) if fitting else None

    def add(self, site: str, need: Resources) -> None:
        self.used[site] = self.used[site] + need

    def overflow_to(self, sites: list[str], need: Resources, system: str) -> None:
        site = min(sites, key=lambda s: self.score(s, need))
        self.overflow[site] = self.overflow[site] + need
        self.overflow_systems[site].append(system)


def place_systems(inventory: Inventory) -> dict[str, SitePlacement]:
    """Sites for every system. Raises CapacityError naming each short site and by how much."""
    topo = inventory.topology
    primary = topo.primary_region
    backup = topo.backup_region
    gz = [s.name for s in topo.sites_of(primary.name)] if primary else []
    dr = [s.name for s in topo.sites_of(backup.name)] if backup else []
    ledger = _Ledger(topo)
    result: dict[str, SitePlacement] = {}
    # biggest first: a greedy that leaves the small ones for the gaps
    order = sorted(inventory.systems, key=lambda s: (-(s.resources.vcpus + s.resources.ram_gb // 4), s.id))
    for system in order:
        if system.placement is Placement.ACTIVE_ACTIVE:
            half = system.resources.halved()
            first = ledger.best(gz, half)
            second = ledger.best([s for s in gz if s != first], half) if first else None
            standby = ledger.best(dr, system.resources) if dr else None
            if first is None or second is None:
                for s in gz[:2]:
                    if not ledger.fits(s, half):
                        ledger.overflow_to([s], half, system.id)
            if dr and standby is None:
                ledger.overflow_to(dr, system.resources, system.id)
            if first is None or second is None or (dr and standby is None):
                continue
            ledger.add(first, half)
            ledger.add(second, half)
            if standby:
                ledger.add(standby, system.resources)
            result[system.id] = SitePlacement(primary=first, secondary=second, dr=standby)
        elif system.placement is Placement.ACTIVE_STANDBY:
            home = ledger.best(gz, system.resources)
            standby = ledger.best(dr, system.resources)
            if home is None:
                ledger.overflow_to(gz, system.resources, system.id)
            if standby is None and dr:
                ledger.overflow_to(dr, system.resources, system.id)
            if home is None or standby is None:
                continue
            ledger.add(home, system.resources)
            ledger.add(standby, system.resources)
            result[system.id] = SitePlacement(primary=home, dr=standby)
        else:
            home = ledger.best(gz, system.resources)
            if home is None:
                ledger.overflow_to(gz, system.resources, system.id)
                continue
            ledger.add(home, system.resources)
            result[system.id] = SitePlacement(primary=home)
    short = {s: r for s, r in ledger.overflow.items() if r != Resources()}
    if short:
        diags = []
        for site, extra in sorted(short.items()):
            need = (ledger.used[site] + extra).shortfall(ledger.capacity[site])
            systems = ledger.overflow_systems[site]
            diags.append(Diagnostic(
                topo.source, f"regions.{topo.site(site).region}.sites.{site}.capacity",
                f"site {site} is short by {need} ({len(systems)} system(s) do not fit: "
                f"{', '.join(sorted(systems)[:5])}{', ...' if len(systems) > 5 else ''})",
                f"raise {site}'s capacity in topology.yaml by at least that, or move systems to another placement"))
        raise CapacityError("the systems do not fit the sites' capacity", diagnostics=tuple(diags),
                            hint="see which site is short above")
    return result


def site_loads(inventory: Inventory, placements: dict[str, SitePlacement]) -> list[SiteLoad]:
    used = {s.name: Resources() for s in inventory.topology.sites}
    for system in inventory.systems:
        if system.id in placements:
            for site, need in site_demands(system, placements[system.id]):
                used[site] = used[site] + need
    return [SiteLoad(s.name, s.capacity, used[s.name]) for s in inventory.topology.sites]
