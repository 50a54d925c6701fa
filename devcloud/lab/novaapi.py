"""Nova servers as the lab sees them: what it needs of each one, read from the real clouds (openstacksdk,
clouds ``gz`` and ``st`` of devcloud's clouds.yaml). Used by devcloud.lab.reconcile and its watcher.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CLOUDS: tuple[str, ...] = ("gz", "st")


@dataclass(frozen=True)
class ServerInfo:
    """What the lab needs from one Nova server (and its Neutron port/subnet, and its keypair)."""

    id: str
    name: str
    region: str
    az: str
    status: str
    ip: str | None = None
    cidr: str | None = None  # the fixed IP's Neutron subnet
    gateway: str | None = None
    key_name: str | None = None
    public_key: str | None = None


def connect(cloud: str, clouds_yaml: Path, *, timeout: float | None = None) -> Any:
    """An openstacksdk connection; ``timeout`` bounds every API call (None: wait as long as it takes)."""
    import openstack.connection
    from openstack.config import loader

    cfg = loader.OpenStackConfig(config_files=[str(clouds_yaml)], vendor_files=[])
    region = cfg.get_one(cloud=cloud, api_timeout=timeout) if timeout else cfg.get_one(cloud=cloud)
    return openstack.connection.Connection(config=region)


def resolve_server(conn: Any, region: str, s: Any, subnets: dict[str, Any]) -> tuple[ServerInfo, bool]:
    """One listed server with its IPv4 fixed IP, subnet and keypair public key.

    Returns ``(info, complete)``: ``complete`` is False when the keypair could not be read (the
    host is then made without keys; a watcher retries later). Network API errors propagate.
    """
    ip = cidr = gw = None
    if s.status == "ACTIVE":
        for port in conn.network.ports(device_id=s.id):
            for fip in port.fixed_ips or []:
                sid = fip.get("subnet_id")
                if sid not in subnets:
                    subnets[sid] = conn.network.get_subnet(sid)
                sub = subnets[sid]
                if sub.ip_version == 4:
                    ip, cidr, gw = fip["ip_address"], sub.cidr, sub.gateway_ip
                    break
            if ip:
                break
    pub = None
    complete = True
    if s.key_name and s.status == "ACTIVE":
        try:
            pub = conn.compute.get_keypair(s.key_name, user_id=s.user_id).public_key
        except Exception as e:  # noqa: BLE001 - a missing keypair skips keys, not the host
            log.warning("keypair %s of server %s not readable: %s", s.key_name, s.id, e)
            complete = False
    info = ServerInfo(
        id=s.id, name=s.name, region=region, az=s.availability_zone or "", status=s.status,
        ip=ip, cidr=cidr, gateway=gw, key_name=s.key_name, public_key=pub,
    )
    return info, complete


def fetch_servers(clouds_yaml: Path, clouds: Sequence[str] = CLOUDS) -> list[ServerInfo]:
    """ACTIVE servers of every project in each cloud's region, with fixed IP, subnet and public key."""
    out: list[ServerInfo] = []
    for cloud in clouds:
        conn = connect(cloud, clouds_yaml)
        region = conn.config.region_name
        subnets: dict[str, Any] = {}
        for s in conn.compute.servers(details=True, all_projects=True):
            if s.status != "ACTIVE":
                continue
            out.append(resolve_server(conn, region, s, subnets)[0])
        conn.close()
    return out
