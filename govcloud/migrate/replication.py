"""Replication positions and the decisions made from them (pure, no I/O; issue 13).

Why here: a database cutover waits until the target has replayed the source's final position, and a
resumed cutover must know whether it already did. Both engines spell positions their own way:

- PostgreSQL: a WAL location (LSN) ``"16/B374D848"``, two hexadecimal halves of one 64-bit number;
- MariaDB: a GTID position ``"0-1-1042,1-2-7"``, per replication domain the server id and sequence
  number of the last transaction; a replica has caught up when, in every domain of the source, its
  sequence number is at least the source's.
"""

from __future__ import annotations

from dataclasses import dataclass


class PositionError(ValueError):
    """A replication position that is not in its engine's format (named in the message)."""


def parse_lsn(text: str) -> int:
    """``"16/B374D848"`` -> one comparable integer."""
    hi, sep, lo = text.strip().partition("/")
    try:
        if not sep:
            raise ValueError(text)
        return (int(hi, 16) << 32) | int(lo, 16)
    except ValueError:
        raise PositionError(f"{text!r} is not a PostgreSQL WAL location (like 16/B374D848)") from None


def parse_gtid(text: str) -> dict[int, int]:
    """``"0-1-1042,1-2-7"`` -> domain -> sequence number (the server id does not order transactions)."""
    out: dict[int, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            domain, _server, seq = (int(x) for x in part.split("-"))
        except ValueError:
            raise PositionError(f"{part!r} in {text!r} is not a MariaDB GTID (domain-server-sequence)") from None
        out[domain] = max(seq, out.get(domain, 0))
    return out


def pg_caught_up(source_final: str, replayed: str) -> bool:
    return parse_lsn(replayed) >= parse_lsn(source_final)


def mariadb_caught_up(source_final: str, executed: str) -> bool:
    source, replica = parse_gtid(source_final), parse_gtid(executed)
    return all(replica.get(domain, -1) >= seq for domain, seq in source.items())


def lag_bytes(source: str, replayed: str) -> int:
    """How far a PostgreSQL replica is behind, in bytes of WAL (0 when it is not behind)."""
    return max(0, parse_lsn(source) - parse_lsn(replayed))


@dataclass(frozen=True)
class RollbackCheck:
    """Whether a rollback may put the system back on its legacy database."""

    allowed: bool
    reason: str


def rollback_check(target_writes: int, discard_target_writes: bool) -> RollbackCheck:
    """Writes the target accepted after cutover would be lost by going back: refuse unless the
    operator says to discard them (``--discard-target-writes``)."""
    if target_writes <= 0:
        return RollbackCheck(True, "the target accepted no writes after cutover")
    if discard_target_writes:
        return RollbackCheck(True, f"discarding {target_writes} write(s) the target accepted after cutover "
                                   "(--discard-target-writes)")
    return RollbackCheck(False, f"the target accepted {target_writes} write(s) after cutover; going back to the "
                                "legacy database would lose them")
