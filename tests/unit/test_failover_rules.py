"""The failover rules added for the lab drills (pure), and the executor's journal: resumable, never twice.

The decision tests simulate probes from a ground truth, like test_failover_decide.py. The executor
test uses a recording backend only to inject a crash in the middle of a runbook (a real PostgreSQL
cannot be made to fail at exactly that step); the journal (SQLite) is real, names are in memory (MemoryEndpoints).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from govcloud.adapters.postgres import PgTarget
from govcloud.errors import ExitCode, InvalidInputError
from govcloud.failover.decide import decide, primary_lease
from govcloud.failover.model import (
    Action,
    FailoverRefused,
    Observation,
    Policy,
    ProbeHistory,
    ProbeSnapshot,
    ReplicationMode,
    Rule,
    ServiceView,
    Standby,
)
from govcloud.services import probes as P
from govcloud.services.failover import (
    ClusterRow,
    Executor,
    FailoverFailed,
    Journal,
    lab_topology,
    to_core_snapshot,
)
from govcloud.services.failover_drill import LAB_POLICY, parse_scenario
from tests.unit.endpoint_fake import MemoryEndpoints

REGIONS = {"gz-a": "gz", "gz-b": "gz", "st-a": "st"}
TOPO = lab_topology(REGIONS)
W = "controller"
NODES = (*REGIONS, W)
POLICY = Policy(grace_s=4.0, lease_s=2.0, max_gap_s=1.5, max_age_s=2.5, witness=W)


def view(epoch: int = 3, primary: str = "gz-a", streaming: bool = True) -> ServiceView:
    sbs = tuple(Standby(s, ReplicationMode.SYNC if s == "gz-b" else ReplicationMode.ASYNC, streaming=streaming,
                        lag_bytes=0) for s in REGIONS if s != primary)
    return ServiceView("pg", primary, epoch, sbs)


def snap(t: float, isolated: frozenset[str], silent: frozenset[str] = frozenset()) -> ProbeSnapshot:
    """Every node probes every other (and pg on each site); ``isolated`` sites reach nobody, alive."""
    obs = []
    for o in NODES:
        if o in silent:
            continue
        for target in NODES:
            if target == o:
                continue
            ok = o not in isolated and target not in isolated
            obs.append(Observation(o, target, ok, t))
            if target in REGIONS:
                obs.append(Observation(o, target, ok or o == target, t, service="pg"))
    return ProbeSnapshot(t, TOPO, tuple(obs))


def decisions(isolated: frozenset[str], ticks: int, v: ServiceView, silent: frozenset[str] = frozenset()) -> list[Any]:
    hist = ProbeHistory()
    out = []
    for t in range(ticks):
        s = snap(t * 0.5, isolated if t >= 2 else frozenset(), silent if t >= 2 else frozenset())
        out.append(decide(s, v, hist, POLICY))
        hist = hist.add(s, keep_s=12)
    return out


def test_a_standby_cut_off_with_the_primary_is_never_promoted() -> None:
    # gz-a and gz-b both cut off (alive, still reporting through the lab's console): the sync standby is
    # reachable from nobody but itself, so Shantou is promoted instead of a primary nobody could reach
    ds = decisions(frozenset({"gz-a", "gz-b"}), 14, view())
    f = [d for d in ds if d.action is Action.FAILOVER]
    assert f and f[0].target == "st-a"


def test_region_rule_decides_when_the_cut_region_sends_no_reports() -> None:
    ds = decisions(frozenset({"gz-a", "gz-b"}), 14, view(), silent=frozenset({"gz-a", "gz-b"}))
    f = [d for d in ds if d.action is Action.FAILOVER]
    assert f and f[0].target == "st-a" and f[0].rule is Rule.REGION_LOSS
    assert "confirmed by the witness controller" in f[0].reason


def test_site_loss_still_promotes_the_sync_standby() -> None:
    ds = decisions(frozenset({"gz-a"}), 14, view())
    f = [d for d in ds if d.action is Action.FAILOVER]
    assert f[0].target == "gz-b" and f[0].rule is Rule.SITE_LOSS


def test_the_lone_survivor_keeps_its_lease_while_no_standby_streams() -> None:
    v = view(epoch=4, primary="st-a", streaming=False)  # after a region loss: nobody follows st-a yet
    hist = ProbeHistory()
    for t in range(12):
        s = snap(t * 0.5, frozenset({"gz-a", "gz-b"}))
        lease = primary_lease(s, v, hist, POLICY)
        hist = hist.add(s, keep_s=12)
    assert lease.holds and "none can be promoted" in lease.reason
    # ... but an isolated primary with a streaming standby gives its lease up
    v2 = view()
    hist = ProbeHistory()
    for t in range(12):
        s = snap(t * 0.5, frozenset({"gz-a"}))
        lease = primary_lease(s, v2, hist, POLICY)
        hist = hist.add(s, keep_s=12)
    assert not lease.holds


def test_parse_scenario() -> None:
    assert parse_scenario("region-loss:gz", REGIONS).sites == ("gz-a", "gz-b")
    assert parse_scenario("partition:gz-a/st-a", REGIONS).sites == ("gz-a", "st-a")
    assert parse_scenario("site-loss:gz-a", REGIONS).expects_failover
    assert not parse_scenario("flap:gz-b", REGIONS).expects_failover
    for bad in ("site-loss:gz-c", "partition:gz-a/gz-a", "meteor:gz", "region-loss:xx"):
        with pytest.raises(InvalidInputError):
            parse_scenario(bad, REGIONS)
    assert LAB_POLICY.lease_s + LAB_POLICY.max_gap_s <= LAB_POLICY.grace_s


def test_probe_results_of_services_do_not_count_as_site_reachability() -> None:
    res = (P.ProbeResult("gz-b", "gz-a", True, 0.001, 1.0), P.ProbeResult("st-a", "gz-a", True, 0.001, 1.0),
           P.ProbeResult("gz-b", "gz-a", False, None, 1.0, "refused", service="pg"),
           P.ProbeResult("st-a", "gz-a", False, None, 1.0, "refused", service="pg"))
    s = P.ProbeSnapshot(2.0, tuple(sorted(REGIONS.items())), res)
    v = P.aggregate(s).site("gz-a")
    assert v is not None and v.up is True
    core = to_core_snapshot(s, TOPO)
    assert core.path("gz-b", "gz-a", "pg") is not None and core.path("gz-b", "gz-a").ok  # type: ignore[union-attr]


class Recorder:
    """A backend that records the runbook's calls; ``fail_promote`` injects one crash at the promote step."""

    service = "pg"
    home_primary = "gz-a"

    def __init__(self, fail_promote: int = 0) -> None:
        self.calls: list[str] = []
        self.fail_promote = fail_promote

    def members(self) -> list[str]:
        return list(REGIONS)

    def target(self, site: str) -> PgTarget:
        return PgTarget(f"10.0.0.{list(REGIONS).index(site) + 1}", 5432, "postgres", "postgres")

    def fence(self, site: str, epoch: int, reason: str) -> str:
        self.calls.append(f"fence {site}")
        return "stopped"

    def promote(self, site: str, epoch: int) -> str:
        if self.fail_promote:
            self.fail_promote -= 1
            raise RuntimeError("controller crashed")
        self.calls.append(f"promote {site}@{epoch}")
        return "promoted"

    def repoint(self, site: str, primary: str) -> str:
        self.calls.append(f"repoint {site}->{primary}")
        return "ok"


def test_executor_journals_each_step_resumes_after_a_crash_and_never_promotes_twice(tmp_path: Path) -> None:
    s = [snap(t * 0.5, frozenset({"gz-a"}) if t >= 2 else frozenset()) for t in range(14)]
    hist, d = ProbeHistory(), None
    for x in s:
        d = decide(x, view(), hist, POLICY)
        hist = hist.add(x, keep_s=12)
        if d.action is Action.FAILOVER:
            break
    assert d is not None and d.action is Action.FAILOVER
    journal = Journal(tmp_path / "failover.db")
    with journal.tx() as db:
        journal.set_cluster(ClusterRow("pg", "gz-a", 3, ()), db)
    smap = MemoryEndpoints()
    smap.switch("pg", address="10.0.0.1", port=5432, site="gz-a")
    backend = Recorder(fail_promote=1)
    verified: list[str] = []

    def verify(t: PgTarget, k: str, v: str) -> float:
        verified.append(f"{t.host} {k}={v}")
        return 0.001

    ex = Executor(backend, journal, smap, reachable=lambda site: site != "gz-a", verify=verify)  # type: ignore[arg-type]
    loss_at = time.time() - 4  # the controller's clock: the outage began 4 s ago
    with pytest.raises(FailoverFailed, match="step 2 promote"):
        ex.execute(d, loss_at=loss_at)
    # the epoch was recorded before the crash: a new decision at the old epoch is stale
    assert journal.cluster("pg") == ClusterRow("pg", "gz-b", 4, ("gz-a",))
    res = ex.execute(d, loss_at=loss_at)  # the rerun resumes at the failed step
    assert res.resumed and res.run.status == "ok" and res.run.rto_s == pytest.approx(4, abs=0.5)
    again = ex.execute(d, loss_at=loss_at)  # and a third run does nothing at all
    assert again.run.id == res.run.id
    assert backend.calls == ["promote gz-b@4", "repoint st-a->gz-b"]  # gz-a unreachable: its lease fenced it
    assert verified == ["10.0.0.2 epoch=4"]
    ep = smap.lookup("pg")
    assert ep is not None and ep.address == "10.0.0.2" and ep.site == "gz-b"
    assert [st for _n, _k, _s, st, _d in res.steps] == ["done"] * 6
    with pytest.raises(FailoverRefused) as exc:  # a stale decision from before the failover
        Executor(backend, Journal(tmp_path / "failover.db"), smap).execute(  # type: ignore[arg-type]
            decide(s[0], view(epoch=3), ProbeHistory(), POLICY))
    assert exc.value.exit_code == ExitCode.REFUSED
    n = sqlite3.connect(tmp_path / "failover.db").execute("SELECT count(*) FROM runs").fetchone()[0]
    assert n == 1
