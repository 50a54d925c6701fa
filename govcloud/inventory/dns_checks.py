"""Checks of the topology's ``dns`` section beyond its schema: servers in known sites, usable addresses.

Why a separate module: the service zone is its own concern (docs/dns.md), and these rules grow with
it (one server per site, no wildcard listeners, no two servers on one address and port).
"""

from __future__ import annotations

import difflib
import ipaddress
from typing import Any

from govcloud.errors import Diagnostic
from govcloud.inventory.yamlio import PathElem, YamlDocument, format_path


def check_dns(doc: YamlDocument, sites: list[str]) -> list[Diagnostic]:
    """Diagnostics for ``dns`` (empty when absent); ``sites`` are the topology's site names."""
    dns: dict[str, Any] | None = doc.data.get("dns")
    if dns is None:
        return []
    out: list[Diagnostic] = []

    def error(path: tuple[PathElem, ...], message: str, hint: str, *, key: bool = False) -> None:
        out.append(Diagnostic(doc.locate(path, key=key), format_path(path), message, hint))

    seen: dict[tuple[str, int], str] = {}
    servers: dict[str, Any] = dns["servers"]
    for site, server in servers.items():
        where: tuple[PathElem, ...] = ("dns", "servers", site)
        if site not in sites:
            close = difflib.get_close_matches(site, sites, n=1, cutoff=0.6)
            error(where, f"DNS server for unknown site '{site}'",
                  (f"did you mean '{close[0]}'? " if close else "") + f"sites: {', '.join(sorted(sites))}", key=True)
        try:
            addr = ipaddress.ip_address(server["address"])
        except ValueError as exc:
            error((*where, "address"), f"invalid DNS server address '{server['address']}': {exc}",
                  "write the server's own address, e.g. 10.240.1.53")
            continue
        if addr.is_unspecified or addr.is_multicast:
            error((*where, "address"), f"DNS server address {addr} is not one server's address",
                  "name the address the server listens on; servers never listen on every interface")
        endpoint = (str(addr), int(server.get("port", 53)))
        if endpoint in seen:
            error((*where, "address"), f"DNS servers of '{seen[endpoint]}' and '{site}' share {endpoint[0]} port {endpoint[1]}",
                  "give each site's server its own address (or port)")
        seen.setdefault(endpoint, site)
    for site in sorted(set(sites) - set(servers)):
        out.append(Diagnostic(doc.locate(("dns", "servers")), "dns.servers",
                              f"site '{site}' has no DNS server: its clients depend on other sites' servers, and a "
                              "switch cannot reach it", f"add servers: {{{site}: {{address: ...}}}}", severity="warning"))
    return out
