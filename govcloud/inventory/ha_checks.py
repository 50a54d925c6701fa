"""Checks of ``ha.postgres`` beyond its schema: sites that exist, usable and unique hosts, Patroni's limits.

Why here: a database host in a site the topology lacks, or a ``ttl`` Patroni silently raises, would
be found by ``govcloud ha deploy`` on live hosts, or worse by the first failover drill. Found here,
each is a line to fix. The shape that follows from a valid section (which cluster, which etcd ring)
is ``govcloud.failover.shape``'s, with its degradations; this module only judges the input.
"""

from __future__ import annotations

import difflib
import ipaddress
from typing import Any, Protocol

from govcloud.errors import Diagnostic
from govcloud.inventory.yamlio import PathElem, YamlDocument, format_path
from govcloud.model.ha import PATRONI_MIN_TTL_S, PatroniSettings

Path_ = tuple[PathElem, ...]
_BASE = ("ha", "postgres")


class _Report(Protocol):
    def __call__(self, path: Path_, message: str, hint: str, *, key: bool = False) -> None: ...


def check_ha(doc: YamlDocument, site_region: dict[str, str]) -> list[Diagnostic]:
    """Diagnostics for ``ha.postgres`` of a schema-valid topology (none when it declares none).

    ``site_region`` maps every site the regions declare to its region."""
    pg: dict[str, Any] | None = (doc.data.get("ha") or {}).get("postgres")
    if pg is None:
        return []
    out: list[Diagnostic] = []

    def error(path: Path_, message: str, hint: str, *, key: bool = False) -> None:
        out.append(Diagnostic(doc.locate(path, key=key), format_path(path), message, hint))

    _check_hosts(pg, site_region, error)
    regions = {site_region[s] for s in pg["hosts"] if s in site_region}
    primary = [r for r, region in (doc.data.get("regions") or {}).items() if region.get("role") == "primary"]
    if primary and primary[0] not in regions:
        error((*_BASE, "hosts"), f"no database host in the primary region '{primary[0]}': the cluster that takes "
              "the writes would have no member", f"name a database host in a site of region '{primary[0]}' "
              f"({', '.join(s for s, r in sorted(site_region.items()) if r == primary[0])})", key=True)
    _check_patroni(pg.get("patroni") or {}, error)
    if not doc.data.get("dns"):
        error((*_BASE, "name"), f"'{pg['name']}' is a service name, but the topology declares no dns zone",
              "add dns: {zone: ..., servers: ...}: clients find the Patroni leader by <name>.<zone>")
    return out


def _check_hosts(pg: dict[str, Any], site_region: dict[str, str], error: _Report) -> None:
    names: dict[str, Path_] = {}
    addresses: dict[str, Path_] = {}
    for site, listed in pg["hosts"].items():
        if site not in site_region:
            close = difflib.get_close_matches(site, list(site_region), n=1)
            error((*_BASE, "hosts", site), f"database hosts in site '{site}', which no region declares",
                  (f"did you mean '{close[0]}'? " if close else "") + f"sites: {', '.join(sorted(site_region))}",
                  key=True)
        for i, h in enumerate(listed):
            path: Path_ = (*_BASE, "hosts", site, i)
            if h["name"] in names:
                error((*path, "name"), f"database host '{h['name']}' is listed twice", "list each host once, "
                      "under the site it stands in")
            names.setdefault(h["name"], path)
            try:
                addr = ipaddress.ip_address(h["address"])
            except ValueError as exc:
                error((*path, "address"), f"invalid address '{h['address']}': {exc}", "e.g. 10.240.1.21")
                continue
            if addr.is_loopback or addr.is_unspecified or addr.is_multicast:
                error((*path, "address"), f"address {addr} of '{h['name']}' is not one host's address on its "
                      "site's network", "Patroni and etcd members reach each other there: name the host's own address")
            elif str(addr) in addresses:
                error((*path, "address"), f"'{h['name']}' and another database host share address {addr}",
                      "give each database host its own address")
            addresses.setdefault(str(addr), path)


def _check_patroni(p: dict[str, Any], error: _Report) -> None:
    base = PatroniSettings()
    ttl = int(p.get("ttl_s", base.ttl_s))
    loop = int(p.get("loop_wait_s", base.loop_wait_s))
    retry = int(p.get("retry_timeout_s", base.retry_timeout_s))
    where: Path_ = (*_BASE, "patroni")
    if ttl < PATRONI_MIN_TTL_S:
        error((*where, "ttl_s"), f"ttl_s {ttl} is below Patroni's minimum of {PATRONI_MIN_TTL_S} s (Patroni would "
              f"silently use {PATRONI_MIN_TTL_S})", f"write ttl_s: {PATRONI_MIN_TTL_S} or more; govcloud's "
              "accelerator (ha.postgres.accelerator) is what shortens a failover")
    elif loop + 2 * retry > ttl:
        at = "loop_wait_s" if "loop_wait_s" in p else ("retry_timeout_s" if "retry_timeout_s" in p else "ttl_s")
        error((*where, at), f"loop_wait_s {loop} + 2 x retry_timeout_s {retry} exceeds ttl_s {ttl}: a member could "
              "lose its leader key while still retrying", "Patroni needs loop_wait + 2 * retry_timeout <= ttl")
