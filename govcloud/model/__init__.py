"""Frozen data of govcloud's world: topology, departments, systems, and migration plans.

Built only by the inventory loader (after validation) and the planner; never mutated. Every object
that came from a file keeps its ``source`` location so later checks can point back at the YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from govcloud.errors import Location
from govcloud.model.ha import HaPostgres
from govcloud.model.services import CheckRef, Hook, HookPoint, OsImage, OsSpec, Service

DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Placement(str, Enum):
    """Where a system runs: both primary-region sites, primary + backup region, or one site."""

    ACTIVE_ACTIVE = "active-active"
    ACTIVE_STANDBY = "active-standby"
    SINGLE = "single"


class Tier(str, Enum):
    CRITICAL = "critical"
    IMPORTANT = "important"
    NORMAL = "normal"


class RegionRole(str, Enum):
    PRIMARY = "primary"
    BACKUP = "backup"


@dataclass(frozen=True)
class Resources:
    """vCPUs, RAM and storage; for a system, the total it needs (see docs/inventory.md)."""

    vcpus: int = 0
    ram_gb: int = 0
    storage_gb: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.vcpus + other.vcpus, self.ram_gb + other.ram_gb, self.storage_gb + other.storage_gb)

    def halved(self) -> Resources:
        """Per-site share of an active-active system (rounded up: a half vCPU is a whole one)."""
        return Resources(-(-self.vcpus // 2), -(-self.ram_gb // 2), -(-self.storage_gb // 2))

    def fits_in(self, capacity: Resources) -> bool:
        return self.vcpus <= capacity.vcpus and self.ram_gb <= capacity.ram_gb and self.storage_gb <= capacity.storage_gb

    def shortfall(self, capacity: Resources) -> Resources:
        """How much ``capacity`` lacks to hold these resources (0 where it suffices)."""
        return Resources(
            max(0, self.vcpus - capacity.vcpus),
            max(0, self.ram_gb - capacity.ram_gb),
            max(0, self.storage_gb - capacity.storage_gb),
        )

    def __str__(self) -> str:
        return f"{self.vcpus} vCPU, {self.ram_gb} GB RAM, {self.storage_gb} GB storage"


@dataclass(frozen=True)
class Window:
    """A weekly maintenance window: on each of ``days``, from ``start`` to ``end`` ("HH:MM").

    ``end`` at or before ``start`` means the window crosses midnight into the next day.
    """

    days: tuple[str, ...]
    start: str
    end: str

    def __str__(self) -> str:
        return f"{','.join(self.days)} {self.start}-{self.end}"

    def as_dict(self) -> dict[str, object]:
        return {"days": list(self.days), "start": self.start, "end": self.end}


@dataclass(frozen=True)
class SiteProbe:
    """The host a site is observed from and at: the exporter reaches it by SSH (strict host keys) to
    connect from there to the other sites' probe hosts, and the other sites connect to ``address:port``.
    Declared per estate in the topology (``sites: {gz-a: {probe: {...}}}``): no estate is assumed."""

    host: str  # for messages and metrics (a host name of the estate)
    address: str
    port: int = 22
    user: str = "root"


@dataclass(frozen=True)
class Site:
    name: str
    region: str
    availability_zone: str
    capacity: Resources
    probe: SiteProbe | None = None  # None: the site is not probed


@dataclass(frozen=True)
class Region:
    name: str
    role: RegionRole
    cloud: str
    region_name: str
    sites: tuple[str, ...]
    network_pool: str | None = None
    images: tuple[OsImage, ...] = ()  # the Glance image per OS (there is no default image)
    source: Location = field(default=Location("topology.yaml"), compare=False)

    def image_for(self, os: OsSpec) -> str | None:
        """The image a target of ``os`` boots in this region, or None when the topology maps none."""
        return next((i.image for i in self.images if i.serves(os)), None)


@dataclass(frozen=True)
class ReplicationLink:
    """Data replication between two sites or regions (``source``/``target`` name either)."""

    source: str
    target: str
    mode: str  # "sync" | "async"
    max_lag_seconds: int | None = None


DEFAULT_DNS_TTL = 30


@dataclass(frozen=True)
class DnsServer:
    """One authoritative server of the service zone: the site it runs in, where it answers."""

    site: str
    address: str
    port: int = 53


@dataclass(frozen=True)
class DnsConfig:
    """The service zone clients resolve systems in (``<system>.<zone>``) and its servers, one per site.

    ``zone`` is absolute (ends with a dot). Every server is a primary that govcloud updates itself, so
    a switch never waits for a site that is down (docs/dns.md).
    """

    zone: str
    servers: tuple[DnsServer, ...]
    default_ttl: int = DEFAULT_DNS_TTL
    source: Location = field(default=Location("topology.yaml"))

    def server(self, site: str) -> DnsServer:
        for srv in self.servers:
            if srv.site == site:
                return srv
        raise KeyError(site)

    def name_of(self, system_id: str) -> str:
        """The absolute name clients use for a system."""
        return f"{system_id}.{self.zone}"


@dataclass(frozen=True)
class Topology:
    name: str
    regions: tuple[Region, ...]
    sites: tuple[Site, ...]
    replication: tuple[ReplicationLink, ...]
    ops_cidrs: tuple[str, ...] = ()
    source: Location = field(default=Location("topology.yaml"))
    dns: DnsConfig | None = None
    ha_postgres: HaPostgres | None = None  # the highly available PostgreSQL (docs/ha.md), if declared

    def site(self, name: str) -> Site:
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(name)

    def region(self, name: str) -> Region:
        for r in self.regions:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def primary_region(self) -> Region | None:
        return next((r for r in self.regions if r.role is RegionRole.PRIMARY), None)

    @property
    def backup_region(self) -> Region | None:
        return next((r for r in self.regions if r.role is RegionRole.BACKUP), None)

    def image_for(self, region: str, os: OsSpec) -> str | None:
        """The Glance image for ``os`` in ``region`` (None when none is mapped; KeyError: no such region)."""
        return self.region(region).image_for(os)

    def sites_of(self, region: str) -> tuple[Site, ...]:
        return tuple(s for s in self.sites if s.region == region)

    def has_sync_pair(self, a: str, b: str) -> bool:
        """True if sites ``a`` and ``b`` (or their regions) replicate synchronously."""
        names_a = {a, self.site(a).region}
        names_b = {b, self.site(b).region}
        for link in self.replication:
            if link.mode != "sync":
                continue
            if (link.source in names_a and link.target in names_b) or (link.source in names_b and link.target in names_a):
                return True
        return False


class DbEngine(str, Enum):
    POSTGRESQL = "postgresql"
    MARIADB = "mariadb"


DEFAULT_DB_PORT = {DbEngine.POSTGRESQL: 5432, DbEngine.MARIADB: 3306}


@dataclass(frozen=True)
class Database:
    """A database server on a legacy host: it moves by its engine's replication, not as files.

    ``version`` is the major version as the engine spells it ("15", "10.11"); ``verify`` names the
    databases compared row by row after cutover (empty: all of them).
    """

    engine: DbEngine
    data_dir: str
    version: str
    port: int
    verify: tuple[str, ...] = ()


@dataclass(frozen=True)
class Host:
    """A legacy machine of a system, reached over SSH for migration."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    role: str = "app"
    data: tuple[str, ...] = ()
    databases: tuple[Database, ...] = ()
    os: OsSpec | None = None  # as declared; the legacy host's facts may fill it in at preflight
    services: tuple[Service, ...] = ()
    source: Location = field(default=Location("?"), compare=False)

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)


@dataclass(frozen=True)
class System:
    """One legacy department system to be migrated."""

    id: str
    name: str
    department: str
    classification: int
    tier: Tier
    rto_minutes: int
    rpo_minutes: int
    depends_on: tuple[str, ...]
    window: Window
    placement: Placement
    resources: Resources
    hosts: tuple[Host, ...]
    owner: str | None = None
    source: Location = field(default=Location("?"))
    dns_ttl: int | None = None  # overrides the zone's default TTL for this system's name
    hooks: tuple[Hook, ...] = ()  # in inventory order within each point
    ready_check: CheckRef | None = None
    ansible_role: str | None = None  # applied to the system's targets after the baseline role

    def hooks_at(self, point: HookPoint) -> tuple[Hook, ...]:
        return tuple(h for h in self.hooks if h.point is point)

    def host(self, name: str) -> Host | None:
        return next((h for h in self.hosts if h.name == name), None)

    def ttl_in(self, dns: DnsConfig) -> int:
        return self.dns_ttl if self.dns_ttl is not None else dns.default_ttl


def image_for(topology: Topology, region: str, os: OsSpec) -> str | None:
    """The Glance image a target of ``os`` boots in ``region``, or None: govcloud has no stand-in image."""
    return topology.image_for(region, os)


@dataclass(frozen=True)
class Department:
    id: str
    name: str
    systems: tuple[str, ...]
    source: Location = field(default=Location("?"))


@dataclass(frozen=True)
class Inventory:
    """The whole validated input: topology, departments, systems (sorted by id)."""

    topology: Topology
    departments: tuple[Department, ...]
    systems: tuple[System, ...]
    digest: str  # sha256 over the inventory files' bytes, in path order
    warnings: tuple[object, ...] = field(default=(), compare=False)

    def system(self, system_id: str) -> System:
        return self._by_id()[system_id]

    def _by_id(self) -> dict[str, System]:
        cache = self.__dict__.get("_by_id_cache")
        if cache is None:
            cache = {s.id: s for s in self.systems}
            object.__setattr__(self, "_by_id_cache", cache)
        return cache

    def has_system(self, system_id: str) -> bool:
        return system_id in self._by_id()


@dataclass(frozen=True)
class SitePlacement:
    """The sites a plan assigned to one system."""

    primary: str
    secondary: str | None = None
    dr: str | None = None

    def sites(self) -> tuple[str, ...]:
        return tuple(s for s in (self.primary, self.secondary, self.dr) if s)

    def as_dict(self) -> dict[str, str]:
        d = {"primary": self.primary}
        if self.secondary:
            d["secondary"] = self.secondary
        if self.dr:
            d["dr"] = self.dr
        return d


@dataclass(frozen=True)
class PlannedSystem:
    id: str
    placement: SitePlacement


@dataclass(frozen=True)
class Wave:
    number: int
    window: Window
    systems: tuple[PlannedSystem, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """A migration plan: every system in exactly one wave, with its sites."""

    name: str
    inventory_digest: str
    max_per_wave: int
    waves: tuple[Wave, ...]

    def wave_of(self) -> dict[str, int]:
        return {ps.id: w.number for w in self.waves for ps in w.systems}
