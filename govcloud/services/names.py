"""Service names switched in the real zone: compare-and-swap on every site's server (docs/dns.md).

Why a service of its own: migration cutover and rollback, and PostgreSQL failover and failback, all
end by moving a name, and they must move it the same way. ``NameService`` plans each switch from what
the servers answer (``govcloud.dns.switch``), sends one signed update per server that needs it, and
returns only once every reachable server answers the new address, asked directly. It implements the
engine's ``EndpointPort``, so the steps do not know whether a name or a file moved.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from govcloud.adapters.dns import NameServers, UpdateResult
from govcloud.adapters.ports import ServiceEndpoint
from govcloud.dns.stale import Freshness, ServerGeneration, classify, repair_for
from govcloud.dns.switch import (
    Answer,
    RecordChange,
    ServerPlan,
    SwitchPlan,
    complete,
    lagging,
    plan_switch,
)
from govcloud.errors import DnsConflictError, DnsError
from govcloud.model import DnsConfig, DnsServer

log = logging.getLogger(__name__)

CONVERGE_TIMEOUT_S = 10.0
POLL_S = 0.01
GENERATION_ATTEMPTS = 5  # rereads when only the zone's generation moved (another name's switch)


@dataclass(frozen=True)
class SwitchReport:
    """What one switch did, for the journal, the audit log and the metrics (no secrets)."""

    name: str
    expected: str | None
    new: str
    generation: int
    sent: tuple[str, ...]  # sites updated now
    already: tuple[str, ...]  # sites that answered the new address before anything was sent
    unreachable: tuple[str, ...]  # sites skipped: stale until repaired
    seconds: float  # from the first update until every reachable server answered the new address

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "expected": self.expected, "new": self.new, "generation": self.generation,
                "sent": list(self.sent), "already": list(self.already), "unreachable": list(self.unreachable),
                "seconds": round(self.seconds, 4)}


@dataclass(frozen=True)
class ServerStatus:
    site: str
    address: str
    generation: int | None
    freshness: Freshness
    error: str = ""


@dataclass
class NameService:
    """The zone's names as the engine's endpoint port; ``on_switch`` receives every report (and refusal)."""

    config: DnsConfig
    servers: NameServers
    ttl_of: Callable[[str], int] = field(default=lambda _service: 30)
    on_switch: Callable[[SwitchReport], None] | None = None
    converge_timeout: float = CONVERGE_TIMEOUT_S
    # one switch at a time per process: each takes the next generation, and two switches sharing one
    # would hide a server that missed either (several controllers: issue 17)
    _switching: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _last_answering: str = field(default="", init=False, repr=False)  # the site whose server ``resolve`` reached last

    def _each(self, fn: Callable[[DnsServer], Answer]) -> list[Answer]:
        with ThreadPoolExecutor(max_workers=len(self.config.servers)) as pool:
            return list(pool.map(fn, self.config.servers))

    def answers(self, service: str) -> list[Answer]:
        fqdn = self.config.name_of(service)
        return self._each(lambda s: self.servers.answer(s, fqdn))

    def generations(self) -> list[ServerGeneration]:
        with ThreadPoolExecutor(max_workers=len(self.config.servers)) as pool:
            gens = list(pool.map(lambda s: self.servers.generation(s, self.config.zone), self.config.servers))
        return [ServerGeneration(s.site, g) for s, g in zip(self.config.servers, gens)]

    def survey(self, service: str) -> tuple[list[ServerGeneration], list[Answer]]:
        """Every server's generation and answer for ``service``, all asked at once: a server that is down
        costs one query timeout, not one per question (a failover's switch waits for it)."""
        fqdn, servers = self.config.name_of(service), self.config.servers
        with ThreadPoolExecutor(max_workers=2 * len(servers)) as pool:
            gen_futures = [pool.submit(self.servers.generation, s, self.config.zone) for s in servers]
            answer_futures = [pool.submit(self.servers.answer, s, fqdn) for s in servers]
            gens = [ServerGeneration(s.site, f.result()) for s, f in zip(servers, gen_futures)]
            return gens, [f.result() for f in answer_futures]

    def resolve(self, service: str) -> frozenset[str] | None:
        """What a client gets: unsigned (a withdrawn server refuses), the servers in order, starting with
        the one that answered last (a stub resolver that sticks to a working server, as systemd-resolved
        does, instead of waiting for a dead first server on every lookup)."""
        fqdn = self.config.name_of(service)
        order = sorted(self.config.servers, key=lambda s: s.site != self._last_answering)
        for server in order:
            addresses = self.servers.resolve([server], fqdn)
            if addresses is not None:
                self._last_answering = server.site
                return addresses
        return None

    # ---------------------------------------------------------------- checks
    def preflight(self) -> None:
        """Every server reachable, serving the zone, and accepting the key: an update holding only a
        prerequisite (changes nothing). Raises DnsError naming the server and the reason."""
        def probe(s: DnsServer) -> tuple[DnsServer, UpdateResult | DnsError]:
            try:
                return s, self.servers.probe(s, self.config.zone)
            except DnsError as exc:
                return s, exc

        with ThreadPoolExecutor(max_workers=len(self.config.servers)) as pool:
            results = list(pool.map(probe, self.config.servers))
        problems: list[str] = []
        hints: list[str] = []
        for s, res in results:
            if isinstance(res, DnsError):
                problems.append(res.message)
                hints.append(res.hint)
            elif res.rcode == "NOTAUTH":
                problems.append(f"DNS server {s.site} ({s.address} port {s.port}) does not serve zone {self.config.zone} (NOTAUTH)")
                hints.append("load the zone on that server, or fix dns.zone in topology.yaml")
            elif not res.ok:
                problems.append(f"DNS server {s.site} ({s.address} port {s.port}) answered {res.rcode} to a "
                                f"prerequisite-only update of {self.config.zone}")
                hints.append("check the server's update-policy for the key")
        if problems:
            raise DnsError("; ".join(problems), hint=next((h for h in hints if h), ""))

    # ---------------------------------------------------------------- EndpointPort
    def check(self) -> None:
        self.preflight()

    def lookup(self, service: str) -> ServiceEndpoint | None:
        """What clients resolve now: the address the freshest answering server holds (None if absent)."""
        gen_list, answers = self.survey(service)
        gens = {g.site: g.generation or 0 for g in gen_list}
        held = sorted(((gens.get(a.server.site, 0), a) for a in answers if a.addresses), key=lambda x: -x[0])
        if not held:
            return None
        gen, best = held[0]
        assert best.addresses
        return ServiceEndpoint(service=service, address=min(best.addresses), port=0, site=best.server.site,
                               version=gen, updated_at=datetime.now(UTC).isoformat(timespec="seconds"))

    def switch(self, service: str, *, address: str, port: int, site: str = "", expect: str | None = None,
               reason: str = "") -> ServiceEndpoint:
        """Compare-and-swap ``service`` from ``expect`` ("" or None: absent) to ``address`` on every server.

        Fenced by the zone's generation too: every update also requires the generation it was planned
        from, and the first server is updated alone before the others, so that of two writers (two
        processes, two controllers) that read the same generation exactly one writes the next; the other
        reads again, and is refused if its name moved, or takes the generation after when only another
        name did."""
        change = RecordChange(self.config.zone, service, expect or None, address, self.ttl_of(service))
        with self._switching:
            for _attempt in range(GENERATION_ATTEMPTS):
                gens, answers = self.survey(service)
                repaired, newest = self._repair(gens)  # a server that missed switches is made current before it is compared
                if repaired or any(g.generation is not None and g.generation != newest for g in gens):
                    gens, answers = self.survey(service)  # repaired, by us or meanwhile by another writer
                plan = plan_switch(change, answers)
                if plan.refused:
                    raise DnsConflictError(plan.refusal(), hint=_refusal_hint(plan))
                report = self._apply(plan, {g.site: g.generation for g in gens}, newest)
                if report is not None:
                    break
            else:
                raise DnsConflictError(f"{change.fqdn}: the zone's generation moved {GENERATION_ATTEMPTS} times while "
                                       "it was being switched; nothing was changed",
                                       hint="other writers are switching names without pause: find them, then re-run")
        log.info("%s: %s (%s)", service, change.describe(), reason or "no reason given")
        if self.on_switch is not None:
            self.on_switch(report)
        return ServiceEndpoint(service=service, address=address, port=port, site=site, version=report.generation,
                               updated_at=datetime.now(UTC).isoformat(timespec="seconds"), reason=reason)

    def _claim(self, change: RecordChange, first: ServerPlan, previous: int | None, generation: int) -> bool:
        """Update the first server alone: the generation's arbiter. False when only the generation moved
        (read again and retry); a moved name is a conflict, with nothing changed anywhere."""
        r = self.servers.switch(first.server, change, generation, previous)
        if r.ok:
            return True
        if not r.prerequisite_failed:
            raise DnsError(f"DNS server {r.server.site} answered {r.rcode} to the update of {change.fqdn}",
                           hint="see the server's log; nothing was changed, the switch can be re-run")
        now = self.servers.answer(first.server, change.fqdn).addresses
        if now == (frozenset() if change.expected is None else frozenset({change.expected})):
            return False  # another writer took generation ``generation`` for another name
        raise DnsConflictError(f"{change.fqdn} changed on {first.server.site} while it was being switched: it now "
                               f"answers {', '.join(sorted(now)) if now else 'nothing'}, not {change.expected or '(absent)'}; "
                               "nothing was changed", hint="someone else switched this name first: find out who "
                                                           "(govcloud dns status), then re-run if still wanted")

    def _follow(self, change: RecordChange, server: DnsServer, generation: int) -> bool:
        """After the arbiter took ``generation``, a server that refused because its generation moved
        meanwhile (another writer's switch of another name, or its repair, landed there first) gets the
        update again on the generation it holds now, keeping the higher one. True once it answers our
        address; False when the name itself moved there (a real conflict)."""
        expected = frozenset() if change.expected is None else frozenset({change.expected})
        for _attempt in range(GENERATION_ATTEMPTS):
            now = self.servers.answer(server, change.fqdn).addresses
            if now == frozenset({change.new}):
                return True  # repaired from the arbiter meanwhile: the state we wanted
            if now != expected:
                return False
            held = self.servers.generation(server, change.zone)
            if held is None:
                return False
            if self.servers.switch(server, change, max(generation, held), held).ok:
                return True
        return False

    def _apply(self, plan: SwitchPlan, previous: dict[str, int | None], newest: int) -> SwitchReport | None:
        change = plan.change
        generation = newest + 1 if plan.to_send else newest
        t0 = time.monotonic()
        ordered = sorted(plan.to_send, key=lambda p: previous.get(p.server.site) is None)  # a known generation first
        if ordered and not self._claim(change, ordered[0], previous.get(ordered[0].server.site), generation):
            return None
        rest = ordered[1:]
        with ThreadPoolExecutor(max_workers=max(1, len(rest))) as pool:
            results = list(pool.map(lambda p: self.servers.switch(p.server, change, generation,
                                                                  previous.get(p.server.site)), rest))
        races = [r for r in results if r.prerequisite_failed and not self._follow(change, r.server, generation)]
        failed = [r for r in results if not r.ok and not r.prerequisite_failed]
        if failed:
            raise DnsError("; ".join(f"DNS server {r.server.site} answered {r.rcode} to the update of {change.fqdn}"
                                     for r in failed), hint="see the server's log; the switch can be re-run")
        if races:
            sites = ", ".join(r.server.site for r in races)
            raise DnsConflictError(f"{change.fqdn} changed on {sites} while it was being switched (prerequisite "
                                   f"{change.expected or '(absent)'} or generation {newest} failed there)",
                                   hint="someone else is switching this name: find out who, then re-run")
        deadline = t0 + self.converge_timeout
        sent = [p.server for p in plan.to_send]  # the others already answer it, or are down (stale until repaired)
        while sent:
            with ThreadPoolExecutor(max_workers=len(sent)) as pool:
                answers = list(pool.map(lambda srv: self.servers.answer(srv, change.fqdn), sent))
            if complete(change, answers):
                break
            if time.monotonic() > deadline:
                raise DnsError(f"{change.fqdn}: {', '.join(lagging(change, answers))} still answer the old address "
                               f"{self.converge_timeout:.0f} s after the update", hint="check those servers' logs")
            time.sleep(POLL_S)  # the servers have no change push: poll with a deadline
        steps = {p.server.site: p.step.value for p in plan.servers}
        return SwitchReport(change.fqdn, change.expected, change.new, generation,
                            tuple(s for s, v in steps.items() if v == "send"),
                            tuple(s for s, v in steps.items() if v == "done"),
                            tuple(s for s, v in steps.items() if v == "unreachable"),
                            time.monotonic() - t0)

    # ---------------------------------------------------------------- stale servers
    def repair(self) -> tuple[str, ...]:
        """Bring every stale reachable server to a current server's names (docs/dns.md); the sites repaired."""
        return self._repair()[0]

    def _repair(self, gens: list[ServerGeneration] | None = None) -> tuple[tuple[str, ...], int]:
        """The sites repaired, and the zone's newest generation (``gens``: as just asked, else asked now)."""
        gens = self.generations() if gens is None else gens
        newest = max((g.generation or 0 for g in gens), default=0)
        fresh = classify(newest, gens)
        stale = [g for g in gens if fresh[g.site] is Freshness.STALE]
        current = next((g for g in gens if fresh[g.site] is Freshness.CURRENT), None)
        if not stale or current is None:
            return (), newest
        source = self.servers.records(self.config.server(current.site), self.config.zone)
        done = []
        for g in stale:
            srv = self.config.server(g.site)
            fix = repair_for(g.site, source, self.servers.records(srv, self.config.zone), g.generation or 0, newest)
            result = self.servers.repair(srv, self.config.zone, fix.stale_generation, fix.wanted, fix.remove,
                                         fix.generation)
            if not result.ok and result.prerequisite_failed and self.servers.generation(srv, self.config.zone) == newest:
                log.info("DNS server %s was repaired meanwhile (by its guard)", g.site)
                continue
            if not result.ok:
                raise DnsError(f"DNS server {g.site} could not be repaired from {current.site}: {result.rcode}",
                               hint="another switch or repair ran at the same time: re-run")
            log.info("DNS server %s repaired from %s: %d name(s) set, %d removed, generation %d -> %d", g.site,
                     current.site, len(fix.wanted), len(fix.remove), fix.stale_generation, fix.generation)
            done.append(g.site)
        return tuple(done), newest

    # ---------------------------------------------------------------- status
    def status(self) -> list[ServerStatus]:
        gens = self.generations()
        newest = max((g.generation or 0 for g in gens), default=0)
        fresh = classify(newest, gens)
        return [ServerStatus(s.site, s.address, g.generation, fresh[s.site],
                             "" if g.generation is not None else "no answer")
                for s, g in zip(self.config.servers, gens)]


def _refusal_hint(plan: SwitchPlan) -> str:
    if plan.conflicts:
        return (f"find out who changed {plan.change.fqdn}; to take it over, set it back to "
                f"{plan.change.expected or '(absent)'} on every server, then re-run")
    return "start the DNS servers (devcloud lab dns status), then re-run"


@dataclass(frozen=True)
class RecordStatus:
    """One managed name as every server answers it."""

    name: str
    ttl: int
    answers: dict[str, list[str] | None]  # site -> addresses (None: no answer)

    @property
    def address(self) -> str | None:
        held = {tuple(a) for a in self.answers.values() if a}
        return held.pop()[0] if len(held) == 1 else None

    @property
    def agree(self) -> bool:
        reachable = [tuple(a) for a in self.answers.values() if a is not None]
        return bool(reachable) and len(set(reachable)) == 1 and all(len(a) == 1 for a in reachable)

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "address": self.address, "ttl": self.ttl, "agree": self.agree,
                "servers": self.answers}


def records_status(names: NameService, services: list[str]) -> list[RecordStatus]:
    """Every name of ``services`` that some server holds, with each server's answer."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        per_service = list(pool.map(names.answers, services))
    out = []
    for service, answers in zip(services, per_service):
        if not any(a.addresses for a in answers):
            continue
        out.append(RecordStatus(names.config.name_of(service), names.ttl_of(service),
                                {a.server.site: None if a.addresses is None else sorted(a.addresses) for a in answers}))
    return out
