"""The accelerator's decision: when may govcloud cut Patroni's wait for the dead leader's key (pure).

Patroni alone waits for the leader key's ``ttl`` (20 s at least) before its synchronous standby may
take the lead. govcloud's quorum detector confirms a site loss from the other sites sooner. When it
has, and only then, revoking the dead leader's etcd lease makes the key vanish at once, and Patroni
elects the synchronous standby (docs/ha.md, "Accelerator"). Nothing here acts: the adapter fences
what it can reach and revokes ``lease``; this module only says whether, and why.

Why it is safe (docs/ha.md has the whole argument):

- **No acknowledged commit is lost.** Only a member that was the synchronous standby may be elected
  by Patroni in synchronous mode, and every acknowledged commit is on it. The accelerator adds no
  candidate: it only removes the dead leader's key early. Without a synchronous standby there is
  nothing to accelerate (``refuse``): Patroni decides after the ttl, as always.
- **A live leader is not deposed by a partition.** The leader's site must be unreachable from a
  majority of the *other* sites, continuously for ``confirm_s`` (a flap restarts the count). A link
  cut between two sites leaves the leader reachable from the third: no quorum, no revoke.
- **Only the dead leader's key is revoked.** The lease comes from the leader key as read together with
  the member it names, in the state that elected that leader; if Patroni has already elected anyone
  else, that lease is gone or not theirs, and revoking it changes nothing.
- **An old leader that is alive but cut off demotes itself**: Patroni's failsafe mode keeps a
  primary writable only while it reaches every member; cut from its peers and from etcd, it stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from govcloud.failover.decide import PathStatus, names, path_state, reported, timeline
from govcloud.failover.model import Policy, ProbeHistory, ProbeSnapshot
from govcloud.model.ha import Accelerator


class Verdict(StrEnum):
    OFF = "off"  # the accelerator is turned off: Patroni alone decides
    NONE = "none"  # the leader's site is fine, as far as a quorum can tell
    WAIT = "wait"  # a quorum sees the leader's site down; confirm_s is not over yet
    REVOKE = "revoke"  # confirmed: fence what can be reached, then revoke ``lease``
    REFUSE = "refuse"  # trouble, but no rule allows acceleration: Patroni decides after its ttl


@dataclass(frozen=True)
class Member:
    """A Patroni member as its cluster last showed it (``GET /cluster``)."""

    name: str
    site: str
    role: str  # leader, sync_standby, replica, standby_leader
    state: str  # running, streaming, stopped, ...
    lag_bytes: int | None = None


@dataclass(frozen=True)
class LeaderKey:
    """The cluster's leader key in etcd: who holds it, and the lease that keeps it alive."""

    member: str
    lease: int
    revision: int  # the key's mod revision: which election made it


@dataclass(frozen=True)
class ClusterState:
    """What Patroni and etcd showed of one cluster the last time they were read (at ``at``)."""

    scope: str
    members: tuple[Member, ...]
    leader_key: LeaderKey | None
    at: float

    def member(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)


@dataclass(frozen=True)
class Acceleration:
    verdict: Verdict
    reason: str
    leader: str | None = None
    lease: int | None = None  # to revoke (REVOKE only)
    successor: str | None = None  # whom Patroni will elect: the synchronous standby
    evidence: tuple[str, ...] = ()


def accelerate(snapshot: ProbeSnapshot, history: ProbeHistory, cluster: ClusterState, accel: Accelerator,
               policy: Policy, max_lag_bytes: int) -> Acceleration:
    """Whether to revoke the leader's lease now, given the probes and the cluster's last known state."""
    if not accel.enabled:
        return Acceleration(Verdict.OFF, f"{cluster.scope}: the accelerator is off; Patroni alone decides "
                                         "(after the leader key's ttl)")
    key = cluster.leader_key
    leader = cluster.member(key.member) if key else None
    if key is None or leader is None:
        return Acceleration(Verdict.NONE, f"{cluster.scope}: no leader key held; Patroni is electing, "
                                          "nothing to accelerate")
    snaps = timeline(snapshot, history)
    others = [s for s in snapshot.site_names if s != leader.site]
    states = [path_state(snaps, o, leader.site, policy) for o in others]
    evidence = tuple(p.describe() for p in states)
    need = len(others) // 2 + 1
    down = [p for p in states if p.status is PathStatus.DOWN]
    confirmed = [p.observer for p in down if p.down_for >= accel.confirm_s]

    def say(verdict: Verdict, reason: str, **kw: object) -> Acceleration:
        return Acceleration(verdict, reason, leader=leader.name, evidence=evidence, **kw)  # type: ignore[arg-type]

    where = f"{leader.site} (leader {leader.name} of {cluster.scope})"
    if not others or len(down) < need:
        up = [p.observer for p in states if p.status is PathStatus.UP]
        return say(Verdict.NONE, f"{where} reachable from {names(up)}; "
                                 f"{len(down)}/{len(others)} see it down (need {need}): no early revoke")
    if len(confirmed) < need:
        shortest = min(p.down_for for p in down)
        return say(Verdict.WAIT, f"{where} unreachable from {names([p.observer for p in down])} for "
                                 f"{shortest:.1f} s: confirming for {accel.confirm_s:g} s")
    successor = _successor(cluster, leader.site, max_lag_bytes)
    head = f"{where} unreachable from {names(confirmed)} for {accel.confirm_s:g} s or more: quorum {len(confirmed)}/{len(others)}"
    if isinstance(successor, str):
        return say(Verdict.REFUSE, f"{head}, but {successor}; Patroni decides after the leader key's ttl")
    if not reported(snapshot, successor.site, policy):
        return say(Verdict.REFUSE, f"{head}, but the synchronous standby's site {successor.site} sends no fresh "
                                   "report either; Patroni decides after the leader key's ttl")
    return say(Verdict.REVOKE, f"{head}; revoke the lease {key.lease:#x} of its leader key (revision "
                               f"{key.revision}): Patroni elects {successor.name} in {successor.site}, the "
                               "synchronous standby", lease=key.lease, successor=successor.name)


def _successor(cluster: ClusterState, lost_site: str, max_lag_bytes: int) -> Member | str:
    """The synchronous standby Patroni will elect, or why there is none to accelerate to."""
    sync = [m for m in cluster.members if m.role == "sync_standby"]
    if not sync:
        return f"{cluster.scope} had no synchronous standby"
    m = sync[0]
    if m.site == lost_site:
        return f"its synchronous standby {m.name} is in the lost site too"
    if m.state not in ("streaming", "running"):
        return f"its synchronous standby {m.name} was {m.state}"
    if m.lag_bytes is None or m.lag_bytes > max_lag_bytes:
        lag = "unknown" if m.lag_bytes is None else f"{m.lag_bytes} bytes"
        return f"its synchronous standby {m.name} lagged {lag} (at most {max_lag_bytes})"
    return m
