"""An in-memory EndpointPort for unit tests of the engine and the failover executor.

It keeps the port's contract (compare-and-swap on the current address, idempotent when the name is
already there), so the logic above it is tested without DNS servers; the real name service is tested
against BIND in tests/integration/test_dns.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from govcloud.adapters.ports import ServiceEndpoint
from govcloud.errors import DnsConflictError, DnsError


@dataclass
class MemoryEndpoints:
    names: dict[str, ServiceEndpoint] = field(default_factory=dict)
    switches: list[tuple[str, str | None, str]] = field(default_factory=list)  # (service, from, to)
    unreachable: bool = False  # check() fails, as preflight would against a stopped server
    generation: int = 0

    def check(self) -> None:
        if self.unreachable:
            raise DnsError("DNS server gz-a (10.240.1.53 port 53) cannot be updated: no answer (timeout)",
                           hint="check that the server runs and is reachable from the controller")

    def lookup(self, service: str) -> ServiceEndpoint | None:
        return self.names.get(service)

    def switch(self, service: str, *, address: str, port: int, site: str = "", expect: str | None = None,
               reason: str = "") -> ServiceEndpoint:
        cur = self.names.get(service)
        if cur is not None and cur.address == address:
            return cur  # already there: a rerun after a crash
        actual = None if cur is None else cur.address
        if (expect or None) != actual:
            raise DnsConflictError(f"{service}.svc.test.: expected {expect or '(absent)'}, the servers answer "
                                   f"{actual or '(absent)'}", hint="find out who changed it")
        self.generation += 1
        self.names[service] = ServiceEndpoint(service, address, port, site, self.generation, "", reason)
        self.switches.append((service, actual, address))
        return self.names[service]
