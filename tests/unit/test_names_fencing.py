"""Fenced name switches (issue 31, check 2, the unit half): two writers that read the same generation.

The servers here are an in-memory stand-in for the NameServers port that applies RFC 2136
prerequisites as BIND does (every one must hold, or nothing changes); it exists to force the one
interleaving that matters, both writers surveying before either updates, on every run. The same
races run against the lab's real BIND 9 servers in tests/integration/test_dns.py.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from govcloud.adapters.dns import UpdateResult
from govcloud.dns.switch import Answer, RecordChange
from govcloud.errors import DnsConflictError
from govcloud.model import DnsConfig, DnsServer
from govcloud.services.names import NameService

ZONE = "svc.example."
SERVERS = (DnsServer("gz-a", "10.0.1.53"), DnsServer("gz-b", "10.0.2.53"), DnsServer("st-a", "10.0.3.53"))


class Zone:
    """Three servers' names and generations; one lock per server, as a server applies one update at a time."""

    def __init__(self) -> None:
        self.names: dict[str, dict[str, str]] = {s.site: {} for s in SERVERS}
        self.gen: dict[str, int | None] = {s.site: None for s in SERVERS}  # None: no generation record yet
        self.locks = {s.site: threading.Lock() for s in SERVERS}

    def answer(self, server: DnsServer, fqdn: str) -> Answer:
        label = fqdn.removesuffix("." + ZONE)
        a = self.names[server.site].get(label)
        return Answer(server, frozenset({a}) if a else frozenset())

    def generation(self, server: DnsServer, zone: str) -> int | None:
        return self.gen[server.site] or 0

    def switch(self, server: DnsServer, change: RecordChange, generation: int, previous: int | None) -> UpdateResult:
        with self.locks[server.site]:
            held = self.names[server.site].get(change.label)
            if held != change.expected:
                return UpdateResult(server, "NXRRSET" if change.expected else "YXRRSET")
            if previous is not None and (self.gen[server.site] or 0) != previous:
                return UpdateResult(server, "NXRRSET")
            self.names[server.site][change.label] = change.new
            self.gen[server.site] = generation
            return UpdateResult(server, "NOERROR")

    def records(self, server: DnsServer, zone: str) -> dict[str, tuple[frozenset[str], int]]:
        return {k: (frozenset({v}), 5) for k, v in self.names[server.site].items()}

    def repair(self, server: DnsServer, zone: str, stale_generation: int, wanted: dict[str, tuple[str, int]],
               remove: tuple[str, ...], generation: int) -> UpdateResult:
        with self.locks[server.site]:
            if (self.gen[server.site] or 0) != stale_generation:
                return UpdateResult(server, "NXRRSET")
            for label, (address, _ttl) in wanted.items():
                self.names[server.site][label] = address
            for label in remove:
                self.names[server.site].pop(label, None)
            self.gen[server.site] = generation
            return UpdateResult(server, "NOERROR")

    def serving(self, server: DnsServer, zone: str) -> bool | None:
        return True

    def resolve(self, servers: Sequence[DnsServer], fqdn: str) -> frozenset[str] | None:
        return self.answer(servers[0], fqdn).addresses

    def probe(self, server: DnsServer, zone: str) -> UpdateResult:
        return UpdateResult(server, "NOERROR")


class Together:
    """Each writer's first update waits until both writers have surveyed: the interleaving forced."""

    def __init__(self, zone: Zone, barrier: threading.Barrier) -> None:
        self.zone, self.barrier, self.waited = zone, barrier, False

    def __getattr__(self, name: str) -> object:
        return getattr(self.zone, name)

    def switch(self, server: DnsServer, change: RecordChange, generation: int, previous: int | None) -> UpdateResult:
        if not self.waited:
            self.waited = True
            self.barrier.wait(timeout=10)
        return self.zone.switch(server, change, generation, previous)


def race(zone: Zone, jobs: list[tuple[str, str | None, str]]) -> list[str]:
    barrier = threading.Barrier(len(jobs))

    def one(job: tuple[str, str | None, str]) -> str:
        label, expect, new = job
        names = NameService(DnsConfig(ZONE, SERVERS), Together(zone, barrier))  # type: ignore[arg-type]
        try:
            return f"won {names.switch(label, address=new, port=5432, expect=expect).version}"
        except DnsConflictError as exc:
            return f"refused: {exc.message}"

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(one, jobs))


@pytest.mark.parametrize("repeat", range(20))
def test_two_writers_of_one_name_one_wins_the_other_is_refused_with_nothing_changed(repeat: int) -> None:
    zone = Zone()
    NameService(DnsConfig(ZONE, SERVERS), zone).switch("pg", address="10.1.0.1", port=5432)  # type: ignore[arg-type]
    said = race(zone, [("pg", "10.1.0.1", "10.1.0.2"), ("pg", "10.1.0.1", "10.1.0.3")])
    assert sorted(s.split(":")[0].split()[0] for s in said) == ["refused", "won"], said
    winner = "10.1.0.2" if said[0].startswith("won") else "10.1.0.3"
    assert {site: names["pg"] for site, names in zone.names.items()} == {s.site: winner for s in SERVERS}
    assert set(zone.gen.values()) == {2}
    assert "nothing was changed" in next(s for s in said if s.startswith("refused"))


@pytest.mark.parametrize("repeat", range(20))
def test_two_writers_of_two_names_take_the_next_two_generations(repeat: int) -> None:
    zone = Zone()
    said = race(zone, [("a", None, "10.1.0.1"), ("b", None, "10.1.0.2")])
    assert sorted(said) == ["won 1", "won 2"], said
    assert all(names == {"a": "10.1.0.1", "b": "10.1.0.2"} for names in zone.names.values()), zone.names
    assert set(zone.gen.values()) == {2}


def test_without_the_generation_prerequisite_both_writers_would_write_the_same_generation() -> None:
    """The fence's reason: a server that ignored ``previous`` (the update before this change) let two
    writers of different names both write generation 1, so a server that missed one of them could
    not be told from a current one."""
    zone, unfenced = Zone(), Zone()
    original = unfenced.switch

    def ignore_previous(server: DnsServer, change: RecordChange, generation: int,
                        previous: int | None) -> UpdateResult:
        return original(server, change, generation, None)

    unfenced.switch = ignore_previous  # type: ignore[method-assign]
    assert sorted(race(unfenced, [("a", None, "10.1.0.1"), ("b", None, "10.1.0.2")])) == ["won 1", "won 1"]
    assert sorted(race(zone, [("a", None, "10.1.0.1"), ("b", None, "10.1.0.2")])) == ["won 1", "won 2"]
