"""Building the name service from a project: the inventory's ``dns`` section and the state directory's key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from govcloud.adapters.dns import DnsClient, default_key_path, load_key
from govcloud.errors import InvalidInputError
from govcloud.adapters.ports import ServiceEndpoint
from govcloud.model import DnsConfig, Inventory
from govcloud.services.names import NameService, SwitchReport
from govcloud.services.provision import state_dir

#: replicated services govcloud names besides the systems (the shared PostgreSQL of failover)
SHARED_SERVICES: tuple[str, ...] = ("pg",)


def zone_of(inventory: Inventory) -> DnsConfig:
    dns = inventory.topology.dns
    if dns is None:
        raise InvalidInputError("topology.yaml has no dns section: govcloud switches service names in a zone, "
                                "and has none to switch them in",
                                hint="add dns: {zone, servers: {SITE: {address}}} to topology.yaml (docs/dns.md)")
    return dns


class DryRunNames:
    """A dry run's endpoint port: the zone must exist (a real run needs it), nothing is asked or switched."""

    def __init__(self, inventory: Inventory) -> None:
        self.config = zone_of(inventory)

    def check(self) -> None:
        """A dry run reads no key and asks no server."""

    def lookup(self, service: str) -> ServiceEndpoint | None:
        return None

    def switch(self, service: str, *, address: str, port: int, site: str = "", expect: str | None = None,
               reason: str = "") -> ServiceEndpoint:
        raise RuntimeError(f"a dry run switches nothing (asked to switch {service})")


def name_service(inventory: Inventory, *, key_file: Path | None = None,
                 on_switch: Callable[[SwitchReport], None] | None = None) -> NameService:
    dns = zone_of(inventory)
    ttls = {s.id: s.ttl_in(dns) for s in inventory.systems}
    client = DnsClient(load_key(key_file or default_key_path(state_dir())))
    return NameService(dns, client, ttl_of=lambda service: ttls.get(service, dns.default_ttl), on_switch=on_switch)


def managed_services(inventory: Inventory) -> list[str]:
    return [*SHARED_SERVICES, *(s.id for s in inventory.systems)]
