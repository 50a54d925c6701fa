"""HA drills on Patroni: the scenarios, the faults each one injects, and what its report concludes (pure).

Why faults as blackhole routes on the database hosts: a drill must run on any estate, not only on the
lab (whose sites can be cut by its own rig), with nothing but iproute2 and SSH. A route of type
``blackhole`` drops, at the host, every packet to the peer (a new connection to it fails at once, as
after a reset); each side learns of the cut only through its own requests and timeouts, which is what
the RTO must include. The drill adds, on each database host of one side, a blackhole route to each database host of
the other side, and the reverse, so both directions are cut; the controller's own path to every host
is untouched, so the drill can always undo it. Every route carries the protocol number
:data:`DRILL_ROUTE_PROTO`, so undoing is ``ip route flush proto 77`` on each host: stateless, idempotent,
and what a rerun after a killed drill does first.

- ``site-loss:S``: S's database hosts are cut from every other database host; the rest of the estate is
  whole. A lost leader's site: Patroni elects the synchronous standby once the leader key expires
  (its ``ttl``), the cut-off old primary demotes itself (failsafe: it cannot reach every member).
- ``partition:A/B``: only A and B are cut from each other; each still reaches the third site, so the
  ring keeps its quorum and nothing may fail over.
- ``region-loss:R``: every site of R is cut from the other region; the standby cluster is then promoted
  only by a person (``ha promote``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from itertools import pairwise

from govcloud.errors import InvalidInputError
from govcloud.failover.shape import HaShape
from govcloud.model import Topology
from govcloud.model.ha import HaPostgres

DRILL_ROUTE_PROTO = 77  # the routes a drill adds (ip route ... proto 77): flushed by number, never by guess


class Kind(str, Enum):
    SITE_LOSS = "site-loss"
    PARTITION = "partition"
    REGION_LOSS = "region-loss"


@dataclass(frozen=True)
class Scenario:
    kind: Kind
    sites: tuple[str, ...]  # the lost sites; for a partition, its two sides
    text: str

    @property
    def expects_failover(self) -> bool:
        """Patroni must elect a new leader: the leader's site is among the lost ones (set by the drill)."""
        return self.kind is Kind.SITE_LOSS


@dataclass(frozen=True)
class RouteFault:
    """On ``host`` (at ``address``), drop everything to ``peer``."""

    host: str
    address: str
    peer: str


def parse_scenario(text: str, topology: Topology) -> Scenario:
    """``site-loss:<site>``, ``partition:<site>/<site>``, ``region-loss:<region>``; InvalidInputError otherwise."""
    kind, _, arg = text.partition(":")
    sites = [s.name for s in topology.sites]
    regions = [r.name for r in topology.regions]
    if kind == Kind.SITE_LOSS.value and arg in sites:
        return Scenario(Kind.SITE_LOSS, (arg,), text)
    if kind == Kind.REGION_LOSS.value and arg in regions:
        return Scenario(Kind.REGION_LOSS, tuple(s.name for s in topology.sites_of(arg)), text)
    if kind == Kind.PARTITION.value:
        a, _, b = arg.partition("/")
        if a in sites and b in sites and a != b:
            return Scenario(Kind.PARTITION, (a, b), text)
    examples = [f"site-loss:{s}" for s in sites] + [f"partition:{sites[0]}/{sites[-1]}"] + \
        [f"region-loss:{r}" for r in regions]
    raise InvalidInputError(f"unknown drill scenario {text!r}", hint="one of " + ", ".join(examples))


def faults(scenario: Scenario, ha: HaPostgres) -> tuple[RouteFault, ...]:
    """The blackhole routes that make ``scenario`` between the database hosts (both directions)."""
    if scenario.kind is Kind.PARTITION:
        side_a, side_b = ha.hosts_in(scenario.sites[:1]), ha.hosts_in(scenario.sites[1:])
    else:
        side_a = ha.hosts_in(scenario.sites)
        side_b = tuple(h for h in ha.hosts if h not in side_a)
    out = [RouteFault(a.name, a.address, b.address) for a in side_a for b in side_b]
    out += [RouteFault(b.name, b.address, a.address) for a in side_a for b in side_b]
    return tuple(sorted(out, key=lambda f: (f.host, f.peer)))


def leader_lost(scenario: Scenario, shape: HaShape, leader: str) -> bool:
    """Whether the primary cluster's ``leader`` is on the lost side (a partition loses no side)."""
    site = next((h.site for h in shape.primary.members if h.name == leader), "")
    return scenario.kind is not Kind.PARTITION and site in scenario.sites


@dataclass(frozen=True)
class Ack:
    """One commit the drill's writer saw acknowledged: its id, when (seconds since the fault), and where."""

    id: int
    at_s: float
    address: str


@dataclass(frozen=True)
class Outcome:
    rto_s: float | None  # fault -> the first commit acknowledged by the new leader (None: none was)
    lost: tuple[int, ...]  # acknowledged ids the final leader does not have
    acked: int
    paused_s: float  # the longest gap between two acknowledged commits after the fault


def outcome(acks: list[Ack], present: set[int], new_leader: str | None) -> Outcome:
    """RTO, RPO (acknowledged commits lost) and the longest write pause, from the writer's acks."""
    after = [a for a in acks if a.at_s >= 0]
    first_new = next((a.at_s for a in after if new_leader is not None and a.address == new_leader), None)
    times = [0.0] + [a.at_s for a in after]
    gaps = [b - a for a, b in pairwise(times)]
    return Outcome(first_new, tuple(sorted({a.id for a in acks} - present)), len(acks), max(gaps, default=0.0))
