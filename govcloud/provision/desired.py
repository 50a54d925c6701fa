"""The desired landing zones, computed from the inventory alone (plus the CIDRs already handed out).

Per department: one Keystone project ``gov-<dept>`` (Keystone is shared by the regions) with a role
for the operator, and per region its systems use (the primary region always; the backup region too
when a system is active-active or active-standby, which keep a DR copy there): compute and network
quotas, a network + subnet per security zone (app, data, mgmt), a router with an interface on each,
security groups (SSH and ICMP only from the mgmt zone and the topology's ``ops_cidrs``), a keypair,
and anti-affinity server groups for active-active systems (one per system and role in the primary
region, so each role's two copies land on different hosts).

CIDR allocation (stable, documented in docs/provisioning.md): each department gets one /22 block of
the region's ``network_pool`` and a /24 per zone inside it. A department keeps the block the cloud
already shows for it (``existing``: the record is the cloud itself); a new department takes the
block ``sha256(id) mod blocks`` or, on a collision, the next free one, in sorted id order. Adding or
removing a department therefore never moves another department's subnets.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from govcloud.errors import Diagnostic, PlanError
from govcloud.model import Department, Inventory, Placement, Region, System
from govcloud.provision.model import (
    GLOBAL,
    MANAGED_TAG,
    Desired,
    ObservedResource,
    Requirement,
    Resource,
    dept_tag,
    key_of,
    make_params,
)

ZONES: tuple[str, ...] = ("app", "data", "mgmt")
BLOCK_PREFIX = 22  # one block per department: four /24s (app, data, mgmt, one spare)
ZONE_PREFIX = 24
OPERATOR_ROLE = "member"
OPERATOR = "@operator"  # the user govcloud connects as; the adapter resolves it


@dataclass(frozen=True)
class DesiredOptions:
    """Knobs of the desired state. ``headroom``: quota margin over the systems' needs (0.25 = 25 %)."""

    headroom: float = 0.25
    # the one image every server boots (``--image``); None: the images the region maps per OS (topology)
    image: str | None = None
    public_key: str = ""  # operator key (``ssh-ed25519 AAAA...``) for the department keypairs
    regions: tuple[str, ...] = ()  # empty: every region
    departments: tuple[str, ...] = ()  # empty: every department


def project_name(department: str) -> str:
    return f"gov-{department}"


def regions_of(system: System, inventory: Inventory) -> tuple[str, ...]:
    """The regions a system runs in: the primary, plus the backup for systems with a DR copy."""
    topo = inventory.topology
    primary = topo.primary_region
    backup = topo.backup_region
    out = [primary.name] if primary else []
    if backup and system.placement in (Placement.ACTIVE_ACTIVE, Placement.ACTIVE_STANDBY):
        out.append(backup.name)
    return tuple(out)


def department_regions(department: Department, inventory: Inventory) -> tuple[str, ...]:
    """Regions a department needs a landing zone in (primary at least, even with no systems)."""
    primary = inventory.topology.primary_region
    names = {r for sid in department.systems if inventory.has_system(sid) for r in regions_of(inventory.system(sid), inventory)}
    if primary:
        names.add(primary.name)
    order = [r.name for r in inventory.topology.regions]
    return tuple(r for r in order if r in names)


# --- CIDR allocation ---------------------------------------------------------------------------


def block_count(pool: str) -> int:
    net = ipaddress.ip_network(pool)
    if net.prefixlen > BLOCK_PREFIX:
        raise ValueError(f"network_pool {pool} is smaller than one /{BLOCK_PREFIX} department block")
    return int(2 ** (BLOCK_PREFIX - net.prefixlen))


def block_of(pool: str, index: int) -> ipaddress.IPv4Network:
    net = ipaddress.IPv4Network(pool)
    if not 0 <= index < block_count(pool):
        raise IndexError(f"block {index} outside {pool}")
    base = int(net.network_address) + index * 2 ** (32 - BLOCK_PREFIX)
    return ipaddress.IPv4Network((base, BLOCK_PREFIX))


def zone_cidr(pool: str, index: int, zone: str) -> str:
    block = block_of(pool, index)
    base = int(block.network_address) + ZONES.index(zone) * 2 ** (32 - ZONE_PREFIX)
    return str(ipaddress.IPv4Network((base, ZONE_PREFIX)))


def block_index_of(pool: str, cidr: str) -> int | None:
    """Which department block of ``pool`` holds ``cidr`` (None if outside the pool)."""
    net = ipaddress.ip_network(pool)
    try:
        sub = ipaddress.ip_network(cidr)
    except ValueError:
        return None
    if sub.version != net.version or not sub.subnet_of(net):  # type: ignore[arg-type]
        return None
    offset = int(sub.network_address) - int(net.network_address)
    return int(offset // (2 ** (32 - BLOCK_PREFIX)))


def preferred_block(department: str, blocks: int) -> int:
    return int(int.from_bytes(hashlib.sha256(department.encode()).digest()[:8], "big") % blocks)


def allocate_blocks(departments: Iterable[str], blocks: int, existing: Mapping[str, int]) -> dict[str, int]:
    """Block index per department: ``existing`` ones kept, new ones by hash with linear probing.

    Raises ValueError when the pool is full.
    """
    taken: dict[int, str] = {}
    out: dict[str, int] = {}
    for dept, idx in sorted(existing.items()):
        if idx in taken:  # two departments in one block on the cloud: keep the first, move the other
            continue
        taken[idx] = dept
        out[dept] = idx
    for dept in sorted(set(departments)):
        if dept in out:
            continue
        start = preferred_block(dept, blocks)
        for step in range(blocks):
            idx = (start + step) % blocks
            if idx not in taken:
                taken[idx] = dept
                out[dept] = idx
                break
        else:
            raise ValueError(f"network pool full: {blocks} department blocks, {len(set(departments)) + len(existing)} wanted")
    return out


# --- quotas --------------------------------------------------------------------------------------


def _grow(value: float, headroom: float) -> int:
    return int(math.ceil(value * (1.0 + headroom)))


def compute_quota(systems: Iterable[System], region: str, inventory: Inventory, headroom: float) -> dict[str, int]:
    """Nova quotas for one department in one region: the systems' full size there, plus headroom.

    Active-active systems run a copy of every host in each primary-region site (half the size each,
    so the region carries the whole system); DR copies in the backup region are full-size.
    """
    primary = inventory.topology.primary_region
    vcpus = ram_gb = instances = groups = members = 0
    for s in systems:
        if region not in regions_of(s, inventory):
            continue
        vcpus += s.resources.vcpus
        ram_gb += s.resources.ram_gb
        hosts = max(1, len(s.hosts))
        in_primary_aa = s.placement is Placement.ACTIVE_ACTIVE and primary is not None and region == primary.name
        instances += hosts * (2 if in_primary_aa else 1)
        if in_primary_aa:
            groups += len(_roles(s))
            members = max(members, 2)
    return {
        "cores": max(1, _grow(vcpus, headroom)),
        "ram": max(512, _grow(ram_gb * 1024, headroom)),
        "instances": max(1, _grow(instances, headroom)),
        "server_groups": max(1, _grow(groups, headroom)),
        "server_group_members": max(2, _grow(members, headroom)),
    }


def network_quota(instances: int, headroom: float) -> dict[str, int]:
    """Neutron quotas: three zone networks, one router, three groups plus ``default``, and ports."""
    return {
        "network": _grow(len(ZONES), headroom) + 1,
        "subnet": _grow(len(ZONES), headroom) + 1,
        "router": 2,
        # + 4: the groups are created concurrently and Neutron makes ``default`` on a project's first
        # request; their quota reservations overlap (a 409 "Quota exceeded" seen on a fresh devcloud)
        "security_group": _grow(4, headroom) + 4,
        "security_group_rule": 100,
        "port": _grow(instances + len(ZONES), headroom) + 10,
    }


def _roles(system: System) -> tuple[str, ...]:
    return tuple(sorted({h.role for h in system.hosts})) or ("app",)


# --- security groups -----------------------------------------------------------------------------


def rule(protocol: str, ports: str, cidr: str) -> str:
    """A rule as govcloud compares it: ``tcp:22:10.244.8.0/24`` (ingress, IPv4); icmp ports are ``-``."""
    return f"{protocol}:{ports}:{cidr}"


def security_groups(zones: Mapping[str, str], peer_data: Iterable[str], ops_cidrs: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Least-privilege baseline per zone, as rule strings (egress is Neutron's default and not managed).

    base: SSH and ICMP from the mgmt zone and the ops CIDRs only; app: the service port (8080) from
    the app zone and the ops CIDRs; data: PostgreSQL from the app and data zones and the other
    region's data zone (replication to the DR copy).
    """
    ops = tuple(ops_cidrs)
    base = [rule("tcp", "22", c) for c in (zones["mgmt"], *ops)] + [rule("icmp", "-", c) for c in (zones["mgmt"], *ops)]
    app = [rule("tcp", "8080", c) for c in (zones["app"], *ops)]
    data = [rule("tcp", "5432", c) for c in (zones["app"], zones["data"], *peer_data)]
    return {"base": tuple(sorted(set(base))), "app": tuple(sorted(set(app))), "data": tuple(sorted(set(data)))}


# --- the builder ---------------------------------------------------------------------------------


def _pool(region: Region, inventory: Inventory) -> str:
    if not region.network_pool:
        raise PlanError(
            f"region {region.name} has no network_pool",
            hint="add `network_pool: <CIDR>` to the region in topology.yaml (see docs/lab-addressing.md)",
            diagnostics=(Diagnostic(inventory.topology.source, f"regions.{region.name}", "network_pool missing"),),
        )
    return region.network_pool


def allocations(inventory: Inventory, existing: Mapping[tuple[str, str], int] | None = None) -> dict[tuple[str, str], int]:
    """(region, department) -> block index, for every department that needs the region.

    ``existing`` holds blocks the cloud already shows (including departments that left the inventory,
    so nobody takes their block before they are pruned).
    """
    existing = existing or {}
    out: dict[tuple[str, str], int] = {}
    for region in inventory.topology.regions:
        wanted = [d.id for d in inventory.departments if region.name in department_regions(d, inventory)]
        if not wanted:
            continue
        pool = _pool(region, inventory)
        ex = {dept: idx for (reg, dept), idx in existing.items() if reg == region.name}
        try:
            got = allocate_blocks(wanted, block_count(pool), ex)
        except ValueError as exc:
            raise PlanError(str(exc), hint=f"give region {region.name} a larger network_pool in topology.yaml") from exc
        for dept in wanted:
            out[(region.name, dept)] = got[dept]
    return out


def build_desired(
    inventory: Inventory,
    options: DesiredOptions,
    existing: Mapping[tuple[str, str], int] | None = None,
) -> Desired:
    """Every resource the inventory asks for, within the region/department filters of ``options``.

    Raises PlanError for an unknown region or department in the filters, or a pool that is too small.
    Phases per department: its project (global), then per region its network landing zone, its
    server groups, and what its systems need but govcloud does not create (image, flavors).
    """
    topo = inventory.topology
    known_regions = [r.name for r in topo.regions]
    bad = [r for r in options.regions if r not in known_regions]
    if bad:
        raise PlanError(f"unknown region: {', '.join(bad)}", hint=f"regions: {', '.join(known_regions)}")
    # a department outside the inventory may be named: it scopes --prune to its leftovers (checked by the service)
    regions = tuple(r for r in known_regions if not options.regions or r in options.regions)
    depts = tuple(d for d in inventory.departments if not options.departments or d.id in options.departments)
    alloc = allocations(inventory, existing)
    resources: list[Resource] = []
    requirements: dict[tuple[str, str, str], Requirement] = {}
    for dept in depts:
        dregions = [r for r in department_regions(dept, inventory) if r in regions]
        if not dregions:
            continue
        resources += _project(dept)
        for region in dregions:
            resources += _landing_zone(inventory, options, alloc, dept, region)
            resources += _server_groups(inventory, dept, region)
            _require(requirements, inventory, options, dept, region, regions)
    return Desired(tuple(resources), tuple(sorted(requirements.values(), key=lambda r: (r.region, r.kind, r.name))),
                   tuple(d.id for d in depts), regions)


def _systems(dept: Department, inventory: Inventory) -> list[System]:
    return [inventory.system(s) for s in dept.systems if inventory.has_system(s)]


def _dept_tags(dept: Department) -> tuple[str, ...]:
    return tuple(sorted((MANAGED_TAG, dept_tag(dept.id))))


def _project(dept: Department) -> list[Resource]:
    """The department's Keystone project and the operator's role on it."""
    proj = project_name(dept.id)
    pkey = key_of(GLOBAL, "project", proj)
    return [Resource("project", GLOBAL, dept.id, proj,
                     make_params({"description": f"govcloud landing zone: {dept.name}", "tags": _dept_tags(dept),
                                  "enabled": True}), ()),
            Resource("role_assignment", GLOBAL, dept.id, f"{proj}/{OPERATOR_ROLE}",
                     make_params({"project": proj, "role": OPERATOR_ROLE, "user": OPERATOR}), (pkey,))]


def _landing_zone(inventory: Inventory, options: DesiredOptions, alloc: Mapping[tuple[str, str], int],
                  dept: Department, region: str) -> list[Resource]:
    """Quotas, the router, one network + subnet + interface per zone, security groups, the keypair."""
    proj, tags = project_name(dept.id), _dept_tags(dept)
    pkey = key_of(GLOBAL, "project", proj)
    pool = _pool(inventory.topology.region(region), inventory)
    zones = {z: zone_cidr(pool, alloc[(region, dept.id)], z) for z in ZONES}
    peer_data = [zone_cidr(_pool(inventory.topology.region(o), inventory), alloc[(o, dept.id)], "data")
                 for o in department_regions(dept, inventory) if o != region and (o, dept.id) in alloc]
    cq = compute_quota(_systems(dept, inventory), region, inventory, options.headroom)
    router = f"{proj}"
    router_key = key_of(region, "router", router)
    out = [Resource("quota_compute", region, dept.id, proj, make_params(cq), (pkey,)),
           Resource("quota_network", region, dept.id, proj,
                    make_params(network_quota(cq["instances"], options.headroom)), (pkey,)),
           Resource("router", region, dept.id, router, make_params({"project": proj, "tags": tags}), (pkey,))]
    for zone in ZONES:
        name = f"{proj}-{zone}"
        net_key = key_of(region, "network", name)
        sub_key = key_of(region, "subnet", name)
        cidr = zones[zone]
        gateway = str(next(ipaddress.ip_network(cidr).hosts()))
        out.append(Resource("network", region, dept.id, name, make_params({"project": proj, "tags": tags}), (pkey,)))
        out.append(Resource("subnet", region, dept.id, name, make_params(
            {"project": proj, "tags": tags, "network": name, "cidr": cidr, "gateway_ip": gateway,
             "enable_dhcp": False, "ip_version": 4}), (net_key,)))
        out.append(Resource("router_interface", region, dept.id, name,
                            make_params({"router": router, "subnet": name}), (router_key, sub_key)))
    for sg, rules in security_groups(zones, peer_data, inventory.topology.ops_cidrs).items():
        out.append(Resource("security_group", region, dept.id, f"{proj}-{sg}", make_params(
            {"project": proj, "tags": tags, "description": f"govcloud {sg} baseline", "rules": rules}), (pkey,)))
    if options.public_key:
        out.append(Resource("keypair", region, dept.id, proj, make_params({"public_key": options.public_key}), ()))
    return out


def _server_groups(inventory: Inventory, dept: Department, region: str) -> list[Resource]:
    """Anti-affinity groups for the active-active systems' roles, in the primary region only."""
    primary = inventory.topology.primary_region
    if primary is None or region != primary.name:
        return []
    proj = project_name(dept.id)
    deps = (key_of(GLOBAL, "project", proj), key_of(GLOBAL, "role_assignment", f"{proj}/{OPERATOR_ROLE}"))
    return [Resource("server_group", region, dept.id, f"gov-{s.id}-{role}",
                     make_params({"project": proj, "policy": "anti-affinity"}), deps)
            for s in _systems(dept, inventory) if s.placement is Placement.ACTIVE_ACTIVE for role in _roles(s)]


def _require(requirements: dict[tuple[str, str, str], Requirement], inventory: Inventory, options: DesiredOptions,
             dept: Department, region: str, regions: tuple[str, ...]) -> None:
    """What the systems need but govcloud does not create: the images (the ``--image`` override, else each
    one the region's topology maps an OS to: the images migrations boot), and a flavor per host size."""
    names = (options.image,) if options.image else tuple(i.image for i in inventory.topology.region(region).images)
    for name in dict.fromkeys(names):
        img = (region, "image", name)
        prev = requirements.get(img)
        requirements[img] = Requirement("image", region, name,
                                        needed_by=tuple(sorted({*(prev.needed_by if prev else ()), dept.id})))
    primary = inventory.topology.primary_region
    for s in _systems(dept, inventory):
        if region not in regions_of(s, inventory):
            continue
        hosts = max(1, len(s.hosts))
        halved = s.placement is Placement.ACTIVE_ACTIVE and primary is not None and region == primary.name
        res = s.resources.halved() if halved else s.resources
        vcpus = -(-res.vcpus // hosts)
        ram_mb = -(-res.ram_gb * 1024 // hosts)
        label = f"{vcpus} vCPU / {ram_mb} MB"
        k = (region, "flavor", label)
        prev = requirements.get(k)
        requirements[k] = Requirement("flavor", region, label, vcpus, ram_mb,
                                      tuple(sorted({*(prev.needed_by if prev else ()), s.id})))


def existing_blocks(observed: Iterable[ObservedResource], inventory: Inventory) -> dict[tuple[str, str], int]:
    """(region, department) -> block index of the department's managed subnets on the cloud.

    The cloud is the allocation record: whatever block a department's subnets sit in, it keeps.
    """
    out: dict[tuple[str, str], int] = {}
    pools = {r.name: r.network_pool for r in inventory.topology.regions if r.network_pool}
    for o in observed:
        if o.kind != "subnet" or not o.managed or not o.department or o.region not in pools:
            continue
        idx = block_index_of(str(pools[o.region]), str(o.p.get("cidr", "")))
        if idx is not None:
            out.setdefault((o.region, o.department), idx)
    return out
