"""Landing zones and servers as the migration engine sees them, and the pure checks of a wave against
them (no I/O: the preflight reads the cloud, these functions decide what is missing or short).

Every problem is a :class:`~govcloud.errors.Diagnostic` at the system's inventory entry, with the
system as its ``path``, what is missing or short as its message and the fix as its hint; the preflight
lists all of them together and provisions nothing while there is one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from govcloud.errors import Diagnostic, Location
from govcloud.migrate.targets import FlavorInfo, TargetSpec, pick_flavor
from govcloud.provision.desired import project_name

ZoneKey = tuple[str, str]  # (region, department)


@dataclass(frozen=True)
class FlavorRef:
    name: str
    id: str
    vcpus: int
    ram_mb: int


@dataclass(frozen=True)
class QuotaSet:
    cores: int
    ram: int  # MB
    instances: int

    def get(self, key: str) -> int:
        value: int = getattr(self, key)
        return value


@dataclass(frozen=True)
class LandingZone:
    """What a migration needs from one department's landing zone in one region. Missing pieces are
    ``None`` / empty, for the preflight to name."""

    project_id: str
    network_id: str | None
    security_groups: tuple[str, ...]
    keypair: str | None
    keypair_public_key: str | None
    images: Mapping[str, str]  # name -> id
    flavors: tuple[FlavorRef, ...]
    quota: QuotaSet
    in_use: QuotaSet

    def flavor_for(self, spec: TargetSpec) -> FlavorRef | None:
        """The smallest flavor that holds the spec's share (``pick_flavor``), with its id."""
        fl = pick_flavor([FlavorInfo(f.name, f.vcpus, f.ram_mb) for f in self.flavors], spec.vcpus, spec.ram_mb)
        return None if fl is None else next(f for f in self.flavors if f.name == fl.name)


@dataclass(frozen=True)
class SiteCapacity:
    """Free vCPUs and RAM of one availability zone (Placement: inventory x ratio - reserved - used)."""

    vcpus: int
    ram_mb: int

    def get(self, key: str) -> int:
        value: int = getattr(self, key)
        return value


@dataclass(frozen=True)
class ServerInfo:
    """A Nova server as the engine sees it (``ipv4``: its fixed IPv4 address, "" until it has one)."""

    id: str
    name: str
    status: str
    availability_zone: str = ""
    ipv4: str = ""
    tags: tuple[str, ...] = ()
    fault: str = ""  # Nova's fault message of an ERROR server


@dataclass(frozen=True)
class BootRequest:
    name: str
    image_id: str
    flavor_id: str
    network_id: str
    availability_zone: str
    key_name: str
    metadata: Mapping[str, str]
    tags: tuple[str, ...]
    security_groups: tuple[str, ...]


@dataclass(frozen=True)
class WaveSystem:
    """One system of the wave as the checks need it: its id, department and servers to boot, and
    where the inventory declares it (where its problems point)."""

    id: str
    department: str
    specs: tuple[TargetSpec, ...]
    source: Location


@dataclass(frozen=True)
class CloudCheck:
    """Everything the checks compare against, read from the cloud once per run."""

    zones: Mapping[ZoneKey, LandingZone | None]
    existing: frozenset[str]  # names of servers this migration booted earlier (not booted again)
    free: Mapping[str, SiteCapacity]  # per site
    images: Mapping[str, str]  # server name -> the image it boots (a server without one is reported already)
    target_public_key: str  # "type base64" of the key new servers are logged in with ("" = unknown)
    target_key_label: str  # for messages (its path)


Problems = dict[str, list[Diagnostic]]  # system id -> what keeps it from migrating


def problem(w: WaveSystem, what: str, fix: str) -> Diagnostic:
    """A problem of ``w``: at its inventory entry, the system as the path, ``fix`` as the hint; the
    cloud's to fix (``cause`` "runtime": its state, not the inventories, is short)."""
    return Diagnostic(w.source, w.id, what, fix, cause="runtime")


def _add(problems: Problems, w: WaveSystem, what: str, fix: str) -> None:
    """Once per system (several of its servers can share a zone and miss the same thing)."""
    d = problem(w, what, fix)
    if d not in problems[w.id]:
        problems[w.id].append(d)


def zone_problems(works: Sequence[WaveSystem], check: CloudCheck, problems: Problems) -> None:
    """Landing zone, network, keypair (and that it holds our key), image and flavor per server, then
    the project quotas and the sites' capacity for the servers still to boot."""
    for w in works:
        for spec in w.specs:
            _spec_problems(w, spec, check, problems)
    capacity_problems(works, check, problems)
    quota_problems(works, check, problems)


def _spec_problems(w: WaveSystem, spec: TargetSpec, check: CloudCheck, problems: Problems) -> None:
    z = check.zones.get((spec.region, spec.department))
    pname = project_name(spec.department)
    fix = f"run `govcloud provision apply --department {spec.department}`"
    if z is None:
        _add(problems, w, f"landing zone {pname} does not exist in region {spec.region}", fix)
        return
    for what, present in ((f"network {pname}-app", z.network_id), (f"keypair {pname}", z.keypair)):
        if not present:
            _add(problems, w, f"{what} missing in region {spec.region}", fix)
    ours = check.target_public_key
    if z.keypair and z.keypair_public_key and ours and z.keypair_public_key != ours:
        _add(problems, w, f"keypair {pname} in region {spec.region} holds another public key than the one govcloud "
                          f"logs in to new servers with ({check.target_key_label}): the targets would lock us out",
             f"pass the matching --target-key, or delete the keypair and run `govcloud provision apply --department "
             f"{spec.department}`")
    image = check.images.get(spec.name)
    if image is not None and image not in z.images:
        _add(problems, w, f"image {image} missing in region {spec.region}",
             "upload it to Glance in that region, or correct the region's images in the topology")
    if z.flavor_for(spec) is None:
        problems[w.id].append(problem(w, f"no flavor with at least {spec.vcpus} vCPU / {spec.ram_mb} MB in region "
                                         f"{spec.region} for {spec.name}", "create one (openstack flavor create)"))


def _to_boot(works: Sequence[WaveSystem], check: CloudCheck) -> list[tuple[WaveSystem, TargetSpec, FlavorRef]]:
    """The servers not booted yet whose zone and flavor exist (the others are reported already)."""
    out = []
    for w in works:
        for spec in w.specs:
            z = check.zones.get((spec.region, spec.department))
            fl = z.flavor_for(spec) if z is not None else None
            if fl is not None and spec.name not in check.existing:
                out.append((w, spec, fl))
    return out


def quota_problems(works: Sequence[WaveSystem], check: CloudCheck, problems: Problems) -> None:
    """Free quota per department project and region against the flavors still to boot."""
    need: dict[ZoneKey, list[int]] = {}
    for _w, spec, fl in _to_boot(works, check):
        acc = need.setdefault((spec.region, spec.department), [0, 0, 0])
        acc[0] += fl.vcpus
        acc[1] += fl.ram_mb
        acc[2] += 1
    for (region, dept), (cores, ram, inst) in sorted(need.items()):
        z = check.zones.get((region, dept))
        if not z:
            continue
        short = []
        for k, n in (("cores", cores), ("ram", ram), ("instances", inst)):
            limit = z.quota.get(k)
            free = limit - z.in_use.get(k)
            if limit >= 0 and n > free:
                short.append(f"{k} needs {n}, {free} free of {limit}")
        if not short:
            continue
        for w in works:
            if w.department == dept and any(s.region == region for s in w.specs):
                problems[w.id].append(problem(w, f"quota of {project_name(dept)} in region {region} too small for "
                                                 f"this wave ({'; '.join(short)})", "raise the quota (openstack quota "
                                                 "set) or migrate fewer systems at once (--systems)"))


def sites_to_check(works: Sequence[WaveSystem], check: CloudCheck) -> dict[str, str]:
    """Site -> region of the servers still to boot (whose free capacity the preflight reads)."""
    return {spec.site: spec.region for _w, spec, _fl in _to_boot(works, check)}


def capacity_problems(works: Sequence[WaveSystem], check: CloudCheck, problems: Problems) -> None:
    """Free vCPUs and RAM per site (Placement) against the flavors of the servers still to boot."""
    need: dict[str, list[int]] = {}
    users: dict[str, dict[str, WaveSystem]] = {}
    for w, spec, fl in _to_boot(works, check):
        acc = need.setdefault(spec.site, [0, 0])
        acc[0] += fl.vcpus
        acc[1] += fl.ram_mb
        users.setdefault(spec.site, {})[w.id] = w
    for site, (vcpus, ram) in sorted(need.items()):
        have = check.free.get(site)
        if have is None:
            short = [f"no compute hosts in availability zone {site}"]
        else:
            short = [f"{k} needs {n}, {have.get(k)} free" for k, n in (("vcpus", vcpus), ("ram_mb", ram))
                     if n > have.get(k)]
        if short:
            for sid, w in sorted(users[site].items()):
                problems[sid].append(problem(w, f"site {site} lacks capacity for this run's servers "
                                                f"({'; '.join(short)})", "add compute capacity there, or migrate "
                                                "fewer systems at once (--systems)"))
