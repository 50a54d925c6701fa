"""The failover runbook as data, built from a Decision (pure: the adapter executes exactly this list).

Diff, then apply: ``runbook_for`` is the plan (printed by ``failover status`` / ``execute --dry-run``),
and the executor's only job is to run its steps in order, stopping at the first that fails. Fencing
comes first so that the old primary is told (where it can be reached) that its epoch is over before
anyone else accepts writes; its own lease has already lapsed (see ``decide.primary_lease``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from govcloud.failover.model import Action, Decision, FailoverRefused, ReplicationMode


class StepKind(StrEnum):
    FENCE_OLD_PRIMARY = "fence-old-primary"  # record the new epoch; block the old primary's writes where reachable
    PROMOTE = "promote"  # promote the standby, stamped with the new epoch
    REPOINT_STANDBYS = "repoint-standbys"  # the remaining reachable standbys follow the new primary
    MOVE_ENDPOINT = "move-endpoint"  # the service's name (DNS) -> the new primary
    VERIFY_WRITES = "verify-writes"  # a real write through the moved endpoint, read back
    RECORD_RTO_RPO = "record-rto-rpo"  # loss -> writable, and acknowledged commits lost


@dataclass(frozen=True)
class Step:
    """One runbook step; ``site`` is where it acts, ``epoch`` the fencing epoch it establishes or checks."""

    number: int
    kind: StepKind
    service: str
    site: str
    epoch: int
    detail: str

    def render(self) -> str:
        return f"{self.number}. {self.kind.value} {self.service}@{self.site} (epoch {self.epoch}): {self.detail}"


@dataclass(frozen=True)
class Runbook:
    """The ordered steps of one failover, with the decision that justified it."""

    service: str
    old_primary: str
    new_primary: str
    new_epoch: int
    max_rpo_bytes: int | None  # 0 for the synchronous standby; the last known lag for an async one
    steps: tuple[Step, ...]
    reason: str

    def render(self) -> str:
        return "\n".join([f"failover {self.service}: {self.reason}", *(s.render() for s in self.steps)])


def runbook_for(decision: Decision) -> Runbook:
    """The steps that carry out ``decision``.

    Raises FailoverRefused (with the decision's reason) for any decision other than ``failover``.
    """
    if decision.action is not Action.FAILOVER or decision.target is None or decision.new_epoch is None:
        raise FailoverRefused(f"{decision.service}: {decision.action.value}: {decision.reason}",
                              hint="only a 'failover' decision is carried out; see `govcloud failover status`")
    sb = decision.target_standby
    sync = sb is not None and sb.mode is ReplicationMode.SYNC
    rpo = 0 if sync else (sb.lag_bytes if sb is not None else None)
    svc, old, new, epoch = decision.service, decision.primary, decision.target, decision.new_epoch
    rpo_text = ("must be 0 (synchronous standby)" if sync
                else f"bounded by the last known lag ({'unknown' if rpo is None else f'{rpo} B'})")
    specs: list[tuple[StepKind, str, str]] = [
        (StepKind.FENCE_OLD_PRIMARY, old,
         (f"record epoch {epoch} as current; mark {old} fenced (epoch {decision.epoch}) and block its writes "
          f"where it is reachable; a later claim from {old} at epoch {decision.epoch} is refused")),
        (StepKind.PROMOTE, new, f"promote the standby on {new} and stamp it with epoch {epoch}"),
        (StepKind.REPOINT_STANDBYS, new,
         f"point the other standbys of {svc} that are reachable at {new} (the rest rejoin at failback)"),
        (StepKind.MOVE_ENDPOINT, new, f"switch the name {svc} to {new} (DNS compare-and-swap)"),
        (StepKind.VERIFY_WRITES, new, f"write through the {svc} endpoint and read it back from {new}"),
        (StepKind.RECORD_RTO_RPO, new, f"record RTO (loss -> writable) and RPO, which {rpo_text}"),
    ]
    steps = tuple(Step(i, kind, svc, site, epoch, detail) for i, (kind, site, detail) in enumerate(specs, 1))
    return Runbook(service=svc, old_primary=old, new_primary=new, new_epoch=epoch, max_rpo_bytes=rpo,
                   steps=steps, reason=decision.reason)
