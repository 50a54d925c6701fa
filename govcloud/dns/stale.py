"""Which servers missed a switch: the stale-server rule (pure, no I/O).

Why generations: every site runs its own primary, so a server that was down or cut off during a
switch keeps the old address. Each switch therefore also writes the zone's generation record
(``_generation.<zone>``, TXT, one number) in the same update message, so a server holds the new
address and the new generation or neither. The journal keeps the newest generation govcloud wrote.

- A server at the newest generation is **current**.
- A server below it is **stale**: it missed at least one switch. It must be brought up to date (every
  name govcloud manages replaced by the journal's value, then the generation) before it may answer
  clients again; `govcloud dns status` reports it, and the switch that finds it repairs it.
- A server above it is **ahead**: someone with the key wrote a generation govcloud never did (or the
  journal is not this zone's). That is never repaired automatically: the operator decides.
- A server that does not answer is **unknown**, never current.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


@dataclass(frozen=True)
class Repair:
    """What a stale server needs: each managed label set to the journal's address, then ``generation``."""

    site: str
    records: tuple[tuple[str, str], ...]  # (label, address), sorted
    generation: int


def repairs(newest: int, servers: Sequence[ServerGeneration], published: Mapping[str, str]) -> tuple[Repair, ...]:
    """One repair per stale server; ``published`` is label -> address as the journal last recorded it."""
    records = tuple(sorted(published.items()))
    return tuple(Repair(s.site, records, newest) for s in servers if freshness(newest, s) is Freshness.STALE)


def parse_generation(texts: Sequence[str]) -> int | None:
    """The generation from the TXT strings of ``_generation`` (None unless exactly one whole number)."""
    if len(texts) != 1 or not texts[0].isdigit():
        return None
    return int(texts[0])
