"""Frozen data of the failover decision: probe observations, snapshots, the cluster view, the decision.

Pure (no I/O). A controller cycle gathers what every probe saw into one immutable ``ProbeSnapshot``,
keeps the recent ones in a ``ProbeHistory``, and asks ``decide`` for a ``Decision`` that says, in one
sentence, why. Times are seconds on one monotonic-enough clock (the controller's), lags in bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from govcloud.errors import InvalidInputError, RefusedError
from govcloud.model import Topology


@dataclass(frozen=True)
class Observation:
    """One probe result: ``observer`` tried to reach ``target`` (a site, or the witness) at time ``at``.

    ``service`` names a replicated service when the probe hit that service's endpoint on ``target``
    (e.g. PostgreSQL in gz-b) rather than the site itself. Probes are round trips (TCP connect or a
    request/response), so a success means both directions worked. A probe answer may carry the
    epoch the target knows of: an old primary hearing a higher one knows it has been fenced.
    """

    observer: str
    target: str
    ok: bool
    at: float
    latency_s: float | None = None
    service: str | None = None
    epoch: int | None = None  # the highest fencing epoch the target answered with (None: not reported)


@dataclass(frozen=True)
class ProbeSnapshot:
    """Everything the probes reported, as of ``at``, with the topology they were made in.

    A site that did not report at all (its probe agent is down or cut off from the controller)
    simply has no observations here; ``decide`` treats what it did not say as unknown, never as "up".
    """

    at: float
    topology: Topology
    observations: tuple[Observation, ...]

    @property
    def site_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.topology.sites)

    def path(self, observer: str, target: str, service: str | None = None) -> Observation | None:
        """The latest observation of ``observer -> target`` (site level when ``service`` is None)."""
        found = [o for o in self.observations
                 if o.observer == observer and o.target == target and o.service == service]
        return max(found, key=lambda o: o.at) if found else None

    def reporters(self) -> frozenset[str]:
        return frozenset(o.observer for o in self.observations)


@dataclass(frozen=True)
class ProbeHistory:
    """The recent snapshots, oldest first; ``add`` returns a new history (the old one is untouched).

    Outage durations are measured within the history, so they read at most ``keep_s`` (plus a probe).
    """

    snapshots: tuple[ProbeSnapshot, ...] = ()

    def add(self, snapshot: ProbeSnapshot, keep_s: float) -> ProbeHistory:
        """Append ``snapshot`` and forget those older than ``keep_s`` before it (keep >= the grace period)."""
        kept = tuple(s for s in self.snapshots if s.at >= snapshot.at - keep_s and s.at < snapshot.at)
        return ProbeHistory((*kept, snapshot))


class ReplicationMode(StrEnum):
    SYNC = "sync"
    ASYNC = "async"


@dataclass(frozen=True)
class Standby:
    """A standby of a replicated service, as last seen by the replication monitor."""

    site: str
    mode: ReplicationMode
    streaming: bool = True  # connected to the primary and replaying at the last check
    lag_bytes: int | None = 0  # None: unknown
    lag_seconds: float | None = 0.0

    def describe(self) -> str:
        kind = "synchronous" if self.mode is ReplicationMode.SYNC else "asynchronous"
        lag = "lag unknown" if self.lag_bytes is None else f"lag {self.lag_bytes} B"
        return f"{kind} standby, {lag}"


@dataclass(frozen=True)
class ServiceView:
    """Who holds what for one replicated service: its primary, its standbys, and the fencing epoch.

    The epoch (a term, as in Raft or Patroni's timeline) grows by one at every promotion. A member
    that claims to be primary with a lower epoch is fenced: see ``accepts_primary``.
    """

    service: str
    primary: str
    epoch: int
    standbys: tuple[Standby, ...]
    fenced: tuple[str, ...] = ()  # former primaries, kept out of service until they rejoin as standbys
    high_epoch: int = 0  # the highest epoch any member or journal has seen (govcloud.failover.reconcile)

    @property
    def next_epoch(self) -> int:
        """The epoch of the next promotion: above every epoch seen, never reused, never backwards."""
        return max(self.epoch, self.high_epoch) + 1

    def standby(self, site: str) -> Standby | None:
        return next((s for s in self.standbys if s.site == site), None)

    def accepts_primary(self, site: str, epoch: int) -> bool:
        """True only for the current primary at the current epoch; any older claim is fenced."""
        return site == self.primary and epoch == self.epoch

    def after(self, decision: Decision) -> ServiceView:
        """The view once a failover decision has been carried out (unchanged for any other decision)."""
        if decision.action is not Action.FAILOVER or decision.target is None or decision.new_epoch is None:
            return self
        if decision.epoch != self.epoch or decision.primary != self.primary:
            raise FailoverRefused(
                f"{self.service}: decision made at epoch {decision.epoch} for primary {decision.primary}, "
                f"but the view is at epoch {self.epoch} with primary {self.primary}",
                hint="decide again from a fresh snapshot")
        return replace(
            self, primary=decision.target, epoch=decision.new_epoch,
            # the others must re-attach to the new primary: not promotable until the monitor sees them stream
            standbys=tuple(replace(s, streaming=False, lag_bytes=None, lag_seconds=None)
                           for s in self.standbys if s.site != decision.target),
            fenced=tuple(dict.fromkeys((*self.fenced, self.primary))))


@dataclass(frozen=True)
class ClusterView:
    """Every replicated service's view (sorted by service name when built by an adapter)."""

    services: tuple[ServiceView, ...]

    def service(self, name: str) -> ServiceView:
        for s in self.services:
            if s.service == name:
                return s
        raise KeyError(name)


class RegionLossRule(StrEnum):
    """How a whole lost primary region may be failed over to the backup region (see docs/failover.md)."""

    WITNESS = "witness"  # the backup site AND an external witness must both see the region gone
    SINGLE_OBSERVER_FENCED = "single-observer+fencing"  # the backup site alone; primaries self-fence harder
    NEVER = "never"  # region loss is a human decision


@dataclass(frozen=True)
class Policy:
    """Timing and safety knobs of the decision.

    ``lease_s + max_gap_s <= grace_s`` is required: a primary that cannot reach its peers stops
    accepting writes (its lease lapses) before anyone else may be promoted.
    """

    grace_s: float = 5.0
    lease_s: float = 3.0
    max_gap_s: float = 2.0  # two failing probes further apart than this do not make a continuous outage
    max_age_s: float = 3.0  # an observation older than this (at the snapshot's time) is unknown
    region_loss: RegionLossRule = RegionLossRule.WITNESS
    witness: str = "witness"
    max_async_lag_bytes: int | None = None  # None: any known lag is acceptable (RPO bounded by lag)

    def __post_init__(self) -> None:
        if self.lease_s <= 0 or self.grace_s <= 0 or self.max_gap_s <= 0 or self.max_age_s <= 0:
            raise InvalidInputError("failover policy: grace, lease, max gap and max age must be positive")
        if self.lease_s + self.max_gap_s > self.grace_s:
            raise InvalidInputError(
                f"failover policy: lease {self.lease_s:g} s + max gap {self.max_gap_s:g} s exceeds grace "
                f"{self.grace_s:g} s",
                hint="a primary must self-fence before a standby may be promoted: lower the lease or raise the grace")


class Action(StrEnum):
    NONE = "none"  # the primary is fine (as far as a quorum can tell)
    WAIT = "wait"  # a loss is suspected and the clock is running: decide again on the next snapshot
    FAILOVER = "failover"  # promote ``target`` at ``new_epoch``
    REFUSE = "refuse"  # evidence of trouble, but no rule allows a failover; ``execute`` refuses with the reason
    HOLD = "hold"  # the cluster is ambiguous (two writable members, or none): nobody acts; the reason says why


class Rule(StrEnum):
    SITE_LOSS = "site-loss"  # a majority of the other sites saw the primary's site gone
    REGION_LOSS = "region-loss"  # the explicit region-loss rule (see RegionLossRule)


@dataclass(frozen=True)
class Decision:
    """What to do about one service, and a sentence saying why (naming the sites and the evidence)."""

    action: Action
    service: str
    primary: str  # the primary when the decision was made
    epoch: int  # the epoch the decision was made at
    reason: str
    at: float
    target: str | None = None
    new_epoch: int | None = None
    rule: Rule | None = None
    deciders: tuple[str, ...] = ()  # the observers whose evidence carried the decision
    target_standby: Standby | None = None
    evidence: tuple[str, ...] = field(default=(), compare=False)  # one line per probe path considered


class FailoverRefused(RefusedError):
    """A failover was asked for but the decision does not allow it; the message is the decision's reason."""
