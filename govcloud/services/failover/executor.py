"""The actions: a failover decision carried out as its runbook, every step journaled before its side effect.

A rerun resumes from the first step that is not ``done`` instead of promoting twice; the cluster's new
epoch is recorded before anything is fenced or promoted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from govcloud.adapters.failover_journal import ClusterRow, Journal, RunRow
from govcloud.adapters.postgres import PgTarget, write_check
from govcloud.adapters.ports import EndpointPort
from govcloud.failover.model import Decision, FailoverRefused
from govcloud.failover.runbook import StepKind, runbook_for
from govcloud.services.failover.backend import Backend, FailoverFailed


@dataclass
class RunResult:
    run: RunRow
    steps: list[tuple[int, str, str, str, str]]
    resumed: bool = False


class Executor:
    """Carries out a runbook, journaling every step before its side effect (resumable, never twice)."""

    def __init__(self, backend: Backend, journal: Journal, endpoints: EndpointPort,
                 reachable: Callable[[str], bool] | None = None,
                 verify: Callable[[PgTarget, str, str], float] = write_check) -> None:
        self.backend = backend
        self.journal = journal
        self.endpoints = endpoints
        self._switched: dict[str, str] = {}  # service -> the address this executor switched its name to
        self.step_seconds: dict[str, float] = {}  # step kind -> how long it took in this process (drill reports)
        self.reachable = reachable or (lambda site: True)
        self.verify = verify

    def execute(self, decision: Decision, loss_at: float | None = None,
                measure: Callable[[str, float], tuple[int | None, float | None]] | None = None) -> RunResult:
        """Run (or resume) the failover of ``decision``. ``measure(new_primary, loss_at)`` -> (lost commits, RPO s)."""
        svc = decision.service
        with self.journal.locked():
            run = self.journal.open_run(svc)
            resumed = run is not None
            if run is None:
                cur = self.journal.cluster(svc)
                done = self.journal.run_for_epoch(svc, decision.new_epoch or -1)
                if done is not None and done.status == "ok":
                    return RunResult(done, self.journal.steps(done.id), resumed=True)  # already carried out
                if cur is None or cur.epoch != decision.epoch or cur.primary != decision.primary:
                    raise FailoverRefused(
                        f"{svc}: decision made at epoch {decision.epoch} for primary {decision.primary}, but the "
                        f"journal says epoch {cur.epoch if cur else '?'} with primary {cur.primary if cur else '?'}",
                        hint="decide again from a fresh snapshot (`govcloud failover status`)")
                book = runbook_for(decision)  # FailoverRefused for anything but a failover decision
                run = self.journal.start_run(svc, book, loss_at)
            self._run_steps(run, measure)
            final = self.journal.run_for_epoch(svc, run.new_epoch)
            assert final is not None
            return RunResult(final, self.journal.steps(final.id), resumed=resumed)

    def _run_steps(self, run: RunRow, measure: Callable[[str, float], tuple[int | None, float | None]] | None) -> None:
        svc, old, new, epoch = run.service, run.old_primary, run.new_primary, run.new_epoch
        for number, kind, site, status, _detail in self.journal.steps(run.id):
            if status == "done":
                continue
            self.journal.mark_step(run.id, number, "running")
            try:
                started = time.monotonic()
                detail = self._step(StepKind(kind), run, old, new, epoch)
                self.step_seconds[kind] = time.monotonic() - started
                if StepKind(kind) is StepKind.VERIFY_WRITES:
                    self.journal.mark_writable(run.id)
                if StepKind(kind) is StepKind.RECORD_RTO_RPO:
                    cur = self.journal.run_for_epoch(svc, epoch)
                    w = (cur.writable_at if cur else None) or time.time()
                    rto = (w - run.loss_at) if run.loss_at is not None else None
                    lost, rpo_s = measure(new, run.loss_at or w) if measure else (None, None)
                    if rpo_s is None and lost == 0:
                        rpo_s = 0.0
                    self.journal.finish_run(run.id, "running", rto_s=rto, rpo_s=rpo_s, lost_commits=lost)
                    detail = (f"RTO {rto:.2f} s (loss -> writable)" if rto is not None else "RTO unknown") + \
                             (f"; {lost} acknowledged commits lost" if lost is not None else "") + \
                             (f"; RPO {rpo_s:.2f} s" if rpo_s is not None else "")
            except Exception as exc:
                self.journal.mark_step(run.id, number, "failed", f"{type(exc).__name__}: {exc}")
                self.journal.finish_run(run.id, "failed", error=f"step {number} {kind}: {exc}")
                raise FailoverFailed(f"{svc}: failover to {new} (epoch {epoch}) failed at step {number} {kind}: {exc}",
                                     hint="fix the cause and run `govcloud failover execute --yes` again: it resumes "
                                          "from this step") from exc
            self.journal.mark_step(run.id, number, "done", detail)
        self.journal.finish_run(run.id, "ok")

    def _step(self, kind: StepKind, run: RunRow, old: str, new: str, epoch: int) -> str:
        svc = run.service
        if kind is StepKind.FENCE_OLD_PRIMARY:
            cur = self.journal.cluster(svc)
            fenced = tuple(dict.fromkeys((*(cur.fenced if cur else ()), old)))
            with self.journal.tx() as db:  # the new epoch is recorded before any side effect
                self.journal.set_cluster(ClusterRow(svc, new, epoch, tuple(f for f in fenced if f != new)), db)
            if self.reachable(old):
                return f"epoch {epoch} recorded; {old}: {self.backend.fence(old, epoch - 1, f'failover to {new}')}"
            return (f"epoch {epoch} recorded; {old} unreachable: its writes stopped when its lease lapsed "
                    f"(it is refused as a primary at epoch {epoch - 1} and rejoins at failback)")
        if kind is StepKind.PROMOTE:
            return self.backend.promote(new, epoch)
        if kind is StepKind.REPOINT_STANDBYS:
            notes = []
            for s in self.backend.members():
                if s in (old, new):
                    continue
                cur = self.journal.cluster(svc)
                if cur is not None and s in cur.fenced:
                    continue
                notes.append(self.backend.repoint(s, new) if self.reachable(s) else f"{s}: unreachable, rejoins later")
            return "; ".join(notes) or "no other standby"
        if kind is StepKind.MOVE_ENDPOINT:
            t = self.backend.target(new)
            # compare-and-swap: the name must still point at the old primary (a rerun finds it moved already)
            moved = self.endpoints.switch(svc, address=t.host, port=t.port, site=new,
                                          expect=self.backend.target(old).host,
                                          reason=f"failover epoch {epoch}: {old} -> {new}")
            self._switched[svc] = moved.address
            return f"{svc} -> {moved.address} ({new}), generation {moved.version}"
        if kind is StepKind.VERIFY_WRITES:
            t = self.backend.target(new)
            # through the address the name points at: as switched by this run, else as the servers answer
            address = self._switched.get(svc)
            if address is None:
                ep = self.endpoints.lookup(svc)
                address = t.host if ep is None else ep.address
            t = replace(t, host=address)
            secs = self.verify(t, "epoch", str(epoch))
            return f"wrote and read back epoch {epoch} through {t.host}:{t.port} in {secs * 1000:.0f} ms"
        return ""
