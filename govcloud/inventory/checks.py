"""Cross-document checks that a schema cannot express: references, uniqueness, feasibility.

They run on schema-valid documents and return diagnostics (errors and warnings), all at once.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from govcloud.errors import Diagnostic, Location
from govcloud.inventory.db_checks import check_host_databases
from govcloud.inventory.dns_checks import check_dns
from govcloud.inventory.ha_checks import check_ha
from govcloud.inventory.probe_checks import check_probes
from govcloud.inventory.service_checks import check_system_services
from govcloud.inventory.yamlio import PathElem, YamlDocument, format_path

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$")


@dataclass
class _Findings:
    items: list[Diagnostic] = field(default_factory=list)

    def error(self, doc: YamlDocument, path: tuple[PathElem, ...], message: str, hint: str = "", *, key: bool = False) -> None:
        self.items.append(Diagnostic(doc.locate(path, key=key), format_path(path), message, hint))

    def warn(self, doc: YamlDocument, path: tuple[PathElem, ...], message: str, hint: str = "") -> None:
        self.items.append(Diagnostic(doc.locate(path), format_path(path), message, hint, severity="warning"))


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return close[0] if close else ""


def check_topology(doc: YamlDocument) -> list[Diagnostic]:
    """Region roles, unique sites and zones, replication endpoints, address pools."""
    f = _Findings()
    data: dict[str, Any] = doc.data
    regions: dict[str, Any] = data["regions"]
    primaries = [r for r, v in regions.items() if v["role"] == "primary"]
    backups = [r for r, v in regions.items() if v["role"] == "backup"]
    if len(primaries) != 1:
        f.error(doc, ("regions",), f"exactly one region must have role 'primary', found {len(primaries)}"
                f"{' (' + ', '.join(primaries) + ')' if primaries else ''}", "set role: primary on the main region only")
    if len(backups) > 1:
        f.error(doc, ("regions", backups[1], "role"), f"at most one region may have role 'backup', found {len(backups)}",
                "govcloud fails over to a single backup region")
    site_owner: dict[str, str] = {}
    zones: dict[tuple[str, str], tuple[str, str]] = {}
    for rname, region in regions.items():
        for sname, site in region["sites"].items():
            if sname in regions:
                f.error(doc, ("regions", rname, "sites", sname), f"site '{sname}' has the same name as a region",
                        "site and region names share one namespace (replication refers to either)", key=True)
            if sname in site_owner:
                f.error(doc, ("regions", rname, "sites", sname),
                        f"site '{sname}' is defined in region '{site_owner[sname]}' too", "site names must be unique", key=True)
            site_owner.setdefault(sname, rname)
            zone_key = (region["openstack"]["cloud"], site["availability_zone"])
            if zone_key in zones:
                f.error(doc, ("regions", rname, "sites", sname, "availability_zone"),
                        f"availability zone '{site['availability_zone']}' is used by site '{zones[zone_key][0]}' too",
                        "each site maps to its own availability zone")
            zones.setdefault(zone_key, (sname, rname))
    names = sorted(set(regions) | set(site_owner))
    for i, link in enumerate(data.get("replication", [])):
        for end in ("from", "to"):
            ref = link[end]
            if ref not in names:
                guess = _did_you_mean(ref, names)
                f.error(doc, ("replication", i, end), f"unknown site or region '{ref}'",
                        (f"did you mean '{guess}'? " if guess else "") + f"known: {', '.join(names)}")
        if link["from"] == link["to"]:
            f.error(doc, ("replication", i), f"replication from '{link['from']}' to itself", "name two different places")
        if link["mode"] == "sync" and "max_lag_seconds" in link:
            f.warn(doc, ("replication", i, "max_lag_seconds"), "max_lag_seconds is ignored for sync replication")
    pools: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
    for rname, region in regions.items():
        pool = region.get("network_pool")
        if pool is None:
            continue
        try:
            net = ipaddress.ip_network(pool, strict=True)
        except ValueError as exc:
            f.error(doc, ("regions", rname, "network_pool"), f"invalid network pool '{pool}': {exc}",
                    "write a network address with its prefix, e.g. 10.244.0.0/15")
            continue
        for other, oname in pools:
            if net.overlaps(other):
                f.error(doc, ("regions", rname, "network_pool"), f"network pool {net} overlaps region '{oname}' ({other})",
                        "give each region its own range so replication can route between them")
        pools.append((net, rname))
    for i, cidr in enumerate(data.get("security", {}).get("ops_cidrs", [])):
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            f.error(doc, ("security", "ops_cidrs", i), f"invalid CIDR '{cidr}': {exc}", "e.g. 10.240.0.0/24")
            continue
        if net.prefixlen == 0:
            f.warn(doc, ("security", "ops_cidrs", i), f"ops CIDR {cidr} opens SSH to the whole internet",
                   "list the operators' networks instead")
    f.items.extend(check_dns(doc, sorted(site_owner)))
    f.items.extend(check_probes(doc))
    f.items.extend(check_ha(doc, site_owner))
    return f.items


@dataclass(frozen=True)
class _Defined:
    doc: YamlDocument
    path: tuple[PathElem, ...]

    def where(self) -> Location:
        return self.doc.locate(self.path)


def check_departments(topology: YamlDocument | None, departments: list[YamlDocument],
                      defined_elsewhere: frozenset[str] | set[str] = frozenset()) -> list[Diagnostic]:
    """References between systems, global uniqueness, and whether each placement can ever fit.

    ``defined_elsewhere`` holds ids from files that failed their schema check: references to them
    are not reported again (the broken file's own errors are).
    """
    f = _Findings()
    dept_ids: dict[str, _Defined] = {}
    systems: dict[str, _Defined] = {}
    hosts: dict[str, _Defined] = {}
    endpoints: dict[tuple[str, int], _Defined] = {}
    for doc in departments:
        dept = doc.data["department"]["id"]
        stem = doc.name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        if stem != dept:
            f.warn(doc, ("department", "id"), f"department '{dept}' is in a file named '{stem}'",
                   f"name the file {dept}.yaml so planners find it")
        if dept in dept_ids:
            first = dept_ids[dept]
            f.error(doc, ("department", "id"), f"duplicate department id '{dept}' (also defined at {first.where()})",
                    "each department has one file; merge them or rename one id")
        else:
            dept_ids[dept] = _Defined(doc, ("department", "id"))
        for i, system in enumerate(doc.data["systems"]):
            sid = system["id"]
            if sid in systems:
                first = systems[sid]
                f.error(doc, ("systems", i, "id"), f"duplicate system id '{sid}' (also defined at {first.where()})",
                        "system ids are unique across all department files; rename one")
            else:
                systems[sid] = _Defined(doc, ("systems", i, "id"))
            for j, host in enumerate(system.get("hosts", [])):
                hpath: tuple[PathElem, ...] = ("systems", i, "hosts", j)
                if host["name"] in hosts:
                    f.error(doc, (*hpath, "name"), f"duplicate host name '{host['name']}' (also at {hosts[host['name']].where()})",
                            "host names are unique across the inventory")
                else:
                    hosts[host["name"]] = _Defined(doc, (*hpath, "name"))
                addr = host["address"]
                if not _valid_address(addr):
                    f.error(doc, (*hpath, "address"), f"'{addr}' is neither an IP address nor a host name",
                            "e.g. 10.240.16.10 or si-app-01.hrss.gov.cn")
                ep = (addr, int(host.get("port", 22)))
                if ep in endpoints:
                    f.warn(doc, (*hpath, "address"), f"{addr}:{ep[1]} is also listed at {endpoints[ep].where()}",
                           "two inventory hosts share one SSH endpoint; is that intended?")
                else:
                    endpoints[ep] = _Defined(doc, (*hpath, "address"))
                f.items.extend(check_host_databases(doc, hpath, host))
            f.items.extend(check_system_services(doc, ("systems", i), system))
    known = sorted(systems)
    for doc in departments:
        for i, system in enumerate(doc.data["systems"]):
            seen: set[str] = set()
            for j, dep in enumerate(system.get("depends_on", [])):
                path: tuple[PathElem, ...] = ("systems", i, "depends_on", j)
                if dep == system["id"]:
                    f.error(doc, path, f"system '{dep}' depends on itself", "remove it from depends_on")
                elif dep not in systems and dep not in defined_elsewhere:
                    guess = _did_you_mean(dep, known)
                    hint = (f"did you mean '{guess}'? (defined at {systems[guess].where()})" if guess
                            else "add the system to a department file or remove the dependency")
                    f.error(doc, path, f"unknown system '{dep}'", hint)
                if dep in seen:
                    f.warn(doc, path, f"'{dep}' is listed twice", "remove the repeated entry")
                seen.add(dep)
            window = system["window"]
            if window["start"] == window["end"]:
                f.error(doc, ("systems", i, "window", "end"), f"window starts and ends at {window['start']}",
                        "give the window a length; end before start means it crosses midnight")
    if topology is not None:
        _check_fit(f, topology, departments)
    return f.items


def _valid_address(addr: str) -> bool:
    try:
        ipaddress.ip_address(addr)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(addr)) and not addr.replace(".", "").isdigit()


def _check_fit(f: _Findings, topology: YamlDocument, departments: list[YamlDocument]) -> None:
    regions = topology.data["regions"]
    primary = next((v for v in regions.values() if v["role"] == "primary"), None)
    backup = next((v for v in regions.values() if v["role"] == "backup"), None)
    primary_name = next((k for k, v in regions.items() if v["role"] == "primary"), "")
    pcaps = {s: v["capacity"] for s, v in (primary or {"sites": {}})["sites"].items()}
    bcaps = {s: v["capacity"] for s, v in (backup or {"sites": {}})["sites"].items()}
    sync_pairs = _sync_pairs(topology.data)
    dims = ("vcpus", "ram_gb", "storage_gb")

    def fits(need: dict[str, int], cap: dict[str, int]) -> bool:
        return all(need[d] <= cap[d] for d in dims)

    def largest(caps: dict[str, dict[str, int]]) -> str:
        return ", ".join(f"{d} {max((c[d] for c in caps.values()), default=0)}" for d in dims)

    for doc in departments:
        for i, system in enumerate(doc.data["systems"]):
            path: tuple[PathElem, ...] = ("systems", i, "placement")
            placement = system["placement"]
            res = system["resources"]
            half = {d: -(-res[d] // 2) for d in dims}
            need = f"{res['vcpus']} vCPU, {res['ram_gb']} GB RAM, {res['storage_gb']} GB storage"
            fix = "reduce resources, split the system, or raise the site capacity in topology.yaml"
            if primary is None:
                continue  # reported on topology.yaml
            if placement == "active-active":
                if len(pcaps) < 2:
                    f.error(doc, path, f"active-active needs two sites in the primary region '{primary_name}', it has {len(pcaps)}",
                            "use active-standby or single, or add a site")
                elif sum(1 for c in pcaps.values() if fits(half, c)) < 2:
                    f.error(doc, ("systems", i, "resources"),
                            f"needs {need}, half on each of two {primary_name} sites, but no two sites can hold half "
                            f"(largest site: {largest(pcaps)})", fix)
                elif backup is not None and not any(fits(res, c) for c in bcaps.values()):
                    f.error(doc, ("systems", i, "resources"),
                            f"needs {need} at its disaster-recovery site, more than any backup site holds "
                            f"(largest: {largest(bcaps)})", fix)
            elif placement == "active-standby":
                if backup is None:
                    f.error(doc, path, "active-standby needs a region with role 'backup'", "add one to topology.yaml or use active-active")
                elif not any(fits(res, c) for c in pcaps.values()) or not any(fits(res, c) for c in bcaps.values()):
                    f.error(doc, ("systems", i, "resources"),
                            f"needs {need} in a primary site and again in a backup site, which no site pair can hold "
                            f"(largest primary site: {largest(pcaps)}; largest backup site: {largest(bcaps)})", fix)
            elif not any(fits(res, c) for c in pcaps.values()):
                f.error(doc, ("systems", i, "resources"),
                        f"needs {need} on one site, more than any {primary_name} site holds (largest: {largest(pcaps)})", fix)
            # warnings: legal but suspicious
            if system["classification"] == 4 and placement == "single":
                f.warn(doc, path, "a classification-4 (MLPS level 4) system is placed 'single': one site loss takes it down",
                       "use active-active or active-standby")
            if system["rpo_minutes"] == 0:
                sites = list(pcaps)
                ok = placement == "active-active" and len(sites) >= 2 and (frozenset(sites[:2]) in sync_pairs
                                                                           or frozenset({primary_name}) in sync_pairs)
                if not ok:
                    f.warn(doc, ("systems", i, "rpo_minutes"),
                           f"RPO 0 but placement '{placement}' has no synchronous replication pair",
                           "RPO 0 needs active-active across a sync pair (e.g. gz-a/gz-b); otherwise state the real RPO")


def _sync_pairs(topology: dict[str, Any]) -> set[frozenset[str]]:
    """Site pairs joined by synchronous replication (a region name stands for all its sites)."""
    regions = topology["regions"]
    expand = {r: list(v["sites"]) for r, v in regions.items()}
    pairs: set[frozenset[str]] = set()
    for link in topology.get("replication", []):
        if link["mode"] != "sync":
            continue
        for a in expand.get(link["from"], [link["from"]]):
            for b in expand.get(link["to"], [link["to"]]):
                pairs.add(frozenset({a, b}))
    return pairs
