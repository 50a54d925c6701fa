"""The highly available PostgreSQL an estate declares in its topology (``ha.postgres``; docs/ha.md).

Why a declaration and not code: failover used to work only on the lab, whose members the product
knew by name. Now an estate names the database hosts of each site, and everything else (which
cluster each host joins, where the etcd members run, synchronous mode, the standby cluster of the
backup region) is derived from that and the regions (``govcloud.failover.shape``), so any estate
gets the same shape, and a smaller estate a documented smaller one.

The settings keep Patroni's names and limits: Patroni refuses a ``ttl`` below 20 s and needs
``loop_wait + 2 * retry_timeout <= ttl``; the inventory check says so at the line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from govcloud.errors import Location

_NOWHERE = Location("?")

#: Patroni's floor for the leader key's time to live (it raises smaller values silently)
PATRONI_MIN_TTL_S = 20
DEFAULT_PG_PORT = 5432
DEFAULT_PATRONI_PORT = 8008  # Patroni's REST API
DEFAULT_ETCD_CLIENT_PORT = 2379
DEFAULT_ETCD_PEER_PORT = 2380
DEFAULT_BASE_DIR = "/var/lib/govcloud-ha"
DEFAULT_PATRONI_VENV = "/opt/govcloud/patroni"
PATRONI_VERSION = "4.1.5"  # the release govcloud deploys and is tested with


@dataclass(frozen=True)
class DbHost:
    """A database host of one site: it runs one Patroni member (with PostgreSQL) and may run etcd."""

    site: str
    name: str
    address: str
    source: Location = field(default=_NOWHERE, compare=False)


@dataclass(frozen=True)
class PatroniSettings:
    """What Patroni is told (bootstrap.dcs and postgresql parameters); defaults are docs/ha.md's."""

    ttl_s: int = PATRONI_MIN_TTL_S
    loop_wait_s: int = 1
    retry_timeout_s: int = 3
    maximum_lag_on_failover: int = 1048576  # bytes of WAL a candidate may lag and still be promoted
    wal_sender_timeout_s: int = 5  # a silent sync standby blocks commits this long, not 60 s
    failsafe_mode: bool = True  # a primary that loses etcd but sees every member stays primary


@dataclass(frozen=True)
class Accelerator:
    """govcloud's quorum detector shortening Patroni's wait for the ttl (docs/ha.md, "Accelerator").

    When two sites confirm the leader's site lost for ``confirm_s``, govcloud fences what it can reach
    and revokes the dead leader's etcd lease; off, Patroni alone decides."""

    enabled: bool = True
    confirm_s: float = 4.0


@dataclass(frozen=True)
class HaPostgres:
    """``ha.postgres``: the shared PostgreSQL service of the estate."""

    name: str  # clients use <name>.<dns zone>; the name follows the Patroni leader
    version: str
    scope: str  # the Patroni scope of the primary region's cluster
    hosts: tuple[DbHost, ...]
    port: int = DEFAULT_PG_PORT
    base_dir: str = DEFAULT_BASE_DIR  # on each database host: configs, data directories, logs, pid files
    patroni_venv: str = DEFAULT_PATRONI_VENV  # the virtualenv holding Patroni on each database host
    patroni: PatroniSettings = PatroniSettings()
    accelerator: Accelerator = Accelerator()
    source: Location = field(default=_NOWHERE, compare=False)

    def hosts_in(self, sites: tuple[str, ...] | list[str]) -> tuple[DbHost, ...]:
        """The database hosts of ``sites``, in the order declared."""
        return tuple(h for h in self.hosts if h.site in sites)
