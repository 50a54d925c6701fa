"""The migration engine's outside world, as typed ports (``typing.Protocol``) and the data they carry.

The engine (``govcloud.services.migration``) is written against these ports only; the adapters beside
this module implement them against the real things (OpenStack through openstacksdk, hosts through
paramiko and rsync, health over HTTP, service names in the DNS zone, Ansible), and unit tests replace them with
in-memory fakes. What crosses a port is frozen data, never an SDK object: a fake cannot forget a
field the engine reads, and the engine cannot reach into a library through a value it was handed.

The values live here, not in the adapter that makes them, so that this module imports no adapter: the
engine, its fakes and every adapter depend on the ports, never the ports on one implementation of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from govcloud.failover.ha_status import ClusterView, EtcdView
from govcloud.migrate.zones import (
    BootRequest,
    FlavorRef,
    LandingZone,
    QuotaSet,
    ServerInfo,
    SiteCapacity,
)
from govcloud.model.services import HttpProbe, OsSpec

# ------------------------------------------------------------------ values that cross the ports


@dataclass(frozen=True)
class Endpoint:
    """How the controller reaches a host: address, user, port, key and the known_hosts to trust."""

    address: str
    known_hosts: Path
    key_file: Path | None = None
    user: str = "root"
    port: int = 22
    name: str = ""  # for messages (inventory host name)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.address})" if self.name and self.name != self.address else self.address

    @property
    def known_hosts_entry(self) -> str:
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


@dataclass(frozen=True)
class CommandResult:
    """What a command on a host did (``command`` as shown: key material is masked)."""

    command: str
    status: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Manifest:
    """One sha256 over the sorted ``sha256sum`` lines of every regular file of a tree (relative paths)."""

    path: str
    digest: str
    files: int
    hashed_files: int = 0  # files this run read (the others came from the host's hash cache)
    hashed_bytes: int = 0


@dataclass(frozen=True)
class RsyncSpec:
    """An rsync run ON the legacy host, pushing ``source_path`` to ``dest_user@dest_host:dest_path``."""

    source_path: str
    dest_host: str  # the target's address as the legacy host reaches it
    dest_path: str
    identity: str  # per-migration private key, on the legacy host
    known_hosts: str  # on the legacy host, holding only the target's key
    dest_user: str = "root"
    dest_port: int = 22
    make_dest: bool = True  # create dest_path's parents on the target (older rsync has no --mkpath)
    bwlimit_kib: int | None = None
    # compare contents, not size+mtime: for the pass after a manifest mismatch (a file rewritten with the
    # same size within the mtime granularity of the last sync is otherwise skipped by rsync's quick check)
    checksum: bool = False
    excludes: tuple[str, ...] = ()  # rsync --exclude patterns (e.g. the app's pid and log files)


@dataclass(frozen=True)
class RsyncStats:
    """What one rsync moved, from its ``--stats`` block."""

    files: int  # entries considered (files, dirs, links)
    files_transferred: int  # regular files whose data was (re)sent
    total_size: int  # bytes in the source tree
    transferred_size: int  # bytes of the files that changed
    literal_data: int  # bytes sent as data (the delta)
    matched_data: int  # bytes the target already had
    bytes_sent: int  # on the wire, from the source
    bytes_received: int


@dataclass(frozen=True)
class MigrationKey:
    """A per-migration transfer key: where its halves are, so it can be revoked by content later."""

    mig_id: str
    private_path: str  # on the source
    public_key: str  # "ssh-ed25519 AAAA... govcloud-mig-<id>"
    known_hosts_path: str  # on the source: the target's host key only
    authorized_line: str  # what the target's authorized_keys got

    @property
    def key_body(self) -> str:
        return self.public_key.split()[1]


@dataclass(frozen=True)
class ServiceEndpoint:
    """Where a service's name points now. ``version`` is the zone's generation when it was read or
    switched (it grows with every switch: a fencing token); ``port`` is the caller's (names carry none)."""

    service: str
    address: str
    port: int
    site: str
    version: int
    updated_at: str
    reason: str = ""


__all__ = [
    "BootRequest", "CloudPort", "CommandResult", "ConfigurePort", "Endpoint", "EndpointPort", "FlavorRef",
    "HealthPort", "HostPort", "LandingZone", "Manifest", "MigrationKey", "QuotaSet", "RsyncSpec", "RsyncStats",
    "ServerInfo", "ServiceEndpoint", "SiteCapacity", "TargetHost",
]


# ------------------------------------------------------------------ the cloud


class CloudPort(Protocol):
    """Servers and landing zones. Raises ``OpenStackError`` (with its evidence) when the cloud fails."""

    def find_project_id(self, name: str) -> str | None: ...

    def landing_zone(self, region: str, project_id: str, department: str) -> LandingZone: ...

    def site_capacity(self, region: str) -> dict[str, SiteCapacity]: ...

    def find_servers(self, region: str, tag: str) -> list[ServerInfo]: ...

    def boot_server(self, region: str, project_id: str, request: BootRequest) -> ServerInfo: ...

    def delete_server(self, region: str, server_id: str) -> None: ...

    def close(self) -> None: ...


# ------------------------------------------------------------------ hosts


class HostPort(Protocol):
    """Legacy hosts and targets over SSH (strict host keys). Raises ``SSHError`` / ``HostKeyError``."""

    def connect(self, host: Endpoint) -> None:
        """Reach the host (or reuse the open session): the host key is checked on every new connection."""

    def measure(self, host: Endpoint, path: str) -> int:
        """Bytes under a data path; SSHError when it does not exist."""

    def manifest(self, host: Endpoint, path: str) -> Manifest:
        """The tree digest of a data path, computed on the host (incrementally, with its hash cache)."""

    def push(self, source: Endpoint, spec: RsyncSpec) -> RsyncStats:
        """rsync run on ``source`` to the spec's destination (transport failures retried)."""

    def transfer_key(self, source: Endpoint, target: Endpoint, *, mig_id: str) -> AbstractContextManager[MigrationKey]:
        """A per-migration key from ``source`` to ``target``, authorised only inside the block."""

    def revoke_key(self, source: Endpoint, target: Endpoint, *, mig_id: str) -> None:
        """Remove a per-migration key a killed run left behind (on both ends)."""

    def run(self, host: Endpoint, command: str, *, timeout: float) -> CommandResult:
        """A shell line (a service's control, a command check, a hook) as the host's SSH user; its exit
        status is returned, never raised (a timeout is an ``SSHError``)."""

    def listening_ports(self, host: Endpoint) -> frozenset[int]:
        """The TCP ports something listens on, on any address of the host."""

    def os_release(self, host: Endpoint) -> OsSpec | None:
        """The host's OS from its ``/etc/os-release`` (ID, VERSION_ID); None when it says neither."""

    def remove_paths(self, host: Endpoint, paths: Sequence[str], *, stop: str = "") -> None:
        """Run ``stop`` (when given; its failure ignored), then delete ``paths`` on the host."""

    def close(self) -> None: ...


class HealthPort(Protocol):
    """The controller's own probes of a service (a command check runs on the host: ``HostPort.run``)."""

    def http(self, address: str, probe: HttpProbe, *, timeout: float) -> bool:
        """GET ``http://address:port/path`` answers ``probe.status`` and holds ``probe.body`` (if set)."""

    def tcp(self, address: str, port: int, *, timeout: float) -> bool:
        """A TCP connection to ``address:port`` is accepted."""


class EndpointPort(Protocol):
    """Where a service's clients find it; every switch is a compare-and-swap on the current address."""

    def check(self) -> None:
        """Raise (naming the server and the reason) if a switch could not be made now; changes nothing."""

    def lookup(self, service: str) -> ServiceEndpoint | None: ...

    def switch(self, service: str, *, address: str, port: int, site: str = "", expect: str | None = None,
               reason: str = "") -> ServiceEndpoint: ...


@dataclass(frozen=True)
class TargetHost:
    """A booted target to configure for its migration (the migrate_target role): the directories the
    sync fills, the packages its services need, the systemd units that must exist before they start
    (those no synced directory brings), and the system's own role, applied last."""

    name: str
    address: str
    region: str
    site: str
    department: str
    system: str
    data: tuple[str, ...] = field(default=())
    packages: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    ansible_role: str = ""


class ConfigurePort(Protocol):
    def configure(self, targets: Sequence[TargetHost]) -> dict[str, str]:
        """Configure the targets in one run; returns ``host name -> why it failed`` (empty: all ok).
        Raises ``AnsibleError`` when the run could not be made at all."""

    def has_role(self, name: str) -> bool:
        """The project has an Ansible role of this name (a system's ``ansible_role``)."""


# ------------------------------------------------------------------ site probes


@dataclass(frozen=True)
class ConnectOutcome:
    """One TCP connect made by a probe: ``latency_seconds`` only when it succeeded."""

    ok: bool
    latency_seconds: float | None
    error: str = ""


class ConnectPort(Protocol):
    """TCP connects made from inside a site (on its probe host) or, with ``observer`` None, from here."""

    def connect_from(self, observer: Endpoint | None, endpoints: Sequence[tuple[str, int]],
                     timeout: float) -> list[ConnectOutcome]:
        """One outcome per ``(address, port)``, in order; never raises (an unreachable observer is an
        observation too: every outcome failed, with why)."""


class HaObserverPort(Protocol):
    """How the HA layer is observed (Patroni's REST API, etcd's health), from the controller."""

    def cluster(self, scope: str, rest_urls: Sequence[str]) -> ClusterView: ...

    def views(self, scope: str, rest_urls: Sequence[str]) -> list[ClusterView]: ...

    def etcd_health(self, scope: str, member: str, site: str, client_url: str) -> EtcdView: ...
