"""`ha drill`: break the estate on purpose, keep writing, let Patroni act, measure, undo, report.

What a drill does, in order (govcloud/failover/ha_drill.py has the scenarios and why faults are
blackhole routes):

1. refuses unless the primary cluster is whole and the name is on its leader; undoes any fault a killed
   drill left (``ip route flush proto 77`` on every database host);
2. starts a writer that commits a numbered row every ``interval`` through the service name, resolved
   as a client resolves it, and the drill's own name follower (what ``ha watch`` does in production);
3. injects the faults over SSH, then watches: the leader each member reports, how many members accept
   writes at once (sampled), and the writer's acknowledged commits;
4. for a lost leader: waits for the new leader and its first acknowledged commit (the RTO); otherwise
   watches for ``observe_s`` that nothing fails over;
5. undoes the faults, waits for the cluster to be whole again (a lost member rejoins as a replica,
   pg_rewind through Patroni), counts the acknowledged commits the final leader lacks (the RPO), and
   writes the report to ``<root>/.govcloud/drills/``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from govcloud.adapters.ha_secrets import load_or_create
from govcloud.adapters.patroni import PatroniHttp
from govcloud.adapters.ports import Endpoint
from govcloud.adapters.postgres import (
    PgTarget,
    PostgresError,
    Writer,
    connect,
    present_ids,
)
from govcloud.adapters.ssh import connect as ssh_connect
from govcloud.errors import RefusedError, RuntimeFailure
from govcloud.failover.ha_deploy import DeployPlan, plan_deploy
from govcloud.failover.ha_drill import (
    DRILL_ROUTE_PROTO,
    Ack,
    Kind,
    RouteFault,
    Scenario,
    faults,
    leader_lost,
    outcome,
)
from govcloud.failover.ha_drill import parse_scenario as parse
from govcloud.failover.ha_status import ready
from govcloud.failover.patroni_config import SUPERUSER
from govcloud.failover.shape import HaShape, plan_shape
from govcloud.inventory import load_inventory
from govcloud.model.ha import HaPostgres
from govcloud.services.ha import current_view, follower, ha_of, wait_settled
from govcloud.services.names import NameService
from govcloud.services.names_app import name_service
from govcloud.services.provision import ops_key, state_dir

SAMPLE_S = 0.5


@dataclass(frozen=True)
class HaDrillOptions:
    known_hosts: Path
    ssh_key: Path | None = None
    dns_key: Path | None = None
    deadline_s: float = 60.0  # a lost leader must be replaced, and written to, within this
    observe_s: float | None = None  # how long a scenario without failover is watched [ttl + 5 s: longer
    # than a wrongful failover could take, the leader key expiring first]
    rejoin_s: float = 90.0  # after the faults are undone, the cluster must be whole again within this
    interval_s: float = 0.05  # the writer's pace


@dataclass(frozen=True)
class HaDrillReport:
    run_id: str
    scenario: str
    old_leader: str
    new_leader: str
    leader_lost: bool
    rto_s: float | None
    lost: tuple[int, ...]
    acked: int
    longest_pause_s: float
    max_writable: int  # the most members that accepted writes in one sample (must be 1)
    leaders_seen: tuple[str, ...]
    leader_seen_s: float | None  # cut -> the new leader first seen (sampled every 0.5 s)
    name_moved_s: float | None  # cut -> the name switched to the new leader (by the drill's follower)
    names_after: dict[str, list[str]]  # what each site's server answered once the leader was replaced
    rejoined: dict[str, str]  # each member's role once the faults were undone
    report_path: str = ""


class RouteFaults:
    """Blackhole routes on the database hosts over SSH (strict host keys)."""

    def __init__(self, ha: HaPostgres, known_hosts: Path, key: Path) -> None:
        self.endpoints = {h.name: Endpoint(h.address, known_hosts, key, name=h.name) for h in ha.hosts}

    def _on(self, host: str, command: str) -> None:
        with ssh_connect(self.endpoints[host]) as session:
            session.run(command, timeout=30)

    def inject(self, routes: Iterable[RouteFault]) -> None:
        by_host: dict[str, list[str]] = {}
        for f in routes:
            by_host.setdefault(f.host, []).append(f"ip route replace blackhole {f.peer}/32 proto {DRILL_ROUTE_PROTO}")
        with ThreadPoolExecutor(max_workers=max(1, len(by_host))) as pool:
            list(pool.map(lambda item: self._on(item[0], " && ".join(item[1])), by_host.items()))

    def undo(self) -> None:
        """Every drill route on every host (also a killed drill's): idempotent."""
        with ThreadPoolExecutor(max_workers=max(1, len(self.endpoints))) as pool:
            list(pool.map(lambda h: self._on(h, f"ip route flush proto {DRILL_ROUTE_PROTO}"), self.endpoints))


class _Watch:
    """Samples, every SAMPLE_S, the leader the members report and how many members accept writes."""

    def __init__(self, plan: DeployPlan, shape: HaShape, password: str) -> None:
        self.plan, self.shape, self.password = plan, shape, password
        self.leaders: list[str] = []
        self.leader_since: list[float] = []  # when each of ``leaders`` was first seen (unix time)
        self.max_writable = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="govcloud-drill-watch", daemon=True)

    def _writable(self, address: str) -> bool:
        try:
            with connect(PgTarget(address, self.plan.ha.port, SUPERUSER, "postgres", self.password), precheck_s=0.3) as c:
                return not c.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        except PostgresError:
            return False
        except Exception:  # noqa: BLE001 - a member shutting down mid-query: not writable
            return False

    def _run(self) -> None:
        patroni = PatroniHttp(timeout=1.0)
        members = self.shape.primary.members
        with ThreadPoolExecutor(max_workers=len(members)) as pool:
            while not self.stop.is_set():
                view = current_view(patroni, self.plan, self.shape.primary)
                if view.leader is not None and (not self.leaders or self.leaders[-1] != view.leader.name):
                    self.leaders.append(view.leader.name)
                    self.leader_since.append(time.time())
                writable = sum(pool.map(self._writable, [h.address for h in members]))
                self.max_writable = max(self.max_writable, writable)
                self.stop.wait(SAMPLE_S)


def _poll(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``predicate`` held; RuntimeFailure naming ``what`` at the deadline."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise RuntimeFailure(f"drill: {what} not within {timeout:.0f} s", hint="`govcloud ha status`")
        time.sleep(0.1)
    return time.monotonic() - started


def run_drill(root: Path, scenario_text: str, options: HaDrillOptions) -> HaDrillReport:
    inventory = load_inventory(root)
    ha = ha_of(inventory)
    shape = plan_shape(inventory.topology, ha)
    plan = plan_deploy(inventory.topology, ha, shape)
    scenario = parse(scenario_text, inventory.topology)
    if scenario.kind is Kind.REGION_LOSS:
        raise RefusedError(f"drill {scenario.text}: a region's loss is drilled with `ha promote`, which is not "
                           "built yet", hint="drill site-loss:<site> or partition:<site>/<site>")
    secrets, _ = load_or_create(state_dir(), shape.primary.scope)
    names = name_service(inventory, key_file=options.dns_key)
    follow = follower(shape, ha, names)
    routes = RouteFaults(ha, options.known_hosts, options.ssh_key or ops_key(state_dir())[0])
    routes.undo()  # a killed drill's faults first
    patroni = PatroniHttp()
    before = current_view(patroni, plan, shape.primary)
    if ready(shape.primary, before) or not follow.settled() or before.leader is None:
        raise RefusedError(f"drill {scenario.text} refused: {ready(shape.primary, before) or 'the name is not on the leader'}",
                           hint="a drill starts from a whole cluster: `govcloud ha status`, `govcloud ha deploy`")
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    old = before.leader.name
    lost_leader = leader_lost(scenario, shape, old)
    writer = _writer(run_id, names, ha, secrets.superuser, options.interval_s)
    watch = _Watch(plan, shape, secrets.superuser)
    stop_follow = threading.Event()
    switched_at: list[float] = []
    follow_thread = threading.Thread(target=follow.watch, args=(stop_follow,), daemon=True, name="govcloud-follow",
                                     kwargs={"on_look": lambda look: switched_at.append(time.time()) if look.switched
                                             else None})
    addresses = {h.name: h.address for h in shape.primary.members}
    writer.prepare(PgTarget(addresses[old], ha.port, SUPERUSER, "postgres", secrets.superuser))
    writer.start()
    follow_thread.start()
    watch.thread.start()
    names_after: dict[str, list[str]] = {}
    try:
        _poll(lambda: len(writer.acked()) >= 10, 15, "the writer's first commits")
        t0 = time.time()
        routes.inject(faults(scenario, ha))
        new = old
        if lost_leader:
            _poll(lambda: bool(watch.leaders) and watch.leaders[-1] != old, options.deadline_s, "a new leader")
            new = watch.leaders[-1]
            _poll(lambda: writer.first_ack_after(t0, addresses[new]) is not None, options.deadline_s,
                  f"a commit acknowledged by {new}")
            names_after = {a.server.site: sorted(a.addresses or ()) for a in names.answers(ha.name)}
        else:
            time.sleep(options.observe_s or ha.patroni.ttl_s + 5)
            new = watch.leaders[-1] if watch.leaders else old
    finally:
        routes.undo()
    try:
        wait_settled(patroni, plan, shape.primary, options.rejoin_s)  # whole again, its roles holding still
        _poll(lambda: writer.first_ack_after(time.time() - 0.5) is not None, 20, "a commit after the faults were undone")
    finally:
        writer.stop()
        watch.stop.set()
        stop_follow.set()
        watch.thread.join(timeout=10)
        follow_thread.join(timeout=10)
    after = current_view(patroni, plan, shape.primary)
    final = after.leader.name if after.leader else new
    present = present_ids(PgTarget(addresses[final], ha.port, SUPERUSER, "postgres", secrets.superuser), run_id)
    result = outcome([Ack(a.id, a.at - t0, a.site) for a in writer.acked()], present,
                     addresses[new] if lost_leader else None)
    report = HaDrillReport(run_id, scenario.text, old, new, lost_leader, result.rto_s, result.lost, result.acked,
                           result.paused_s, watch.max_writable, tuple(watch.leaders),
                           next((t - t0 for t in watch.leader_since if t >= t0), None),
                           next((t - t0 for t in switched_at if t >= t0), None), names_after,
                           {m.name: m.role for m in after.members})
    return _write(root, report)


def _writer(run_id: str, names: NameService, ha: HaPostgres, password: str, interval_s: float) -> Writer:
    """Commits through the name, resolved as a client resolves it (the first server that answers)."""

    def endpoint() -> tuple[PgTarget, str] | None:
        addresses = names.resolve(ha.name)
        if not addresses:
            return None
        address = min(addresses)
        return PgTarget(address, ha.port, SUPERUSER, "postgres", password), address

    return Writer(run_id, endpoint, interval_s=interval_s)


def _write(root: Path, report: HaDrillReport) -> HaDrillReport:
    out = root / ".govcloud" / "drills" / f"ha-{report.run_id}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    final = HaDrillReport(**{**asdict(report), "report_path": str(out)})
    out.write_text(json.dumps(asdict(final), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return final


def parse_scenario(root: Path, text: str) -> Scenario:
    """The scenario, checked against the project's topology before anything is touched."""
    return parse(text, load_inventory(root).topology)
