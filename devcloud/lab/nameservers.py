"""Where the lab's service-name servers are, and what each lab host's resolv.conf says (no lab imports:
``hosts`` writes the file when it prepares a host, ``dns`` runs the servers)."""

from __future__ import annotations

from dataclasses import dataclass

ZONE = "svc.gdgov.internal."


@dataclass(frozen=True)
class NameServer:
    site: str
    host: str  # lab host key
    ip: str


#: one authoritative primary per site (inventories/topology.yaml `dns.servers` names the same addresses)
SERVERS: tuple[NameServer, ...] = (
    NameServer("gz-a", "ns-gza", "10.240.1.53"),
    NameServer("gz-b", "ns-gzb", "10.240.2.53"),
    NameServer("st-a", "ns-sta", "10.240.3.53"),
)


def resolv_conf(site: str) -> str:
    """The host's own site's server first, then the others: names resolve while any one site is down.

    ``timeout:1 attempts:2`` keeps a lookup through a dead first server to about a second.
    """
    ordered = sorted(SERVERS, key=lambda s: (s.site != site, s.site))
    lines = [f"# lab host in {site}: service names from its own site's server first (devcloud/lab/dns.py)",
             *(f"nameserver {s.ip}" for s in ordered), f"search {ZONE.rstrip('.')}", "options timeout:1 attempts:2"]
    return "\n".join(lines) + "\n"
