"""Checks of the sites' ``probe`` hosts beyond the schema: usable addresses, one site per endpoint.

Why: the exporter's site verdicts are a quorum of what each site sees of the others; two sites probed
at one endpoint would vote for each other, and a site with no probe host is simply not observed (a
warning, since a loss there would go unseen).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from govcloud.errors import Diagnostic
from govcloud.inventory.yamlio import PathElem, YamlDocument, format_path


def check_probes(doc: YamlDocument) -> list[Diagnostic]:
    """Diagnostics for every ``regions.<r>.sites.<s>.probe`` (none when no site declares one)."""
    out: list[Diagnostic] = []
    declared: list[tuple[str, str]] = []  # (region, site) with a probe
    missing: list[tuple[str, str]] = []
    seen: dict[tuple[str, int], str] = {}
    regions: dict[str, Any] = doc.data.get("regions") or {}
    for rname, region in regions.items():
        for sname, site in (region.get("sites") or {}).items():
            probe = site.get("probe")
            if probe is None:
                missing.append((rname, sname))
                continue
            declared.append((rname, sname))
            where: tuple[PathElem, ...] = ("regions", rname, "sites", sname, "probe", "address")
            try:
                addr = ipaddress.ip_address(probe["address"])
            except ValueError as exc:
                out.append(Diagnostic(doc.locate(where), format_path(where),
                                      f"invalid probe address '{probe['address']}': {exc}",
                                      "write the probe host's own address, e.g. 10.240.1.11"))
                continue
            if addr.is_unspecified or addr.is_multicast or addr.is_loopback:
                out.append(Diagnostic(doc.locate(where), format_path(where),
                                      f"probe address {addr} is not one host's address on the site's network",
                                      "name the address the site's probe host answers on"))
            endpoint = (str(addr), int(probe.get("port", 22)))
            if endpoint in seen:
                out.append(Diagnostic(doc.locate(where), format_path(where),
                                      f"sites '{seen[endpoint]}' and '{sname}' share the probe endpoint "
                                      f"{endpoint[0]} port {endpoint[1]}",
                                      "give each site a probe host of its own, inside that site"))
            seen.setdefault(endpoint, sname)
    if declared:
        for rname, sname in missing:
            where = ("regions", rname, "sites", sname)
            out.append(Diagnostic(doc.locate(where, key=True), format_path(where),
                                  f"site '{sname}' declares no probe host: it is not observed, and its loss "
                                  "would go unseen by the exporter", "add probe: {host: ..., address: ...}",
                                  severity="warning"))
    return out
