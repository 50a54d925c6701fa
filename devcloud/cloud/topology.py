"""The cloud's shape: one Keystone, two independent regional stacks, a few fake computes per site.

Why several computes per site: every build on a nova-compute re-reads the allocations of every
instance on its resource provider (``ResourceTracker._update_to_placement`` -> one Placement GET per
instance) while holding the compute's resource lock. With one compute per site, booting the
example's first wave (170 servers) costs O(n^2) Placement calls, serialized per site; three computes
per gz site (two in st-a) cut that by ~3x and let builds in a site run side by side.

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
    Region("RegionGZ", "gz", "", tuple(Compute(f"{site}-cmp{n}", site) for site in ("gz-a", "gz-b") for n in (1, 2, 3))),
    Region("RegionST", "st", "1", tuple(Compute(f"st-a-cmp{n}", "st-a") for n in (1, 2))),
)

ALL_DATABASES: tuple[str, ...] = ("keystone", *(db for r in REGIONS for db in r.databases))


def region_by_name(name: str) -> Region:
    for r in REGIONS:
        if name in (r.name, r.short):
            return r
    raise KeyError(name)
