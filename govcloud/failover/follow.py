"""The service name follows the Patroni leader: what to do on each look at etcd (pure: no I/O).

Why a watcher of the leader key, and not Patroni's ``on_role_change`` callback: the callback runs on
the member whose role changed, asynchronously, and is killed when another callback fires; a member
whose site is lost never runs it, and nothing retries it. The leader key is the state that elected
the leader: reading it from an etcd quorum (a linearizable read, which a cut-off minority member
refuses) names the leader every watcher must agree on, with its ``create_revision`` as that
election's identity (Patroni keeps a leader's key alive through its lease, and may rewrite it, but a
new election creates it anew). Any number of watchers may run (one per site); they coordinate through a record kept in the
same etcd:

- the **record** (``/service/<scope>/govcloud-name``) says which election the name was last moved for
  (``revision``), from which address (``previous``) to which (``address``), and whether that switch is
  ``done``;
- a watcher that sees a newer election **claims** it with an etcd transaction that requires both the
  leader key's and the record's revisions to be the ones it read: of two watchers exactly one claims,
  and no claim survives a leader that changed meanwhile;
- the claimed switch's "expected" value is the record's previous address, never a value just read
  from DNS, and the DNS update itself is fenced by the zone's generation (docs/dns.md);
- a claim not marked done (its watcher died) is **completed** by any watcher; repeating the same
  compare-and-swap finds it done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class LeaderKey:
    """``/service/<scope>/leader`` as an etcd quorum read returned it."""

    member: str
    create_revision: int  # the election: the key is created anew by each one
    lease: int = 0


@dataclass(frozen=True)
class NameRecord:
    """What the name was last moved for (stored as JSON beside the leader key)."""

    revision: int  # the leader key's create_revision: the election the switch is for
    previous: str | None  # what the name answered before (the switch's expected value)
    address: str
    done: bool
    mod_revision: int = 0  # the record key's own revision when read (the claim's compare)


class Step(str, Enum):
    NONE = "none"  # nothing to do: no leader (Patroni is electing), or the name is on it
    CLAIM = "claim"  # a newer election: claim it, then switch previous -> address
    COMPLETE = "complete"  # a claimed switch not marked done: repeat it, then mark it done
    UNKNOWN = "unknown"  # the leader is not a declared member: refuse to publish it


@dataclass(frozen=True)
class Decision:
    step: Step
    why: str
    record: NameRecord | None = None  # for CLAIM: the record to write; for COMPLETE: the one to finish


def decide(leader: LeaderKey | None, record: NameRecord | None, addresses: Mapping[str, str]) -> Decision:
    """One look: the leader key and the record, as read; ``addresses`` maps the members to theirs."""
    if leader is None:
        return Decision(Step.NONE, "no leader key: Patroni is electing")
    address = addresses.get(leader.member)
    if address is None:
        return Decision(Step.UNKNOWN, f"the leader key names {leader.member!r}, which is not a member of the "
                                      "topology's cluster")
    if record is not None and record.revision > leader.create_revision:
        return Decision(Step.NONE, f"the record is for a newer election ({record.revision}) than the leader key "
                                   f"read ({leader.create_revision}): this read is stale")
    if record is not None and record.revision == leader.create_revision:
        if record.done:
            return Decision(Step.NONE, f"the name is on {leader.member} ({record.address})")
        return Decision(Step.COMPLETE, f"the switch to {record.address} for election {record.revision} was claimed "
                                       "and not finished", record)
    previous = record.address if record is not None else None
    return Decision(Step.CLAIM, f"{leader.member} leads (election {leader.create_revision}): "
                                f"{previous or '(absent)'} -> {address}",
                    NameRecord(leader.create_revision, previous, address, False,
                               record.mod_revision if record is not None else 0))
