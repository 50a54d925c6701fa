"""Reconcile the controller's journal with the cluster it controls (pure; see docs/failover.md "Source of truth").

The cluster is the source of truth for who is primary and at which epoch: members carry epoch markers
(a promoted primary its epoch, a fenced one the epoch it was fenced at). The journal is only the
controller's crash-safe intent log, and several controllers (project roots) may drive one cluster, so
a journal can be stale. ``reconcile`` compares the two on every controller start and cycle:

- the journal agrees with the cluster: ``keep``;
- one writable member that is not what the journal says: ``adopt`` the cluster's primary, epoch and
  fenced members (the caller logs and journals the change);
- two writable members, or none while the journal's primary is reachable and not fenced: ``hold``
  (ambiguous; nobody acts until a human or the cluster sorts it out);
- a journalled failover without an outcome: ``resume`` (the executor carries it on);
- no writable member because the primary is unreachable or fenced itself: ``keep`` (a loss: the
  quorum decision handles it).

Whatever the outcome, ``high_epoch`` is the highest epoch anyone has seen, and ``next_epoch`` is one
above it: a new promotion is always above every epoch any member or journal has seen.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class MemberObservation:
    """What one member shows: running, writable (running and not in recovery), its markers, reachability.

    ``reachable`` is the controller's network view of the member (the probes); the markers and roles
    come from the member itself (in the lab: its console). ``observed`` False: nothing could be read.
    """

    site: str
    observed: bool = True
    running: bool = False
    writable: bool = False
    epoch: int | None = None  # the epoch marker of a promoted primary (kept after it steps down)
    fenced_epoch: int | None = None  # the fenced marker (the epoch it was fenced at)
    reachable: bool = True


@dataclass(frozen=True)
class JournalState:
    """The journal's idea of the cluster."""

    primary: str
    epoch: int
    fenced: tuple[str, ...] = ()
    high_epoch: int = 0  # the highest epoch this journal ever recorded


class Outcome(StrEnum):
    KEEP = "keep"
    ADOPT = "adopt"
    HOLD = "hold"
    RESUME = "resume"


@dataclass(frozen=True)
class Reconciliation:
    """The state the controller should work from, and one sentence saying why."""

    outcome: Outcome
    primary: str
    epoch: int
    fenced: tuple[str, ...]
    high_epoch: int
    reason: str
    previous: JournalState | None = None

    @property
    def next_epoch(self) -> int:
        return self.high_epoch + 1

    @property
    def changed(self) -> bool:
        p = self.previous
        return p is None or (p.primary, p.epoch, tuple(sorted(p.fenced))) != (self.primary, self.epoch,
                                                                               tuple(sorted(self.fenced)))


def highest_epoch(journal_epochs: Iterable[int], members: Sequence[MemberObservation]) -> int:
    """The highest epoch any journal or member has seen (0 when none has)."""
    seen = [*journal_epochs]
    for m in members:
        seen.extend(e for e in (m.epoch, m.fenced_epoch) if e is not None)
        if m.observed and m.writable and m.epoch is None:
            seen.append(1)  # a primary without a marker is at the first epoch (a cluster's first primary)
    return max([0, *seen])  # epochs start at 1; 0 means none (a garbled negative marker counts as none)


def next_epoch(journal: JournalState | None, members: Sequence[MemberObservation]) -> int:
    """``max(journal epoch, every observed epoch/fenced epoch) + 1``."""
    js = () if journal is None else (journal.epoch, journal.high_epoch)
    return highest_epoch(js, members) + 1


def _names(xs: Iterable[str]) -> str:
    items = list(xs)
    return ", ".join(items) if items else "none"


def reconcile(journal: JournalState | None, members: Sequence[MemberObservation], *,
              run_in_progress: bool = False) -> Reconciliation:
    """The state to work from: the journal where the cluster agrees, the cluster where it does not."""
    high = highest_epoch(() if journal is None else (journal.epoch, journal.high_epoch), members)
    writable = [m for m in members if m.observed and m.writable]
    marked = tuple(m.site for m in members if m.fenced_epoch is not None)

    def out(outcome: Outcome, primary: str, epoch: int, fenced: Iterable[str], reason: str) -> Reconciliation:
        f = tuple(s for s in dict.fromkeys(fenced) if s != primary)
        return Reconciliation(outcome, primary, epoch, f, max(high, epoch), reason, journal)

    if run_in_progress and journal is not None:
        return out(Outcome.RESUME, journal.primary, journal.epoch, journal.fenced,
                   f"a failover to {journal.primary} at epoch {journal.epoch} is in progress in the journal: "
                   "resuming it, not adopting the cluster's state")
    if len(writable) > 1:
        where = ", ".join(f"{m.site} (epoch {m.epoch if m.epoch is not None else '?'})" for m in writable)
        keep = journal or JournalState(writable[0].site, writable[0].epoch or 0)
        return out(Outcome.HOLD, keep.primary, keep.epoch, keep.fenced,
                   f"the cluster is ambiguous: {len(writable)} writable members ({where}); holding, no failover "
                   "until only one is writable (fence the stale one, then `govcloud failover failback`)")
    if len(writable) == 1:
        w = writable[0]
        w_epoch = w.epoch if w.epoch is not None else 1
        if journal is None:
            return out(Outcome.ADOPT, w.site, w_epoch, marked,
                       f"no journal yet: the cluster shows {w.site} writable at epoch {w_epoch}")
        # a member the journal fenced stays fenced until it is seen streaming again (a rejoin clears it)
        still = [s for s in journal.fenced
                 if not any(m.site == s and m.observed and m.running and m.fenced_epoch is None for m in members)]
        fenced = (*marked, *still)
        if journal.primary == w.site and journal.epoch == w_epoch:
            if set(fenced) - {w.site} == set(journal.fenced) - {w.site}:
                return out(Outcome.KEEP, w.site, w_epoch, journal.fenced, "the journal agrees with the cluster")
            return out(Outcome.ADOPT, w.site, w_epoch, fenced,
                       f"fenced members: journal {_names(journal.fenced)}, cluster {_names(fenced)}"
                       f" (a member rejoined or was fenced from another controller)")
        return out(Outcome.ADOPT, w.site, w_epoch, marked,
                   f"the journal says {journal.primary} at epoch {journal.epoch}, but the cluster shows {w.site} "
                   f"writable at epoch {w_epoch} (another controller or `devcloud lab pg up` changed it)")
    # no writable member
    if journal is None:
        return out(Outcome.HOLD, "", 0, marked,
                   "the cluster has no writable member and there is no journal: nothing to adopt; holding "
                   "(start the cluster: `devcloud lab pg up`)")
    jp = next((m for m in members if m.site == journal.primary), None)
    if jp is None or not jp.observed or not jp.reachable:
        return out(Outcome.KEEP, journal.primary, journal.epoch, journal.fenced,
                   f"no writable member, and the primary {journal.primary} is unreachable: a loss for the quorum "
                   "decision")
    if jp.fenced_epoch is not None and jp.fenced_epoch >= journal.epoch:
        return out(Outcome.KEEP, journal.primary, journal.epoch, journal.fenced,
                   f"no writable member: the primary {journal.primary} fenced itself at epoch {jp.fenced_epoch} "
                   "(its lease lapsed): a loss for the quorum decision")
    return out(Outcome.HOLD, journal.primary, journal.epoch, journal.fenced,
               f"the cluster is ambiguous: no writable member although the primary {journal.primary} is reachable "
               f"and not fenced ({'stopped' if not jp.running else 'in recovery'}); holding, no failover "
               "(start the cluster: `devcloud lab pg up`)")
