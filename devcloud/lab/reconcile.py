"""Nova servers -> lab hosts: every ACTIVE server becomes an SSH-reachable host in its AZ's site.

The pure part (:func:`desired_hosts`, :func:`diff`) turns a server list into host specs and a plan;
:func:`fetch_servers` reads the real clouds (openstacksdk, clouds ``gz`` and ``st`` of devcloud's
clouds.yaml); :func:`reconcile` applies the plan to the lab. Only hosts of kind ``nova`` are ever
removed, so legacy and infra hosts are never touched.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from devcloud.lab import net
from devcloud.lab.state import HostSpec

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


@dataclass
class Plan:
    create: list[HostSpec] = field(default_factory=list)
    replace: list[HostSpec] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)


def host_key(server_id: str) -> str:
    return f"n-{server_id.lower()}"


def hostname_of(name: str) -> str:
    """A server name as a valid hostname (what `hostname` inside the host answers)."""
    h = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return h or "server"


def desired_hosts(servers: Iterable[ServerInfo]) -> tuple[dict[str, HostSpec], list[str]]:
    """Host specs for the servers that can be lab hosts, and one reason per server skipped."""
    want: dict[str, HostSpec] = {}
    skipped: list[str] = []
    by_ip: dict[str, str] = {}
    for s in sorted(servers, key=lambda x: x.id):
        label = f"{s.region}/{s.name} ({s.id})"
        if s.status != "ACTIVE":
            continue
        if s.az not in net.DATACENTRES:
            skipped.append(f"{label}: availability zone {s.az!r} is not a lab site")
            continue
        if not (s.ip and s.cidr):
            skipped.append(f"{label}: no IPv4 fixed IP")
            continue
        site = net.site(s.az)
        subnet = IPv4Network(s.cidr, strict=False)
        gateway = s.gateway or str(subnet.network_address + 1)
        try:
            net.validate_host_address(site, IPv4Address(s.ip), subnet.prefixlen, IPv4Address(gateway))
        except (net.LabError, ValueError) as e:
            skipped.append(f"{label}: {e}")
            continue
        if s.ip in by_ip:
            skipped.append(f"{label}: fixed IP {s.ip} already used by {by_ip[s.ip]}")
            continue
        by_ip[s.ip] = label
        if not s.public_key:
            skipped.append(f"{label}: no keypair public key (key_name={s.key_name!r}); host created without keys")
        key = host_key(s.id)
        want[key] = HostSpec(
            key=key, hostname=hostname_of(s.name), site=site.name, ip=s.ip, prefixlen=subnet.prefixlen,
            gateway=gateway, kind="nova", authorized_keys=[s.public_key.strip()] if s.public_key else [],
            meta={"server_id": s.id, "server_name": s.name, "region": s.region, "az": s.az, "key_name": s.key_name or ""},
        )
    return want, skipped


def diff(desired: dict[str, HostSpec], current: Iterable[HostSpec]) -> Plan:
    """What to do so the lab's ``nova`` hosts match ``desired``."""
    plan = Plan()
    have = {h.key: h for h in current if h.kind == "nova"}
    for key, spec in sorted(desired.items()):
        old = have.get(key)
        if old is None:
            plan.create.append(spec)
        elif old.same_shape(spec):
            plan.keep.append(key)
        else:
            plan.replace.append(spec)
    plan.remove = sorted(k for k in have if k not in desired)
    return plan


# ------------------------------------------------------------------ the real clouds


def connect(cloud: str, clouds_yaml: Path) -> Any:
    import openstack.connection
    from openstack.config import loader

    cfg = loader.OpenStackConfig(config_files=[str(clouds_yaml)], vendor_files=[])
    return openstack.connection.Connection(config=cfg.get_one(cloud=cloud))


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
            ip = cidr = gw = None
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
            if s.key_name:
                try:
                    pub = conn.compute.get_keypair(s.key_name, user_id=s.user_id).public_key
                except Exception as e:  # noqa: BLE001 - a missing keypair skips keys, not the host
                    log.warning("keypair %s of server %s not readable: %s", s.key_name, s.id, e)
            out.append(
                ServerInfo(
                    id=s.id, name=s.name, region=region, az=s.availability_zone or "", status=s.status,
                    ip=ip, cidr=cidr, gateway=gw, key_name=s.key_name, public_key=pub,
                )
            )
        conn.close()
    return out


@dataclass
class ReconcileResult:
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def reconcile(lab: Any, servers: Sequence[ServerInfo] | None = None, clouds_yaml: Path | None = None) -> ReconcileResult:
    """Make the lab's nova hosts match the clouds' ACTIVE servers. Idempotent."""
    if servers is None:
        path = clouds_yaml or lab.paths.clouds_yaml
        if not Path(path).exists():
            raise net.LabError(f"no clouds.yaml at {path}: is the devcloud up (`devcloud up`)?")
        servers = fetch_servers(Path(path))
    desired, skipped = desired_hosts(servers)
    plan = diff(desired, lab.hosts())
    res = ReconcileResult(kept=plan.keep, skipped=skipped)
    for key in plan.remove:
        lab.remove_host(key)
        res.removed.append(key)
    for spec in [*plan.replace, *plan.create]:
        try:
            lab.add_host(
                spec.key, spec.site, ip=spec.ip, prefixlen=spec.prefixlen, gateway=spec.gateway,
                hostname=spec.hostname, kind="nova", authorized_keys=spec.authorized_keys, controller_key=False,
                meta=spec.meta,
            )
        except net.LabError as e:  # one bad server (e.g. an address clash) must not block the others
            res.skipped.append(f"{spec.meta.get('server_name')} ({spec.meta.get('server_id')}): {e}")
            continue
        (res.replaced if spec in plan.replace else res.created).append(spec.key)
    return res


def wait_for_hosts(lab: Any, server_ids: Sequence[str], *, timeout: float = 120.0, clouds_yaml: Path | None = None) -> list[HostSpec]:
    """Reconcile until every server in ``server_ids`` is a running lab host (e.g. right after boot).

    Returns their host specs in the given order; raises LabError naming the missing ones on timeout.
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        reconcile(lab, clouds_yaml=clouds_yaml)
        by_id = {h.meta.get("server_id"): h for h in lab.hosts(kind="nova")}
        missing = [sid for sid in server_ids if sid not in by_id]
        if not missing:
            return [by_id[sid] for sid in server_ids]
        if time.monotonic() > deadline:
            raise net.LabError(f"servers not lab hosts after {timeout:.0f}s (not ACTIVE or no fixed IP?): {', '.join(missing)}")
        time.sleep(1.0)
