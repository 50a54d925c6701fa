"""What ``govcloud ha deploy`` gives each database host, and in which order (pure: no I/O).

Why an order at all: the backup region's standby cluster replicates from the service name
(``pg.<zone>``), so the name must point at the primary cluster's leader before the standby cluster
starts. And the first leader should be the primary cluster's first declared member (its home: gz-a), not
whichever member wins a race to initialise. A deployment therefore runs in phases over the same hosts:

0. **home**, only while the primary cluster has no leader (its first deployment): every etcd ring
   member (both rings) and Patroni on the home member alone; the service waits for it to lead;
1. **primary**: the same, and Patroni on every member of the primary cluster; the service waits for
   them (and, in a synchronous cluster, a synchronous standby) and publishes the name;
2. **all**: the same again plus Patroni on the standby cluster's members (what the earlier phases
   started is already running, so it is left alone); the service waits for the standby leader to stream.

Each phase is the whole desired state for its hosts, so a rerun (after a crash, or to converge a host
that was rebuilt) changes nothing that is already right.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from govcloud.failover.patroni_config import (
    MemberPaths,
    bin_dir,
    etcd_args,
    etcd_dir,
    member_config,
    member_paths,
)
from govcloud.failover.shape import ClusterRole, HaShape
from govcloud.model import Topology
from govcloud.model.ha import DEFAULT_PATRONI_PORT, PATRONI_VERSION, DbHost, HaPostgres


class Phase(str, Enum):
    HOME = "home"  # etcd everywhere, Patroni on the primary cluster's first member only
    PRIMARY = "primary"  # etcd everywhere, Patroni on the primary cluster's members
    ALL = "all"  # and Patroni on the standby cluster's members


@dataclass(frozen=True)
class EtcdService:
    """One etcd ring member as its host runs it."""

    scope: str  # the Patroni cluster whose ring this is
    home: str  # owned by the etcd user, 0700: data, pid file, log
    argv: tuple[str, ...]
    client_url: str


@dataclass(frozen=True)
class PatroniService:
    """One Patroni member (with its PostgreSQL) as its host runs it."""

    scope: str
    role: ClusterRole
    paths: MemberPaths
    config: dict[str, Any]  # Patroni's YAML without the passwords (the role merges them on the way to 0600)
    rest_url: str


@dataclass(frozen=True)
class HostDeployment:
    host: DbHost
    region: str
    etcd: tuple[EtcdService, ...]
    patroni: tuple[PatroniService, ...]

    def home(self, paths: MemberPaths) -> str:
        return paths.config.rsplit("/", 1)[0]


@dataclass(frozen=True)
class DeployPlan:
    """Every database host's services; :meth:`phase` narrows it to what one phase starts."""

    shape: HaShape
    ha: HaPostgres
    hosts: tuple[HostDeployment, ...]

    def phase(self, phase: Phase) -> tuple[HostDeployment, ...]:
        if phase is Phase.ALL:
            return self.hosts
        home = self.shape.primary.members[0].name
        return tuple(HostDeployment(h.host, h.region, h.etcd,
                                    tuple(p for p in h.patroni if p.role is ClusterRole.PRIMARY
                                          and (phase is Phase.PRIMARY or h.host.name == home)))
                     for h in self.hosts)

    @property
    def etcd_packages(self) -> tuple[str, ...]:
        """Debian's etcd (3.4): what every database host needs for its ring members and for etcdctl."""
        return ("etcd-server", "etcd-client")

    @property
    def patroni_packages(self) -> tuple[str, ...]:
        """PostgreSQL as Debian packages it, and what the Patroni virtualenv is made with."""
        return (f"postgresql-{self.ha.version}", "python3-venv")

    @property
    def patroni_pip(self) -> tuple[str, ...]:
        """What the role installs into ``ha.postgres.patroni_venv`` when its Patroni is not the pinned one."""
        return (f"patroni[etcd3]=={PATRONI_VERSION}", "psycopg[binary]")


def client_networks(topology: Topology) -> tuple[str, ...]:
    """Who may connect as a client: the landing zones' pools and the operators' networks (nothing else)."""
    pools = tuple(r.network_pool for r in topology.regions if r.network_pool)
    return tuple(dict.fromkeys((*pools, *topology.ops_cidrs)))


def plan_deploy(topology: Topology, ha: HaPostgres, shape: HaShape) -> DeployPlan:
    """Each database host's etcd members and Patroni members, from the shape."""
    clients = client_networks(topology)
    region_of = {s.name: s.region for s in topology.sites}
    hosts: list[HostDeployment] = []
    for host in ha.hosts:
        etcd = tuple(EtcdService(c.scope, etcd_dir(ha, c), tuple(etcd_args(ha, c, m)), m.client_url)
                     for c in shape.clusters for m in c.etcd if m.name == host.name)
        patroni = tuple(PatroniService(c.scope, c.role, member_paths(ha, c),
                                       member_config(shape, c, host, ha, clients),
                                       f"http://{host.address}:{DEFAULT_PATRONI_PORT}")
                        for c in shape.clusters if host in c.members)
        hosts.append(HostDeployment(host, region_of.get(host.site, ""), etcd, patroni))
    return DeployPlan(shape, ha, tuple(hosts))


def role_vars(plan: DeployPlan, host: HostDeployment) -> dict[str, Any]:
    """The Ansible host variables for ``host`` (roles govcloud_etcd and govcloud_patroni; no secret here)."""
    ha = plan.ha
    return {
        "govcloud_etcd_members": [{"scope": e.scope, "home": e.home, "argv": list(e.argv), "client_url": e.client_url}
                                  for e in host.etcd],
        "govcloud_patroni_members": [{"scope": p.scope, "home": host.home(p.paths), "config_file": p.paths.config,
                                      "log_dir": p.paths.log_dir, "run_dir": p.paths.run_dir,
                                      "config": p.config, "rest_url": p.rest_url} for p in host.patroni],
        "govcloud_patroni_base_dir": ha.base_dir,
        "govcloud_patroni_venv": ha.patroni_venv,
        "govcloud_patroni_version": PATRONI_VERSION,
        "govcloud_patroni_pip": list(plan.patroni_pip),
        "govcloud_etcd_packages": list(plan.etcd_packages),
        "govcloud_patroni_packages": list(plan.patroni_packages),
        "govcloud_patroni_bin_dir": bin_dir(ha),
    }
