"""What a topology's ``ha.postgres`` becomes: Patroni clusters, their etcd rings, and what is given up.

"Two places, three centres" as the field runs it (docs/ha.md, "Shape"):

- the **primary region's cluster** has a member on every database host of that region, with
  ``synchronous_mode`` on when it has two members or more (no acknowledged commit is lost when the
  primary's site goes);
- its **etcd ring** has one member in every site that has a database host, in every region: with three
  sites, losing any one keeps the quorum. A ring short of three members takes more members from the
  primary region's further hosts;
- the **backup region** runs a Patroni *standby cluster* (scope ``<scope>-<region>``) that follows the
  service name ``<name>.<zone>`` asynchronously, with its own etcd ring in that region (on other
  ports, so a host may hold a member of both rings). Promoting it is a declared disaster
  (``ha promote``), never automatic: two regions cannot tell a lost region from a cut link.

A smaller estate gets a smaller shape, and each thing it gives up is a :class:`Degradation` that
``govcloud ha plan`` prints beside the shape (docs/ha.md lists them). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from govcloud.model import Topology
from govcloud.model.ha import (
    DEFAULT_ETCD_CLIENT_PORT,
    DEFAULT_ETCD_PEER_PORT,
    DbHost,
    HaPostgres,
)

STANDBY_ETCD_PORT_OFFSET = 100  # the standby cluster's ring: 2479 / 2480 beside the primary's 2379 / 2380


class ClusterRole(str, Enum):
    PRIMARY = "primary"  # takes the writes; Patroni fails it over inside its region
    STANDBY = "standby"  # a Patroni standby cluster in the backup region, promoted only by `ha promote`


@dataclass(frozen=True)
class EtcdMember:
    """One member of a cluster's etcd ring, on a database host."""

    name: str  # the member's etcd name: the host's name
    site: str
    address: str
    client_port: int = DEFAULT_ETCD_CLIENT_PORT
    peer_port: int = DEFAULT_ETCD_PEER_PORT

    @property
    def client_url(self) -> str:
        return f"http://{self.address}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.address}:{self.peer_port}"


@dataclass(frozen=True)
class ClusterShape:
    scope: str
    region: str
    role: ClusterRole
    members: tuple[DbHost, ...]
    synchronous: bool
    etcd: tuple[EtcdMember, ...]
    follows: str | None = None  # a standby cluster's source: the service name of the primary's leader

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(h.site for h in self.members))


@dataclass(frozen=True)
class Degradation:
    """Something the estate's shape gives up, and what it costs: printed and documented, never silent."""

    what: str
    consequence: str

    def __str__(self) -> str:
        return f"{self.what}: {self.consequence}"


@dataclass(frozen=True)
class HaShape:
    service: str  # the absolute name clients use, <name>.<zone>
    clusters: tuple[ClusterShape, ...]
    degradations: tuple[Degradation, ...]

    @property
    def primary(self) -> ClusterShape:
        return next(c for c in self.clusters if c.role is ClusterRole.PRIMARY)

    @property
    def standby(self) -> ClusterShape | None:
        return next((c for c in self.clusters if c.role is ClusterRole.STANDBY), None)


def _first_per_site(hosts: tuple[DbHost, ...]) -> list[DbHost]:
    seen: dict[str, DbHost] = {}
    for h in hosts:
        seen.setdefault(h.site, h)
    return list(seen.values())


def _ring(hosts: tuple[DbHost, ...], spare: tuple[DbHost, ...], offset: int = 0) -> tuple[EtcdMember, ...]:
    """One member per site of ``hosts``; short of three, more from ``spare`` (in order) up to three."""
    chosen = _first_per_site(hosts)
    for h in spare:
        if len(chosen) >= 3:
            break
        if h not in chosen:
            chosen.append(h)
    return tuple(EtcdMember(h.name, h.site, h.address, DEFAULT_ETCD_CLIENT_PORT + offset,
                            DEFAULT_ETCD_PEER_PORT + offset) for h in chosen)


def plan_shape(topology: Topology, ha: HaPostgres) -> HaShape:
    """The clusters and rings ``ha`` makes on ``topology`` (validated: a primary region with a host)."""
    primary_region = topology.primary_region
    if primary_region is None:
        raise ValueError("ha.postgres needs a primary region (validation ensures one)")
    zone = topology.dns.zone if topology.dns else ""
    service = f"{ha.name}.{zone}"
    main_hosts = ha.hosts_in(primary_region.sites)
    clusters = [ClusterShape(ha.scope, primary_region.name, ClusterRole.PRIMARY, main_hosts, len(main_hosts) >= 2,
                             _ring(ha.hosts, main_hosts))]
    backup = topology.backup_region
    standby_hosts = ha.hosts_in(backup.sites) if backup else ()
    if backup and standby_hosts:
        clusters.append(ClusterShape(f"{ha.scope}-{backup.name}", backup.name, ClusterRole.STANDBY, standby_hosts,
                                     False, _ring(standby_hosts, standby_hosts, STANDBY_ETCD_PORT_OFFSET), service))
    return HaShape(service, tuple(clusters), _degradations(topology, ha, clusters[0], backup is not None,
                                                          bool(standby_hosts)))


def _degradations(topology: Topology, ha: HaPostgres, main: ClusterShape, has_backup: bool,
                  has_standby: bool) -> tuple[Degradation, ...]:
    out: list[Degradation] = []
    region = main.region
    if len(main.members) == 1:
        out.append(Degradation(f"the {region} cluster has one member ({main.members[0].name})",
                               "no automatic failover and no synchronous standby: losing it stops the database"))
    elif len(main.sites) == 1:
        out.append(Degradation(f"every member of the {region} cluster is in site {main.sites[0]}",
                               "a failover survives a host's loss, not the site's"))
    empty = [s for s in topology.region(region).sites if s not in main.sites]
    if empty and len(main.sites) >= 1:
        out.append(Degradation(f"site(s) {', '.join(empty)} of region {region} have no database host",
                               "their loss costs nothing, but they add no member to fail over to"))
    ring = main.etcd
    if len(ring) == 1:
        out.append(Degradation(f"the {region} cluster's etcd ring has 1 member ({ring[0].name})",
                               "losing it loses the ring: no failover, and the primary stays writable only by "
                               "failsafe mode"))
    elif len(ring) == 2:
        out.append(Degradation(f"the {region} cluster's etcd ring has 2 members",
                               "losing either loses its quorum: the primary stays writable only while it reaches "
                               "every member (failsafe mode), and no failover happens"))
    elif len(ring) % 2 == 0:
        out.append(Degradation(f"the {region} cluster's etcd ring has {len(ring)} members",
                               f"an even ring survives no more losses than {len(ring) - 1} members would"))
    if len({m.site for m in ring}) < 3 and len(ring) >= 3:
        out.append(Degradation(f"the {region} cluster's etcd ring spans {len({m.site for m in ring})} site(s)",
                               "losing the site holding most members loses the quorum, and with it any failover"))
    if not has_backup:
        out.append(Degradation("the topology has no backup region",
                               f"losing region {region} loses the database service: there is no standby cluster"))
    elif not has_standby:
        out.append(Degradation("the backup region has no database host",
                               f"no standby cluster: losing region {region} loses the database service"))
    return tuple(out)
