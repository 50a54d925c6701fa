"""Database hosts from a topology's ``ha.postgres``: one lab host per host it names, at its address.

The highly available PostgreSQL (docs/ha.md) is deployed by govcloud onto the hosts the topology
names, as on any estate; this module only makes those hosts exist in the lab (each in its site's
network namespace, sshd with the controller key, strict host keys), the way `lab legacy` makes the
legacy room's. Lab hosts share /usr, /etc and /var with the machine: the lab's topology therefore
points ``ha.postgres.base_dir`` under the host's own /srv.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import yaml

from devcloud.lab import net
from devcloud.lab.api import Lab
from devcloud.lab.state import HostSpec

KIND = "db"


@dataclass(frozen=True)
class DbHost:
    site: str
    name: str
    address: str


def db_hosts(topology_file: Path) -> list[DbHost]:
    """The hosts ``ha.postgres.hosts`` names, checked against the lab's sites and addresses."""
    data: dict[str, Any] = yaml.safe_load(topology_file.read_text(encoding="utf-8")) or {}
    pg = (data.get("ha") or {}).get("postgres")
    if not pg:
        raise net.LabError(f"{topology_file} declares no ha.postgres: there are no database hosts to create")
    out = [DbHost(str(site), str(h["name"]), str(h["address"])) for site, listed in pg["hosts"].items()
           for h in listed]
    problems = []
    for h in out:
        try:
            s = net.site(h.site)
            net.check_key(h.name)
            net.validate_host_address(s, IPv4Address(h.address), s.subnet.prefixlen, s.gateway.ip)
        except (net.LabError, ValueError) as e:
            problems.append(f"{h.site}/{h.name}: {e}")
    if problems:
        raise net.LabError("database hosts do not fit the lab: " + "; ".join(problems))
    return out


def create_db_hosts(lab: Lab, inventory: Path) -> list[HostSpec]:
    """Create (idempotently) the database hosts of ``inventory/topology.yaml``; returns every one."""
    wanted = db_hosts(inventory / "topology.yaml")
    return lab.add_hosts([{"key": h.name, "site": h.site, "ip": h.address, "kind": KIND, "meta": {"role": "db"}}
                          for h in wanted])
