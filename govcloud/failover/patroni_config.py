"""What each database host runs, built from the shape: Patroni's configuration and etcd's arguments.

Why pure and here: the settings that decide safety (synchronous mode, failsafe, the ttl, rewind, the
WAL sender timeout) are docs/ha.md's argument; keeping their one source in a function that tests can
read line by line, and that a deployment only renders and copies, means what is deployed is what was
argued. Nothing here touches a host: the deployment writes :func:`member_config` as YAML and starts ``etcd``
with :func:`etcd_args`. The configuration carries no password: the deployment merges them
(:func:`password_fields`) at the very last step, on its way to the host's 0600 file, so the document
can travel in Ansible's inventory and artifacts.

Layout on a host, under ``ha.postgres.base_dir`` (``B``): ``B/<scope>/patroni.yml``, ``pgdata/``,
``log/``, ``run/`` (sockets) per Patroni cluster the host is a member of, and ``B/etcd-<scope>/`` per
etcd ring it holds a member of (a backup-region host holds one of each ring).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from govcloud.failover.shape import ClusterRole, ClusterShape, EtcdMember, HaShape
from govcloud.model.ha import DEFAULT_PATRONI_PORT, DbHost, HaPostgres

SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
REWIND_USER = "rewinder"
RESTAPI_USER = "govcloud"


@dataclass(frozen=True)
class HaSecrets:
    """The cluster's passwords: generated once per estate, kept 0600 in the state directory, written
    only into each host's 0600 patroni.yml, never logged or shown."""

    superuser: str
    replication: str
    rewind: str
    restapi: str  # Patroni's REST API: its unsafe endpoints (switchover, restart, ...) need it

    def __repr__(self) -> str:  # a traceback or a debug print must not show them
        return "HaSecrets(<masked>)"


@dataclass(frozen=True)
class MemberPaths:
    """Where one cluster's member lives on its host."""

    config: str
    data_dir: str
    log_dir: str
    run_dir: str


def member_paths(ha: HaPostgres, cluster: ClusterShape) -> MemberPaths:
    home = f"{ha.base_dir}/{cluster.scope}"
    return MemberPaths(f"{home}/patroni.yml", f"{home}/pgdata", f"{home}/log", f"{home}/run")


def etcd_dir(ha: HaPostgres, cluster: ClusterShape) -> str:
    return f"{ha.base_dir}/etcd-{cluster.scope}"


def bin_dir(ha: HaPostgres) -> str:
    """PostgreSQL's binaries as Debian installs them (postgresql-<version>)."""
    return f"/usr/lib/postgresql/{ha.version}/bin"


def _hba(shape: HaShape, client_cidrs: tuple[str, ...]) -> list[str]:
    """Replication and rewind only from the members of either cluster; clients only from ``client_cidrs``
    (the landing zones' pools and the operators'), each with scram-sha-256; nothing from anywhere else."""
    members = sorted({h.address for c in shape.clusters for h in c.members}, key=ip_address)
    lines = ["local all all peer"]
    for address in members:
        lines.append(f"host replication {REPLICATION_USER} {address}/32 scram-sha-256")
        lines.append(f"host all {SUPERUSER},{REWIND_USER} {address}/32 scram-sha-256")
    lines += [f"host all all {cidr} scram-sha-256" for cidr in client_cidrs]
    return lines


def _dcs(ha: HaPostgres, cluster: ClusterShape) -> dict[str, Any]:
    p = ha.patroni
    dcs: dict[str, Any] = {
        "ttl": p.ttl_s, "loop_wait": p.loop_wait_s, "retry_timeout": p.retry_timeout_s,
        "maximum_lag_on_failover": p.maximum_lag_on_failover,
        "synchronous_mode": cluster.synchronous, "synchronous_mode_strict": False, "synchronous_node_count": 1,
        "failsafe_mode": p.failsafe_mode,
        "postgresql": {
            "use_pg_rewind": True, "use_slots": True,
            "parameters": {
                "wal_level": "replica", "hot_standby": "on", "wal_log_hints": "on",
                "max_wal_senders": 10, "max_replication_slots": 10, "wal_keep_size": "256MB",
                "wal_sender_timeout": f"{p.wal_sender_timeout_s}s", "wal_receiver_timeout": f"{p.wal_sender_timeout_s}s",
                "password_encryption": "scram-sha-256",
            },
        },
    }
    if cluster.role is ClusterRole.STANDBY and cluster.follows:
        # the standby cluster replicates from whichever member leads the primary cluster, by its name
        dcs["standby_cluster"] = {"host": cluster.follows.rstrip("."), "port": ha.port,
                                  "create_replica_methods": ["basebackup"]}
    return dcs


def member_config(shape: HaShape, cluster: ClusterShape, host: DbHost, ha: HaPostgres,
                  client_cidrs: tuple[str, ...]) -> dict[str, Any]:
    """Patroni's YAML for ``host`` as a member of ``cluster`` (a document: it is rendered, not read back),
    without passwords (see :func:`with_passwords`)."""
    if host not in cluster.members:
        raise ValueError(f"{host.name} is not a member of cluster {cluster.scope}")
    paths = member_paths(ha, cluster)
    return {
        "scope": cluster.scope,
        "namespace": "/service/",
        "name": host.name,
        "log": {"dir": paths.log_dir, "level": "INFO"},
        "restapi": {"listen": f"{host.address}:{DEFAULT_PATRONI_PORT}",
                    "connect_address": f"{host.address}:{DEFAULT_PATRONI_PORT}",
                    "authentication": {"username": RESTAPI_USER}},
        "etcd3": {"hosts": [f"{m.address}:{m.client_port}" for m in cluster.etcd]},
        "bootstrap": {"dcs": _dcs(ha, cluster), "initdb": [{"encoding": "UTF8"}, "data-checksums"]},
        "postgresql": {
            "listen": f"{host.address}:{ha.port}",
            "connect_address": f"{host.address}:{ha.port}",
            "data_dir": paths.data_dir,
            "bin_dir": bin_dir(ha),
            "pgpass": f"{paths.run_dir}/pgpass",
            "authentication": {"superuser": {"username": SUPERUSER}, "replication": {"username": REPLICATION_USER},
                               "rewind": {"username": REWIND_USER}},
            "parameters": {"unix_socket_directories": paths.run_dir},
            "pg_hba": _hba(shape, client_cidrs),
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
    }


def password_fields(secrets: HaSecrets) -> dict[str, dict[str, str]]:
    """``postgresql.authentication``'s passwords, by role: what the deployment merges into a member's
    configuration (the Ansible role does the same merge with the secrets file's keys, which are these)."""
    return {"superuser": {"password": secrets.superuser}, "replication": {"password": secrets.replication},
            "rewind": {"password": secrets.rewind}}


def with_passwords(config: dict[str, Any], secrets: HaSecrets) -> dict[str, Any]:
    """``config`` (from :func:`member_config`) as its host's file holds it: with the passwords (the
    database roles', and the REST API's for its unsafe endpoints)."""
    auth = config["postgresql"]["authentication"]
    merged = {role: {**auth[role], **fields} for role, fields in password_fields(secrets).items()}
    rest = {**config["restapi"], "authentication": {**config["restapi"]["authentication"], "password": secrets.restapi}}
    return {**config, "restapi": rest, "postgresql": {**config["postgresql"], "authentication": merged}}


def etcd_args(ha: HaPostgres, cluster: ClusterShape, member: EtcdMember) -> list[str]:
    """``etcd``'s command line for ``member`` of ``cluster``'s ring (a fresh ring: state ``new``).

    Heartbeat 100 ms and election 1 s, as measured in ../shared/reference/patroni/: a lost etcd
    leader is replaced within about a second, well inside Patroni's ttl."""
    if member not in cluster.etcd:
        raise ValueError(f"{member.name} is not a member of {cluster.scope}'s etcd ring")
    ring = ",".join(f"{m.name}={m.peer_url}" for m in cluster.etcd)
    return ["etcd", "--name", member.name, "--data-dir", f"{etcd_dir(ha, cluster)}/data",
            "--listen-client-urls", member.client_url, "--advertise-client-urls", member.client_url,
            "--listen-peer-urls", member.peer_url, "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", ring, "--initial-cluster-token", f"govcloud-{cluster.scope}",
            "--initial-cluster-state", "new", "--heartbeat-interval", "100", "--election-timeout", "1000"]
