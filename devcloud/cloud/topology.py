"""The cloud's shape: one Keystone, two independent regional stacks, one fake compute per site.

Ports: RegionGZ uses the usual OpenStack ports, RegionST the same with a leading ``1``.
"""

from __future__ import annotations

from dataclasses import dataclass

KEYSTONE_PORT = 5000
KEYSTONE_URL = f"http://127.0.0.1:{KEYSTONE_PORT}/v3"
MYSQL_PORT = 3306
RABBIT_PORT = 5672
RABBIT_DIST_PORT = 25672
EPMD_PORT = 4369

# service user/name, catalog type, base port, path
API_SERVICES: tuple[tuple[str, str, int, str], ...] = (
    ("placement", "placement", 8778, ""),
    ("nova", "compute", 8774, "/v2.1"),
    ("neutron", "network", 9696, ""),
    ("glance", "image", 9292, ""),
)


@dataclass(frozen=True)
class Compute:
    host: str  # nova-compute `host`, e.g. gz-a-cmp1
    az: str  # availability zone == site, e.g. gz-a


@dataclass(frozen=True)
class Region:
    name: str  # RegionGZ
    short: str  # gz: suffix of process names, DB names, RabbitMQ vhost
    port_prefix: str  # "" or "1"
    computes: tuple[Compute, ...]

    def port(self, base: int) -> int:
        return int(f"{self.port_prefix}{base}")

    @property
    def placement_port(self) -> int:
        return self.port(8778)

    @property
    def glance_port(self) -> int:
        return self.port(9292)

    @property
    def neutron_port(self) -> int:
        return self.port(9696)

    @property
    def nova_port(self) -> int:
        return self.port(8774)

    @property
    def databases(self) -> tuple[str, ...]:
        s = self.short
        return (f"placement_{s}", f"glance_{s}", f"neutron_{s}", f"nova_api_{s}", f"nova_{s}_cell0", f"nova_{s}")


REGIONS: tuple[Region, ...] = (
    Region("RegionGZ", "gz", "", (Compute("gz-a-cmp1", "gz-a"), Compute("gz-b-cmp1", "gz-b"))),
    Region("RegionST", "st", "1", (Compute("st-a-cmp1", "st-a"),)),
)

ALL_DATABASES: tuple[str, ...] = ("keystone", *(db for r in REGIONS for db in r.databases))


def region_by_name(name: str) -> Region:
    for r in REGIONS:
        if name in (r.name, r.short):
            return r
    raise KeyError(name)
