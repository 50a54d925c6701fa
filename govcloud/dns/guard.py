"""When a site's name server may answer clients: the guard's rule for property (c) (pure, no I/O).

Why: every site runs its own primary, and a server that cannot be reached misses the switches made
meanwhile (a failover to st-a while gz is cut off, say). When its site comes back it would hand its
clients the old address until someone repairs it. A guard next to each server therefore decides, every
tick, whether the server answers clients (govcloud's own signed queries are always answered, so it can
still be read and repaired):

- **Withdraw when cut off.** The server is in contact while it reaches the witness (the controller that
  makes switches) or a server in another region. Out of contact for ``lease_s``, it withdraws. A
  failover is decided only after ``grace_s >= lease_s + max_gap_s`` of the same loss (docs/failover.md),
  so a server that can miss a failover's switch has withdrawn before the switch is made.
- **Withdraw when behind.** A reachable server holds a newer generation: this one missed a switch.
  It withdraws at once, and repairs itself from that server once it has been behind for ``repair_after_s``
  (a switch in flight reaches the servers a few milliseconds apart: repairing at once would race it).
- **Serve again** only in contact, and at the newest generation of the servers it reaches; a withdrawn
  server also needs at least one other server to compare with (alone it cannot know what it missed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class GuardAction(StrEnum):
    SERVE = "serve"
    WITHDRAW = "withdraw"
    REPAIR = "repair"  # withdrawn, then repaired from ``source``; serves once current
    KEEP = "keep"  # nothing to change


@dataclass(frozen=True)
class GuardPolicy:
    lease_s: float = 2.0
    repair_after_s: float = 1.5
    interval_s: float = 0.5


@dataclass(frozen=True)
class PeerState:
    """Another site's server as this guard saw it this tick."""

    site: str
    region: str
    generation: int | None  # None: no answer


@dataclass(frozen=True)
class GuardView:
    """One tick's observations and what the guard remembers between ticks."""

    now: float
    region: str
    own_generation: int | None  # None: the local server does not answer (stopped, starting)
    peers: tuple[PeerState, ...]
    witness_ok: bool
    serving: bool
    last_contact: float | None  # when the server was last in contact (None: never)
    behind_since: float | None  # since when a reachable server has held a newer generation


@dataclass(frozen=True)
class GuardDecision:
    action: GuardAction
    reason: str
    source: str | None = None  # the site to repair from
    in_contact: bool = False
    behind: bool = False


def in_contact(region: str, peers: Sequence[PeerState], witness_ok: bool) -> bool:
    """Reaches the witness, or a server in another region (a region cut off from the rest is not)."""
    return witness_ok or any(p.generation is not None and p.region != region for p in peers)


def decide(view: GuardView, policy: GuardPolicy) -> GuardDecision:
    contact = in_contact(view.region, view.peers, view.witness_ok)
    if view.own_generation is None:
        return GuardDecision(GuardAction.KEEP, "the local server does not answer", in_contact=contact)
    answering = [p for p in view.peers if p.generation is not None]
    newest = max((p.generation for p in answering if p.generation is not None), default=view.own_generation)
    if newest > view.own_generation:
        source = min((p for p in answering if p.generation == newest), key=lambda p: p.site)
        since = view.behind_since if view.behind_since is not None else view.now
        why = f"behind: generation {view.own_generation}, {source.site} holds {newest}"
        if view.now - since >= policy.repair_after_s:
            return GuardDecision(GuardAction.REPAIR, why, source.site, contact, True)
        if view.serving:
            return GuardDecision(GuardAction.WITHDRAW, why, in_contact=contact, behind=True)
        return GuardDecision(GuardAction.KEEP, why, in_contact=contact, behind=True)
    if not contact:
        cut_for = None if view.last_contact is None else view.now - view.last_contact
        if view.serving and (cut_for is None or cut_for >= policy.lease_s):
            return GuardDecision(GuardAction.WITHDRAW, "cut off: reaches neither the witness nor another region's "
                                 f"server ({'never' if cut_for is None else f'for {cut_for:.1f} s'})")
        return GuardDecision(GuardAction.KEEP, "out of contact" + ("" if view.serving else ", withdrawn"))
    if view.serving:
        return GuardDecision(GuardAction.KEEP, f"current at generation {view.own_generation}", in_contact=True)
    if not answering:
        return GuardDecision(GuardAction.KEEP, "withdrawn: no other server answers to compare generations with",
                             in_contact=True)
    return GuardDecision(GuardAction.SERVE, f"current at generation {view.own_generation} (newest of "
                         f"{', '.join(p.site for p in answering)})", in_contact=True)
