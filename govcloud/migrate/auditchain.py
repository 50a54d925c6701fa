"""The audit log's hash chain (pure): canonical records, their hashes, and the verification that says
which record was edited, removed, reordered or inserted.

Each record's hash is ``sha256(prev_hash + canonical_json(record))`` where the record is
``{at, actor, action, target, result, detail}`` (its storage sequence number is *not* hashed: the
chain itself defines the order, so a reorder shows up as a broken link, not as an edit). The first
record links to ``GENESIS``. The journal also keeps the head (last seq and hash), so removing records
from the end is detected; record the head elsewhere (``audit verify`` prints it) to also catch a
rewrite of the whole file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

GENESIS = "0" * 64
HASHED_FIELDS = ("at", "actor", "action", "target", "result", "detail")


@dataclass(frozen=True)
class AuditRecord:
    """One stored audit record: who (actor), when (at, UTC ISO 8601), what (action on target), result."""

    seq: int
    at: str
    actor: str
    action: str
    target: str
    result: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""

    def body(self) -> dict[str, Any]:
        return {"at": self.at, "actor": self.actor, "action": self.action, "target": self.target,
                "result": self.result, "detail": dict(self.detail)}


def canonical(body: Mapping[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8 (so a hash does not depend on dict order)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def record_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(body)).hexdigest()


@dataclass(frozen=True)
class Problem:
    kind: str  # edited | removed | reordered | inserted | truncated | head
    seq: int
    message: str


@dataclass(frozen=True)
class ChainReport:
    records: int
    head_seq: int
    head_hash: str
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(records: Sequence[AuditRecord], head: tuple[int, str] | None = None,
                 expect_head: str | None = None) -> ChainReport:
    """Check every record's hash and link; ``head`` is the journal's (seq, hash) of the last append,
    ``expect_head`` a hash recorded outside the journal. Lists every problem found, each naming its record."""
    problems: list[Problem] = []
    hashes = {r.hash: r for r in records}
    position = {r.hash: i for i, r in enumerate(records)}
    prev = GENESIS
    prev_seq = 0
    for i, r in enumerate(records):
        if record_hash(r.prev_hash, r.body()) != r.hash:
            problems.append(Problem("edited", r.seq, f"record {r.seq} ({r.action} {r.target}) does not match its hash: "
                                                     "it was edited (or forged)"))
        elif r.prev_hash != prev:
            if r.prev_hash in hashes and position[r.prev_hash] > i:
                before = hashes[r.prev_hash]
                problems.append(Problem("reordered", r.seq, f"record {r.seq} ({r.action} {r.target}) was written after "
                                                            f"record {before.seq}, which now follows it: records were reordered"))
            elif (r.prev_hash in hashes and i >= 2 and r.prev_hash == records[i - 2].hash
                  and records[i - 1].prev_hash == records[i - 2].hash):
                problems.append(Problem("inserted", prev_seq, f"record {prev_seq} ({records[i - 1].action} "
                                                              f"{records[i - 1].target}) was inserted: record {r.seq} links "
                                                              f"to record {records[i - 2].seq}"))
            elif r.prev_hash in hashes:
                problems.append(Problem("reordered", r.seq, f"record {r.seq} links to record {hashes[r.prev_hash].seq}, "
                                                            f"not to its predecessor {prev_seq}: records were reordered"))
            else:
                gap = f" (seq {prev_seq + 1}..{r.seq - 1} missing)" if r.seq > prev_seq + 1 else ""
                problems.append(Problem("removed", r.seq, f"the record(s) between {prev_seq or 'the start'} and {r.seq} "
                                                          f"were removed or edited{gap}: record {r.seq} links to an "
                                                          "unknown record"))
        prev = r.hash
        prev_seq = r.seq
    last_seq, last_hash = (records[-1].seq, records[-1].hash) if records else (0, GENESIS)
    if head is not None and head != (last_seq, last_hash):
        if head[0] > last_seq:
            problems.append(Problem("truncated", head[0], f"the last record(s) were removed: the journal's head is record "
                                                          f"{head[0]} but the log ends at {last_seq}"))
        else:
            problems.append(Problem("head", last_seq, f"the journal's head (record {head[0]}, {head[1][:12]}) does not "
                                                      f"match the last record ({last_seq}, {last_hash[:12]})"))
    if expect_head is not None and expect_head not in hashes and expect_head != GENESIS:
        problems.append(Problem("head", last_seq, f"the expected head {expect_head[:12]}... is not in the log: "
                                                  "records up to it were removed or rewritten"))
    return ChainReport(records=len(records), head_seq=last_seq, head_hash=last_hash, problems=tuple(problems))
