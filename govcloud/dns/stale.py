"""Which servers missed a switch: the stale-server rule (pure, no I/O).

Why generations: every site runs its own primary, so a server that was down or cut off during a
switch keeps the old address. Each switch therefore also writes the zone's generation record
(``_generation.<zone>``, TXT, one number) in the same update message, so a server holds the new
address and the new generation or neither. The newest generation any server answers is the zone's.

- A server at the newest generation is **current**.
- A server below it is **stale**: it missed at least one switch. It is brought up to date from a
  current server (every name set as the current server holds it, names it lacks deleted, then the
  generation), in one update that holds only if it is still at its stale generation;
  `govcloud dns status` reports it, and the next switch repairs it first.
- A server above it is **ahead**: someone with the key wrote a generation govcloud never did (or the
  journal is not this zone's). That is never repaired automatically: the operator decides.
- A server that does not answer is **unknown**, never current.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

GENERATION_LABEL = "_generation"


class Freshness(StrEnum):
    CURRENT = "current"
    STALE = "stale"
    AHEAD = "ahead"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ServerGeneration:
    site: str
    generation: int | None  # None: no answer (or no readable generation record)


def freshness(newest: int, server: ServerGeneration) -> Freshness:
    if server.generation is None:
        return Freshness.UNKNOWN
    if server.generation == newest:
        return Freshness.CURRENT
    return Freshness.STALE if server.generation < newest else Freshness.AHEAD


def classify(newest: int, servers: Sequence[ServerGeneration]) -> dict[str, Freshness]:
    """Site -> freshness of its server against the journal's newest generation."""
    return {s.site: freshness(newest, s) for s in servers}


Records = dict[str, tuple[frozenset[str], int]]  # label -> (A addresses, TTL)


@dataclass(frozen=True)
class Repair:
    """What a stale server needs to match a current one: names to set (address, TTL), names to delete."""

    site: str
    wanted: dict[str, tuple[str, int]]
    remove: tuple[str, ...]
    stale_generation: int
    generation: int

    @property
    def empty(self) -> bool:
        return not self.wanted and not self.remove


def repair_for(site: str, current: Records, stale: Records, stale_generation: int, generation: int) -> Repair:
    """The difference from a stale server's names to a current server's, as one update's content.

    A name that holds several addresses on the current server is not one govcloud wrote (each of its
    switches writes one address) and is left alone.
    """
    wanted = {label: (min(addrs), ttl) for label, (addrs, ttl) in current.items()
              if len(addrs) == 1 and stale.get(label) != (addrs, ttl)}
    remove = tuple(sorted(label for label in stale if label not in current))
    return Repair(site, wanted, remove, stale_generation, generation)


def parse_generation(texts: Sequence[str]) -> int | None:
    """The generation from the TXT strings of ``_generation`` (None unless exactly one whole number)."""
    if len(texts) != 1 or not texts[0].isdigit():
        return None
    return int(texts[0])
