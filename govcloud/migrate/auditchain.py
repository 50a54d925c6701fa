"""The audit log's hash chain (pure): canonical records, their hashes, and the verification that says
which record was edited, removed, reordered or inserted.

Each record's hash is ``sha256(prev_hash + canonical_json(record))`` where the record is
``{at, actor, action, target, result, detail}`` (its storage sequence number is *not* hashed: the
chain itself defines the order, so a reorder shows up as a broken link, not as an edit). The first
record links to ``GENESIS``.

A chain alone cannot show that records were cut from its end: what is left is still a valid chain.
So the head (last seq and hash) is kept twice: inside the journal (``audit_head``, which a careless
edit of the file forgets) and in an *anchor* outside it, the head file written after every append
(which a truncated, emptied, deleted or restored-from-an-older-copy journal no longer matches). Record
the head somewhere else still (``audit head``, syslog) to catch a rewrite of both files.
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
    kind: str  # edited | removed | reordered | inserted | truncated | replaced | head | head-file
    seq: int
    message: str


@dataclass(frozen=True)
class Anchor:
    """The chain's head as recorded outside the journal: the last record's seq and hash (0 and
    ``GENESIS`` before the first append)."""

    seq: int
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash}


GENESIS_ANCHOR = Anchor(0, GENESIS)


@dataclass(frozen=True)
class ChainReport:
    records: int
    head_seq: int
    head_hash: str
    problems: tuple[Problem, ...]
    notes: tuple[str, ...] = ()  # findings that are not tampering (a head file an interrupted append behind)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(records: Sequence[AuditRecord], head: tuple[int, str] | None = None,
                 expect_head: str | None = None, anchor: Anchor | None = None, *,
                 anchor_expected: bool = False) -> ChainReport:
    """Check every record's hash and link; ``head`` is the journal's (seq, hash) of the last append,
    ``anchor`` the head file's, ``expect_head`` a hash recorded elsewhere. ``anchor_expected``: the
    journal keeps a head file, so its absence is a problem (a journal last written by an older govcloud
    has none yet). Lists every problem found, each naming its record (the first missing or wrong one)."""
    problems = _link_problems(records)
    last_seq, last_hash = (records[-1].seq, records[-1].hash) if records else (0, GENESIS)
    if head is not None and head != (last_seq, last_hash):
        if head[0] > last_seq:
            problems.append(Problem("truncated", head[0], f"the last record(s) were removed: the journal's head is record "
                                                          f"{head[0]} but the log ends at {last_seq}"))
        else:
            problems.append(Problem("head", last_seq, f"the journal's head (record {head[0]}, {head[1][:12]}) does not "
                                                      f"match the last record ({last_seq}, {last_hash[:12]})"))
    anchor_problems, notes = check_anchor(records, anchor, expected=anchor_expected)
    problems.extend(anchor_problems)
    if expect_head is not None and expect_head not in {r.hash for r in records} and expect_head != GENESIS:
        problems.append(Problem("head", last_seq, f"the expected head {expect_head[:12]}... is not in the log: "
                                                  "records up to it were removed or rewritten"))
    return ChainReport(records=len(records), head_seq=last_seq, head_hash=last_hash, problems=tuple(problems),
                       notes=tuple(notes))


def _link_problems(records: Sequence[AuditRecord]) -> list[Problem]:
    """Each record against its own hash and its predecessor's: edited, removed, reordered, inserted."""
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
    return problems


def check_anchor(records: Sequence[AuditRecord], anchor: Anchor | None, *,
                 expected: bool) -> tuple[list[Problem], list[str]]:
    """The log against the head file: (problems, notes).

    The head file is written after the append's commit, so an append under way, or a crash between the
    two, leaves it behind the log, never ahead: a head file behind the log whose record is in the chain
    is a note, not tampering (the chain check covers the records after it; how far behind is no
    evidence either way, since whoever can append forged records can also rewrite the head file). A log
    shorter than the head file, or whose record at the head file's seq has another hash, lost records
    or was replaced."""
    last_seq = records[-1].seq if records else 0
    if anchor is None:
        if expected:
            return [Problem("head-file", last_seq, "the head file is missing (it is written with every append and never "
                                                   "removed): records cut from the end of this log, or an older copy "
                                                   "of it, could no longer be told apart from it")], []
        return [], [("no head file yet: the journal was last written by a govcloud that kept none; its next "
                     "append writes one")]
    if anchor.seq > last_seq:
        ends = f"ends at record {last_seq}" if records else "is empty"
        return [Problem("truncated", last_seq + 1, f"record {last_seq + 1} is missing: the head file records "
                                                   f"{anchor.seq} record(s) (head {anchor.hash[:12]}) but the log {ends}: "
                                                   "it was truncated, emptied or replaced by an older copy")], []
    found = GENESIS if anchor.seq == 0 else next((r.hash for r in records if r.seq == anchor.seq), None)
    if found is None:
        return [Problem("truncated", anchor.seq, f"record {anchor.seq}, the head file's head, is missing from the log")], []
    if found != anchor.hash:
        return [Problem("replaced", anchor.seq, f"record {anchor.seq} is not the one the head file records ({found[:12]} "
                                                f"here, {anchor.hash[:12]} there): the log up to it was replaced "
                                                "or rewritten")], []
    if anchor.seq < last_seq:
        return [], [(f"the head file is {last_seq - anchor.seq} record(s) behind the log (at record {anchor.seq}): "
                     "an append was between its commit and its head write (under way, or interrupted by a crash); "
                     "the records after it chain from it, and the next append brings the head file up to date")]
    return [], []
