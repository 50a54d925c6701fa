"""Building the name service from a project: the inventory's ``dns`` section and the state directory's key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from govcloud.adapters.dns import DnsClient, default_key_path, load_key
from govcloud.errors import DnsError
from govcloud.model import Inventory
from govcloud.services.names import NameService, SwitchReport
from govcloud.services.provision import state_dir

#: replicated services govcloud names besides the systems (the shared PostgreSQL of failover)
SHARED_SERVICES: tuple[str, ...] = ("pg",)


def name_service(inventory: Inventory, *, key_file: Path | None = None,
                 on_switch: Callable[[SwitchReport], None] | None = None) -> NameService:
    dns = inventory.topology.dns
    if dns is None:
        raise DnsError("topology.yaml has no dns section: govcloud has no zone to switch names in",
                       hint="add dns: {zone, servers} (docs/dns.md)")
    ttls = {s.id: s.ttl_in(dns) for s in inventory.systems}
    client = DnsClient(load_key(key_file or default_key_path(state_dir())))
    return NameService(dns, client, ttl_of=lambda service: ttls.get(service, dns.default_ttl), on_switch=on_switch)


def managed_services(inventory: Inventory) -> list[str]:
    return [*SHARED_SERVICES, *(s.id for s in inventory.systems)]
