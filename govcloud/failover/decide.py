"""The quorum failover decision, pure over an immutable snapshot (the rules: docs/failover.md).

``decide`` answers, for one replicated service, whether its primary's site is lost and which standby
to promote; ``primary_lease`` answers, for the primary itself, whether it may keep accepting writes.
The two are built so that a promotion is only ever decided after the old primary's lease has lapsed
(``Policy.lease_s + max_gap_s <= grace_s``), and every promotion raises the fencing epoch: two
writable primaries never coexist, and never share an epoch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from govcloud.failover.model import (
    Action,
    ClusterView,
    Decision,
    Observation,
    Policy,
    ProbeHistory,
    ProbeSnapshot,
    RegionLossRule,
    ReplicationMode,
    Rule,
    ServiceView,
    Standby,
)


class _Maker(Protocol):  # the shape of decide's local ``make``
    def __call__(self, action: Action, reason: str, **kw: object) -> Decision: ...


class PathStatus(StrEnum):
    UP = "up"
    DOWN = "down"
    UNKNOWN = "unknown"  # no fresh observation: the observer is silent, or its report is stale


@dataclass(frozen=True)
class PathState:
    """What one observer currently says about one target, with the length of its continuous outage."""

    observer: str
    target: str
    status: PathStatus
    down_for: float = 0.0  # from the first to the last failing probe of the current unbroken run
    latency_s: float | None = None

    def lost(self, grace_s: float) -> bool:
        return self.status is PathStatus.DOWN and self.down_for >= grace_s

    def describe(self) -> str:
        if self.status is PathStatus.UP:
            ms = "" if self.latency_s is None else f" ({self.latency_s * 1000:.0f} ms)"
            return f"{self.observer} -> {self.target}: up{ms}"
        if self.status is PathStatus.DOWN:
            return f"{self.observer} -> {self.target}: down for {_secs(self.down_for)}"
        return f"{self.observer} -> {self.target}: no fresh report"


@dataclass(frozen=True)
class Lease:
    """Whether the primary may keep accepting writes, and why."""

    holds: bool
    reason: str
    isolated_for: float = 0.0


def _secs(x: float) -> str:
    return f"{round(x, 1):g} s"


def names(items: Iterable[str]) -> str:
    xs = list(items)
    if not xs:
        return "nobody"
    if len(xs) == 1:
        return xs[0]
    return f"{', '.join(xs[:-1])} and {xs[-1]}"


def timeline(snapshot: ProbeSnapshot, history: ProbeHistory) -> tuple[ProbeSnapshot, ...]:
    """History (strictly older snapshots) followed by the current snapshot."""
    return (*(s for s in history.snapshots if s.at < snapshot.at), snapshot)


def path_state(snapshots: Sequence[ProbeSnapshot], observer: str, target: str, policy: Policy,
               service: str | None = None) -> PathState:
    """The state of ``observer -> target`` as of the last snapshot, from all the snapshots' observations.

    A failing run is continuous only while consecutive failing probes are at most ``max_gap_s`` apart;
    a success, or a silence longer than that, starts the count again (so a flap never adds up).
    """
    now = snapshots[-1].at
    by_time: dict[float, Observation] = {}
    for snap in snapshots:
        for o in snap.observations:
            if o.observer == observer and o.target == target and o.service == service and o.at <= now:
                by_time[o.at] = o
    obs = [by_time[t] for t in sorted(by_time)]
    if not obs or obs[-1].at < now - policy.max_age_s:
        return PathState(observer, target, PathStatus.UNKNOWN)
    last = obs[-1]
    if last.ok:
        return PathState(observer, target, PathStatus.UP, latency_s=last.latency_s)
    i = len(obs) - 1
    while i > 0 and not obs[i - 1].ok and obs[i].at - obs[i - 1].at <= policy.max_gap_s:
        i -= 1
    return PathState(observer, target, PathStatus.DOWN, down_for=last.at - obs[i].at)


def _quorum(n: int) -> int:
    return n // 2 + 1


def reported(snapshot: ProbeSnapshot, site: str, policy: Policy) -> bool:
    """True when ``site``'s probe agent sent a fresh report: it is alive, whatever others can reach."""
    return any(o.observer == site and o.at >= snapshot.at - policy.max_age_s for o in snapshot.observations)


def _candidates(snapshot: ProbeSnapshot, view: ServiceView, allowed: Sequence[str], policy: Policy,
                snapshots: Sequence[ProbeSnapshot]) -> tuple[Standby | None, list[str]]:
    """The best promotable standby among ``allowed`` sites (sync first, then async by lag), and why not others."""
    why_not: list[str] = []
    eligible: list[Standby] = []
    for sb in view.standbys:
        if sb.site not in allowed:
            continue
        if sb.site in view.fenced:
            why_not.append(f"{sb.site} is fenced")
            continue
        if not reported(snapshot, sb.site, policy):
            why_not.append(f"{sb.site} sent no fresh probe report")
            continue
        if not sb.streaming:
            why_not.append(f"{sb.site} standby was not streaming at the last check")
            continue
        # the service is judged by those who reach its site (or run on it): a cut path is not a dead service
        failing = [p for p in (path_state(snapshots, o, sb.site, policy, service=view.service)
                               for o in (*snapshot.site_names, policy.witness))
                   if p.status is PathStatus.DOWN
                   and (p.observer == sb.site
                        or path_state(snapshots, p.observer, sb.site, policy).status is PathStatus.UP)]
        if failing:
            why_not.append(f"{view.service} on {sb.site} fails its service probe from "
                           f"{names(p.observer for p in failing)}")
            continue
        # someone other than the standby itself (and the lost primary) must reach its site: a standby cut off
        # together with the primary (a region isolated from the rest) would be a primary nobody can reach
        vouching = [o for o in (*snapshot.site_names, policy.witness) if o not in (sb.site, view.primary)
                    and path_state(snapshots, o, sb.site, policy).status is PathStatus.UP]
        if not vouching:
            why_not.append(f"{sb.site} is reachable from no other site nor the witness")
            continue
        if sb.mode is ReplicationMode.ASYNC:
            if sb.lag_bytes is None:
                why_not.append(f"{sb.site} asynchronous standby has an unknown lag")
                continue
            if policy.max_async_lag_bytes is not None and sb.lag_bytes > policy.max_async_lag_bytes:
                why_not.append(f"{sb.site} lag {sb.lag_bytes} B is over the {policy.max_async_lag_bytes} B limit")
                continue
        eligible.append(sb)
    eligible.sort(key=lambda s: (s.mode is not ReplicationMode.SYNC, s.lag_bytes or 0, s.site))
    return (eligible[0] if eligible else None), why_not


def decide(snapshot: ProbeSnapshot, view: ServiceView, history: ProbeHistory, policy: Policy) -> Decision:
    """Decide what to do about ``view.service`` from ``snapshot`` and the snapshots before it.

    Site loss: the primary's site is lost only when a majority of the *other* sites (counted over all
    of them, reporting or not) have each seen it unreachable continuously for ``grace_s``; then the
    synchronous standby is promoted first. Region loss (every site of the primary's region gone) is
    decided only by ``policy.region_loss`` (docs/failover.md). Anything short of that is ``wait``
    (quorum sees it down, grace not yet over), ``refuse`` (some evidence, no quorum) or ``none``.
    """
    snaps = timeline(snapshot, history)
    topo = snapshot.topology
    sites = snapshot.site_names
    primary = view.primary

    def make(action: Action, reason: str, **kw: object) -> Decision:
        return Decision(action=action, service=view.service, primary=primary, epoch=view.epoch, reason=reason,
                        at=snapshot.at, evidence=tuple(p.describe() for p in paths), **kw)  # type: ignore[arg-type]

    paths: list[PathState] = []
    if primary not in sites:
        return make(Action.REFUSE, f"{view.service}: primary site {primary} is not in topology {topo.name} "
                                   f"(sites {names(sites)}); no failover")
    others = [s for s in sites if s != primary]
    need = _quorum(len(others))
    states = [path_state(snaps, o, primary, policy) for o in others]
    paths.extend(states)
    lost = [p.observer for p in states if p.lost(policy.grace_s)]
    down = [p for p in states if p.status is PathStatus.DOWN]
    up = [p.observer for p in states if p.status is PathStatus.UP]
    silent = [p.observer for p in states if p.status is PathStatus.UNKNOWN]
    down_for = min((p.down_for for p in down), default=0.0)

    if not others:
        return make(Action.NONE, f"{primary} is the only site of {topo.name}: there is nothing to fail over to")

    if len(lost) >= need:
        span = min(p.down_for for p in states if p.observer in lost)
        head = (f"{primary} unreachable from {names(lost)} for {_secs(span)} (grace {_secs(policy.grace_s)}): "
                f"quorum {len(lost)}/{len(others)}")
        best, why_not = _candidates(snapshot, view, others, policy, snaps)
        if best is None:
            # e.g. the whole region is gone: the sync partner went with the primary; the region rule decides
            region = _region_decision(snapshot, view, snaps, policy, make, paths)
            if region is not None:
                return region
            return make(Action.REFUSE, f"{head}, but no standby of {view.service} can be promoted: "
                                       f"{'; '.join(why_not) or 'it has none'}; no failover",
                        rule=Rule.SITE_LOSS, deciders=tuple(lost))
        return make(Action.FAILOVER, f"{head}; promote {best.site} ({best.describe()}) at epoch {view.next_epoch}",
                    target=best.site, new_epoch=view.next_epoch, rule=Rule.SITE_LOSS, deciders=tuple(lost),
                    target_standby=best)

    if len(down) >= need:
        return make(Action.WAIT, f"{primary} unreachable from {names(p.observer for p in down)} for "
                                 f"{_secs(down_for)} (grace {_secs(policy.grace_s)}): quorum "
                                 f"{len(down)}/{len(others)} but the grace period is not over; waiting")

    region = _region_decision(snapshot, view, snaps, policy, make, paths)
    if region is not None:
        return region

    if down:
        parts = [f"{primary} unreachable from {names(p.observer for p in down)} (for {_secs(down_for)})"]
        if up:
            parts.append(f"reachable from {names(up)}")
        if silent:
            parts.append(f"no report from {names(silent)}")
        return make(Action.REFUSE, f"{', '.join(parts)}: quorum {len(down)}/{len(others)} not met "
                                   f"(need {need}); no failover")
    if silent and not up:
        return make(Action.REFUSE, f"no fresh report about {primary} from {names(silent)}: "
                                   f"quorum 0/{len(others)} (need {need}); no failover")
    tail = f" (no report from {names(silent)})" if silent else ""
    return make(Action.NONE, f"{primary} (primary of {view.service}, epoch {view.epoch}) reachable from "
                             f"{names(up)}{tail}; no failover")


def _region_decision(snapshot: ProbeSnapshot, view: ServiceView, snaps: Sequence[ProbeSnapshot], policy: Policy,
                     make: _Maker, paths: list[PathState]) -> Decision | None:
    """The explicit region-loss rule, or None when it does not apply (some primary-region site is seen up)."""
    topo = snapshot.topology
    primary = view.primary
    region = topo.site(primary).region
    inside = [s.name for s in topo.sites_of(region)]
    outside = [s.name for s in topo.sites if s.region != region]
    if not outside or len(inside) < 2:
        return None  # a one-site region is covered by the site rule
    states = {(o, t): path_state(snaps, o, t, policy) for o in outside for t in inside}
    if not any(states[(o, t)].status is PathStatus.DOWN for o in outside for t in inside):
        return None
    paths.extend(s for s in states.values() if s not in paths)
    all_down = [o for o in outside if all(states[(o, t)].status is PathStatus.DOWN for t in inside)]
    all_lost = [o for o in all_down if all(states[(o, t)].lost(policy.grace_s) for t in inside)]
    need = _quorum(len(outside))
    if len(all_down) < need:
        return None  # not a region loss as far as the backup region can tell: the site rule's answer stands
    span = min((states[(o, t)].down_for for o in all_down for t in inside), default=0.0)
    head = f"region {region} ({names(inside)}) unreachable from {names(all_down)} for {_secs(span)}"
    if policy.region_loss is RegionLossRule.NEVER:
        return make(Action.REFUSE, f"{head}: the policy leaves region loss to a human (region_loss=never); "
                                   f"no failover", rule=Rule.REGION_LOSS, deciders=tuple(all_down))
    if len(all_lost) < need:
        return make(Action.WAIT, f"{head} (grace {_secs(policy.grace_s)}): the grace period is not over; waiting",
                    rule=Rule.REGION_LOSS)
    deciders = tuple(all_lost)
    witness_note = "single observer + fencing"
    if policy.region_loss is RegionLossRule.WITNESS:
        w_states = [path_state(snaps, policy.witness, t, policy) for t in inside]
        paths.extend(w_states)
        seen_up = [w.target for w in w_states if w.status is PathStatus.UP]
        silent = [w.target for w in w_states if w.status is PathStatus.UNKNOWN]
        short = [w for w in w_states if w.status is PathStatus.DOWN and not w.lost(policy.grace_s)]
        if seen_up or silent:
            what = (f"the witness {policy.witness} still reaches {names(seen_up)}" if seen_up
                    else f"the witness {policy.witness} sent no fresh report about {names(silent)}")
            return make(Action.REFUSE, f"{head} (grace {_secs(policy.grace_s)}), but {what}: region loss not "
                                       f"confirmed; no failover", rule=Rule.REGION_LOSS, deciders=deciders)
        if short:
            return make(Action.WAIT, f"{head}; the witness {policy.witness} sees it down for "
                                     f"{_secs(min(w.down_for for w in short))} only (grace {_secs(policy.grace_s)}); "
                                     f"waiting", rule=Rule.REGION_LOSS)
        deciders = (*deciders, policy.witness)
        witness_note = f"confirmed by the witness {policy.witness}"
    best, why_not = _candidates(snapshot, view, outside, policy, snaps)
    if best is not None and policy.region_loss is RegionLossRule.WITNESS:
        w_cand = path_state(snaps, policy.witness, best.site, policy)
        paths.append(w_cand)
        if w_cand.status is not PathStatus.UP:
            why_not.append(f"the witness {policy.witness} does not reach {best.site}")
            best = None
    head = f"{head} (grace {_secs(policy.grace_s)}), {witness_note}"
    if best is None:
        return make(Action.REFUSE, f"{head}, but no standby of {view.service} in {names(outside)} can be promoted: "
                                   f"{'; '.join(why_not) or 'it has none there'}; no failover",
                    rule=Rule.REGION_LOSS, deciders=deciders)
    return make(Action.FAILOVER, f"{head}; promote {best.site} ({best.describe()}) at epoch {view.next_epoch}",
                target=best.site, new_epoch=view.next_epoch, rule=Rule.REGION_LOSS, deciders=deciders,
                target_standby=best)


def decide_cluster(snapshot: ProbeSnapshot, cluster: ClusterView, history: ProbeHistory,
                   policy: Policy) -> tuple[Decision, ...]:
    """One decision per replicated service, in the cluster's order."""
    return tuple(decide(snapshot, v, history, policy) for v in cluster.services)


def _isolated(snapshot: ProbeSnapshot, primary: str, policy: Policy) -> tuple[bool, str]:
    """Whether, in this snapshot, the primary reaches too few peers to rule out a promotion elsewhere.

    The mirror of the two promotion rules: promotion needs a quorum of the others to see the primary
    down, so the primary gives up when it reaches no more than ``others - quorum`` of them; region
    promotion needs a quorum of the outside sites (and the witness) to see it down, so it gives up when
    it reaches no more than ``outside - quorum`` of them (and not the witness).
    """
    topo = snapshot.topology
    fresh = {o.target for o in snapshot.observations
             if o.observer == primary and o.service is None and o.ok and o.at >= snapshot.at - policy.max_age_s}
    others = [s for s in snapshot.site_names if s != primary]
    if not others:
        return False, f"{primary} is the only site"
    reached = [s for s in others if s in fresh]
    if len(reached) <= len(others) - _quorum(len(others)):
        return True, f"{primary} reaches only {len(reached)}/{len(others)} other sites ({names(reached)})"
    if policy.region_loss is not RegionLossRule.NEVER:
        region = topo.site(primary).region
        outside = [s.name for s in topo.sites if s.region != region]
        if outside and len(topo.sites_of(region)) >= 2:
            out_reached = [s for s in outside if s in fresh]
            witness_ok = policy.region_loss is RegionLossRule.WITNESS and policy.witness in fresh
            if len(out_reached) <= len(outside) - _quorum(len(outside)) and not witness_ok:
                what = f"{names(outside)}" + (f" nor the witness {policy.witness}"
                                              if policy.region_loss is RegionLossRule.WITNESS else "")
                return True, f"{primary} reaches none of {what}"
    return False, f"{primary} reaches {names(reached)}"


def primary_lease(snapshot: ProbeSnapshot, view: ServiceView, history: ProbeHistory, policy: Policy) -> Lease:
    """Whether ``view.primary`` may keep accepting writes, judged from its own probes.

    Its lease lapses once it has been isolated (see ``_isolated``) in every snapshot for ``lease_s``
    without a gap over ``max_gap_s``; a silent snapshot (no report from the primary) counts as isolated.
    It lapses at once when a peer answers with a higher epoch: someone else has been promoted.
    Because ``lease_s + max_gap_s <= grace_s``, the lease has lapsed before any quorum can have seen
    the primary down for the grace period.
    """
    snaps = timeline(snapshot, history)
    primary = view.primary
    newer = [o for o in snapshot.observations
             if o.observer == primary and o.ok and o.epoch is not None and o.epoch > view.epoch]
    if newer:
        top = max(newer, key=lambda o: o.epoch or 0)
        return Lease(False, f"{top.target} answers with epoch {top.epoch}, above {primary}'s {view.epoch}: "
                            f"{primary} is fenced and stops accepting writes for {view.service}")
    promotable = [s.site for s in view.standbys if s.streaming and s.site not in view.fenced]
    if not promotable:
        # a promotion needs a standby that streamed from this primary at the last check: there is none, so
        # nobody can be promoted over it (the lone survivor of a region loss keeps writing while it is alone)
        return Lease(True, f"no standby of {view.service} streams from {primary} (epoch {view.epoch}), so none can "
                           f"be promoted over it: {primary} keeps the primary lease")
    iso_now, why = _isolated(snapshot, primary, policy)
    if not iso_now:
        return Lease(True, f"{why}: {primary} keeps the primary lease of {view.service} (epoch {view.epoch})")
    start = snapshot.at
    for prev, cur in zip(reversed(snaps[:-1]), reversed(snaps[1:])):
        if cur.at - prev.at > policy.max_gap_s or not _isolated(prev, primary, policy)[0]:
            break
        start = prev.at
    span = snapshot.at - start
    if span >= policy.lease_s:
        return Lease(False, f"{why} for {_secs(span)} (lease {_secs(policy.lease_s)}): {primary} stops accepting "
                            f"writes for {view.service}", isolated_for=span)
    return Lease(True, f"{why} for {_secs(span)} only (lease {_secs(policy.lease_s)}): {primary} still accepts "
                       f"writes for {view.service}", isolated_for=span)
