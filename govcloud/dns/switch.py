"""The plan for one name switch, decided from what each server answers now (pure, no I/O).

Why it is planned per server: every site runs its own primary of the service zone (docs/dns.md), so a
switch is one compare-and-swap update per reachable server. What a server answers before anything is
sent decides what is sent to it:

- it already answers the new address: nothing (a resumed run never re-sends a switch);
- it answers the address govcloud expects: the update, with the RFC 2136 prerequisite "RRset exists
  (value dependent)" for that address, so a change made in between makes the server refuse it;
- it answers anything else: someone else changed the record. The whole switch is refused before any
  server is touched, naming the record, the expected and the actual value;
- it does not answer: it is skipped and recorded as stale (``govcloud.dns.stale``); the switch goes on
  while at least one server takes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from govcloud.model import DnsServer


@dataclass(frozen=True)
class RecordChange:
    """Move one name (``label`` in ``zone``) from ``expected`` to ``new``.

    ``expected`` None means the name must not exist yet (the first publication of a system's name).
    """

    zone: str
    label: str
    expected: str | None
    new: str
    ttl: int

    @property
    def fqdn(self) -> str:
        return f"{self.label}.{self.zone}"

    def describe(self) -> str:
        return f"{self.fqdn} {self.expected or '(absent)'} -> {self.new} (TTL {self.ttl} s)"


@dataclass(frozen=True)
class Answer:
    """What one server answered for the name, asked directly: its A addresses, or None if it did not answer."""

    server: DnsServer
    addresses: frozenset[str] | None
    error: str = ""  # why it did not answer (timeout, refused, ...)


class ServerStep(StrEnum):
    SEND = "send"  # send the compare-and-swap update
    DONE = "done"  # already answers the new address
    UNREACHABLE = "unreachable"  # skipped; stale until reconciled
    CONFLICT = "conflict"  # holds a value nobody expected: the switch is refused


@dataclass(frozen=True)
class ServerPlan:
    server: DnsServer
    step: ServerStep
    actual: frozenset[str] | None
    detail: str = ""


@dataclass(frozen=True)
class SwitchPlan:
    change: RecordChange
    servers: tuple[ServerPlan, ...]

    @property
    def conflicts(self) -> tuple[ServerPlan, ...]:
        return tuple(p for p in self.servers if p.step is ServerStep.CONFLICT)

    @property
    def to_send(self) -> tuple[ServerPlan, ...]:
        return tuple(p for p in self.servers if p.step is ServerStep.SEND)

    @property
    def unreachable(self) -> tuple[ServerPlan, ...]:
        return tuple(p for p in self.servers if p.step is ServerStep.UNREACHABLE)

    @property
    def reachable(self) -> tuple[ServerPlan, ...]:
        return tuple(p for p in self.servers if p.step is not ServerStep.UNREACHABLE)

    @property
    def refused(self) -> bool:
        """Refused as a whole: a server holds an unexpected value, or no server can take the switch."""
        return bool(self.conflicts) or not self.reachable

    def refusal(self) -> str:
        """One sentence naming the record, the expected and the actual values (empty if not refused)."""
        c = self.change
        if self.conflicts:
            parts = [f"{p.server.site} answers {_show(p.actual)}" for p in self.conflicts]
            return (f"{c.fqdn} was changed outside govcloud: expected {c.expected or '(absent)'}, "
                    f"{'; '.join(parts)}; nothing was changed")
        if not self.reachable:
            why = "; ".join(f"{p.server.site}: {p.detail or 'no answer'}" for p in self.servers)
            return f"{c.fqdn}: no DNS server answers ({why}); nothing was changed"
        return ""


def _show(addresses: frozenset[str] | None) -> str:
    if addresses is None:
        return "nothing"
    return ", ".join(sorted(addresses)) if addresses else "(absent)"


def plan_switch(change: RecordChange, answers: Sequence[Answer]) -> SwitchPlan:
    """The per-server steps of ``change`` given each server's current answer."""
    plans: list[ServerPlan] = []
    expected = frozenset() if change.expected is None else frozenset({change.expected})
    for a in answers:
        if a.addresses is None:
            plans.append(ServerPlan(a.server, ServerStep.UNREACHABLE, None, a.error))
        elif a.addresses == frozenset({change.new}):
            plans.append(ServerPlan(a.server, ServerStep.DONE, a.addresses))
        elif a.addresses == expected:
            plans.append(ServerPlan(a.server, ServerStep.SEND, a.addresses))
        else:
            plans.append(ServerPlan(a.server, ServerStep.CONFLICT, a.addresses))
    return SwitchPlan(change, tuple(plans))


def complete(change: RecordChange, answers: Sequence[Answer]) -> bool:
    """A switch is complete when every server that answers, answers the new address (and one does)."""
    reachable = [a for a in answers if a.addresses is not None]
    return bool(reachable) and all(a.addresses == frozenset({change.new}) for a in reachable)


def lagging(change: RecordChange, answers: Sequence[Answer]) -> tuple[str, ...]:
    """Sites whose server answers but not yet the new address."""
    return tuple(a.server.site for a in answers if a.addresses is not None and a.addresses != frozenset({change.new}))

