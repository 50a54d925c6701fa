"""What the HA layer looks like right now, as typed data, and the readings drawn from it (pure).

Why typed here and not read from Patroni's JSON where it is used: ``ha status``, ``ha deploy``'s waits
and (next) the drills all ask the same questions (who leads, is there a synchronous standby, does the
standby cluster stream, does every site's name answer the leader), and must answer them the same way.
The adapter (``govcloud.adapters.patroni``) turns Patroni's ``GET /cluster`` and etcd's ``GET
/health`` into these values; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from govcloud.failover.shape import ClusterRole, ClusterShape

LEADER_ROLES = ("leader", "standby_leader")  # Patroni's names for the member holding its cluster's leader key
RUNNING_STATES = ("running", "streaming")


@dataclass(frozen=True)
class MemberView:
    """One Patroni member as its cluster reports it (Patroni's role and state names)."""

    name: str
    role: str  # leader | sync_standby | replica | standby_leader
    state: str  # running | streaming | starting | stopped | ...
    host: str
    timeline: int | None = None
    lag_bytes: int | None = None  # behind the leader (replicas); None when Patroni reports none


@dataclass(frozen=True)
class ClusterView:
    """One Patroni cluster, as one of its members answered (``asked``), or why none did (``error``)."""

    scope: str
    members: tuple[MemberView, ...] = ()
    asked: str = ""  # the REST URL that answered
    error: str = ""

    @property
    def leader(self) -> MemberView | None:
        return next((m for m in self.members if m.role in LEADER_ROLES and m.state in RUNNING_STATES), None)

    @property
    def sync_standby(self) -> MemberView | None:
        return next((m for m in self.members if m.role == "sync_standby" and m.state in RUNNING_STATES), None)


@dataclass(frozen=True)
class EtcdView:
    """One etcd ring member's own answer to ``GET /health``."""

    scope: str
    member: str
    site: str
    healthy: bool
    error: str = ""


@dataclass(frozen=True)
class NameView:
    """What one site's name server answers for the service name."""

    site: str
    addresses: tuple[str, ...]
    error: str = ""


@dataclass(frozen=True)
class HaView:
    clusters: tuple[ClusterView, ...]
    etcd: tuple[EtcdView, ...]
    names: tuple[NameView, ...]

    def cluster(self, scope: str) -> ClusterView | None:
        return next((c for c in self.clusters if c.scope == scope), None)


def ready(shape: ClusterShape, view: ClusterView) -> str:
    """Why ``view`` is not yet what ``shape`` asks for ("" once it is): a running leader, every member
    running or streaming, and in a synchronous cluster a synchronous standby."""
    if view.error:
        return view.error
    if view.leader is None:
        return f"{shape.scope} has no running leader yet"
    missing = sorted({h.name for h in shape.members} - {m.name for m in view.members if m.state in RUNNING_STATES})
    if missing:
        return f"{shape.scope}: {', '.join(missing)} not running yet"
    if shape.synchronous and view.sync_standby is None:
        return f"{shape.scope} has no synchronous standby yet"
    if shape.role is ClusterRole.STANDBY and view.leader.role != "standby_leader":
        return f"{shape.scope}'s leader is {view.leader.role}, not a standby leader"
    return ""


def names_agree(view: HaView, address: str) -> tuple[str, ...]:
    """The sites whose name server does not answer exactly ``address``."""
    return tuple(n.site for n in view.names if n.addresses != (address,))


def choose(scope: str, views: list[ClusterView], elected: str | None) -> ClusterView:
    """The view to believe, of those the members gave: one whose leader is the member etcd's leader key
    names (``elected``, a quorum read). A member cut off from etcd keeps answering with its last view
    of the cluster, stale from the moment it was cut; which one is stale only the key can tell, so
    when no view agrees with it, or the key could not be read and the views disagree, none is believed."""
    answered = [v for v in views if not v.error]
    if not answered:
        return ClusterView(scope, error="; ".join(v.error for v in views) or f"no member of {scope} answered")
    leaders = {v.leader.name if v.leader else "" for v in answered}
    if elected is not None:
        agreeing = [v for v in answered if v.leader is not None and v.leader.name == elected]
        if agreeing:
            return agreeing[0]
        return ClusterView(scope, error=f"no member's view of {scope} has {elected} leading, as etcd's leader key "
                                        f"says (they say: {', '.join(sorted(leaders - {''})) or 'no leader'})")
    if len(leaders) > 1:
        return ClusterView(scope, error=f"the members of {scope} disagree on the leader ({', '.join(sorted(leaders))}) "
                                        "and etcd's leader key could not be read")
    return answered[0]
