"""`ha deploy` and `ha status`: the HA layer put on the topology's database hosts, and observed.

Deploy (docs/ha.md, "Deploy and status") runs ``playbooks/ha.yml`` through ansible-runner in the phases
of ``govcloud.failover.ha_deploy``: on a first deployment the etcd rings and the home member alone (so it
leads); then the primary cluster; once it has a leader and a synchronous standby, the service name is
published on the leader (the name follower's fenced looks) and the standby cluster is started, which
replicates from that name. A rerun whose name is already on the leader is one run of the whole state.
Every wait polls with a deadline and says what it waited for.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from govcloud.adapters.ansible import (
    RunResult,
    RunSpec,
    Target,
    run_playbook,
    runner_kwargs,
)
from govcloud.adapters.etcd import EtcdError, EtcdGateway
from govcloud.adapters.ha_secrets import load_or_create
from govcloud.adapters.patroni import PatroniHttp
from govcloud.adapters.ports import HaObserverPort
from govcloud.errors import InvalidInputError, RuntimeFailure
from govcloud.failover.ha_deploy import (
    DeployPlan,
    HostDeployment,
    Phase,
    plan_deploy,
    role_vars,
)
from govcloud.failover.ha_status import ClusterView, HaView, NameView, choose, ready
from govcloud.failover.shape import ClusterShape, HaShape, plan_shape
from govcloud.inventory import load_inventory
from govcloud.model import Inventory
from govcloud.model.ha import HaPostgres
from govcloud.services.ha_names import LeaderFollower, LeaderStore, Look, NameSwitch
from govcloud.services.hosts import PLAYBOOKS, raise_for_failures
from govcloud.services.names import NameService
from govcloud.services.names_app import name_service
from govcloud.services.provision import ops_key, state_dir

READY_TIMEOUT_S = 120.0  # a cluster's bootstrap (initdb, or a base backup of a small database) fits well inside
POLL_S = 0.5


@dataclass(frozen=True)
class HaDeployOptions:
    known_hosts: Path
    ssh_key: Path | None = None  # default: the operator key in the state dir
    dns_key: Path | None = None  # default: the TSIG key in the state dir
    forks: int = 10
    control_path_dir: Path | None = None
    ready_timeout_s: float = READY_TIMEOUT_S


@dataclass(frozen=True)
class DeployReport:
    runs: tuple[RunResult, ...]
    clusters: tuple[ClusterView, ...]
    service: str
    leader: str  # the primary cluster's leader's address: what the name answers
    name_switched: bool  # False: the name already answered the leader


def ha_of(inventory: Inventory) -> HaPostgres:
    ha = inventory.topology.ha_postgres
    if ha is None:
        raise InvalidInputError(f"{inventory.topology.source.file} declares no highly available PostgreSQL",
                                hint="add ha: {postgres: {name: pg, version: \"15\", scope: ..., hosts: {<site>: "
                                     "[{name: ..., address: ...}]}}} (docs/ha.md)")
    return ha


def rest_urls(plan: DeployPlan, cluster: ClusterShape) -> list[str]:
    return [p.rest_url for h in plan.hosts for p in h.patroni if p.scope == cluster.scope]


def _targets(plan: DeployPlan, hosts: tuple[HostDeployment, ...]) -> tuple[Target, ...]:
    return tuple(Target(name=h.host.name, address=h.host.address, region=h.region, site=h.host.site, role="db",
                        vars=tuple(role_vars(plan, h).items())) for h in hosts)


def _run(plan: DeployPlan, phase: Phase, options: HaDeployOptions, secrets_file: Path) -> RunResult:
    state = state_dir()
    spec = RunSpec(run_id=f"ha-{phase.value}-{uuid.uuid4().hex[:12]}", state_dir=state, project_dir=PLAYBOOKS,
                   playbook="ha.yml", targets=_targets(plan, plan.phase(phase)),
                   ssh_key=options.ssh_key or ops_key(state)[0], known_hosts=options.known_hosts, forks=options.forks,
                   extravars=(("govcloud_patroni_secrets_file", str(secrets_file)),),
                   control_path_dir=options.control_path_dir)
    result = run_playbook(runner_kwargs(spec))
    raise_for_failures(result)
    return result


@functools.cache
def ring(client_urls: tuple[str, ...]) -> EtcdGateway:
    """One gateway per etcd ring for the process: it keeps asking first the member that answered last, so a
    cut-off member costs its timeout once, not on every look."""
    return EtcdGateway(client_urls)


def current_view(observer: HaObserverPort, plan: DeployPlan, cluster: ClusterShape) -> ClusterView:
    """The cluster as its members report it, believing the member that agrees with etcd's leader key."""
    try:
        elected = ring(tuple(m.client_url for m in cluster.etcd)).leader(cluster.scope)
    except EtcdError:
        elected = None
    return choose(cluster.scope, observer.views(cluster.scope, rest_urls(plan, cluster)),
                  elected.member if elected else None)


def wait_ready(observer: HaObserverPort, plan: DeployPlan, cluster: ClusterShape, timeout_s: float, *,
               hold_s: float = 0.0) -> ClusterView:
    """Poll until :func:`ready`, with the same leader and synchronous standby for ``hold_s`` on end;
    RuntimeFailure saying what was still missing at the deadline."""
    deadline = time.monotonic() + timeout_s
    since, last = time.monotonic(), ("", "")
    while True:
        view = current_view(observer, plan, cluster)
        why = ready(cluster, view)
        now = (view.leader.name if view.leader else "", view.sync_standby.name if view.sync_standby else "")
        if why or now != last:
            since, last = time.monotonic(), now
        if not why and time.monotonic() - since >= hold_s:
            return view
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"{cluster.scope}: {why or 'its roles kept changing'} after {timeout_s:.0f} s",
                                 hint=f"`govcloud ha status`; Patroni's log on the members "
                                      f"({plan.ha.base_dir}/{cluster.scope}/log); `govcloud ha deploy` resumes")
        time.sleep(POLL_S)


def wait_settled(observer: HaObserverPort, plan: DeployPlan, cluster: ClusterShape, timeout_s: float) -> ClusterView:
    """Ready, with the same leader and synchronous standby, for two of Patroni's loops and a second on end.

    Why more than :func:`wait_ready`: a member that has just rejoined (pg_rewind, a restart) is listed as
    the synchronous standby for a moment before Patroni settles it, and a switchover to it asked then is
    refused ("candidate name does not match with sync_standby", seen by bench/ha_bench.py)."""
    return wait_ready(observer, plan, cluster, timeout_s, hold_s=2 * plan.ha.patroni.loop_wait_s + 1)


def follower(shape: HaShape, ha: HaPostgres, names: NameSwitch, store: LeaderStore | None = None) -> LeaderFollower:
    """The primary cluster's name follower, on its etcd ring."""
    return LeaderFollower(shape.primary, ha.name, store or ring(tuple(m.client_url for m in shape.primary.etcd)),
                          names)


def deploy(root: Path, options: HaDeployOptions, *, say: Callable[[str], None] = lambda _m: None,
           observer: HaObserverPort | None = None, names: NameService | None = None) -> DeployReport:
    inventory = load_inventory(root)
    ha = ha_of(inventory)
    if not options.known_hosts.is_file():
        raise InvalidInputError(f"known_hosts file {options.known_hosts} not found",
                                hint="pass --known-hosts with the database hosts' keys (strict checking)")
    shape = plan_shape(inventory.topology, ha)
    plan = plan_deploy(inventory.topology, ha, shape)
    observer = observer or PatroniHttp()
    names = names or name_service(inventory, key_file=options.dns_key)
    state = state_dir()
    _secrets, secrets_file = load_or_create(state, shape.primary.scope)
    follow = follower(shape, ha, names)
    runs: list[RunResult] = []
    main = current_view(observer, plan, shape.primary)
    if main.leader is None:  # the first deployment: the home member bootstraps alone, and leads
        runs.append(_run(plan, Phase.HOME, options, secrets_file))
        home = shape.primary.members[0]
        main = wait_ready(observer, plan, ClusterShape(shape.primary.scope, shape.primary.region, shape.primary.role,
                                                       (home,), False, shape.primary.etcd), options.ready_timeout_s)
        say(f"etcd rings started; {home.name} leads {shape.primary.scope} ({runs[-1].changed} change(s))")
    switched = False
    if ready(shape.primary, main) or not follow.settled():  # else a rerun: one run of the whole state
        runs.append(_run(plan, Phase.PRIMARY, options, secrets_file))
        main = wait_ready(observer, plan, shape.primary, options.ready_timeout_s)
        looks: list[Look] = []
        follow.settle(options.ready_timeout_s, on_look=looks.append)
        switched = any(look.switched for look in looks)
    runs.append(_run(plan, Phase.ALL, options, secrets_file))
    main = wait_ready(observer, plan, shape.primary, options.ready_timeout_s)
    assert main.leader is not None
    leader = _address(shape, main.leader.name)
    say(f"{shape.primary.scope}: leader {main.leader.name}, synchronous standby "
        f"{main.sync_standby.name if main.sync_standby else '(none)'}; {shape.service} -> {leader}"
        + ("" if switched else " (already)") + f" ({sum(r.changed for r in runs)} change(s))")
    views = [main]
    if shape.standby is not None:
        views.append(wait_ready(observer, plan, shape.standby, options.ready_timeout_s))
        say(f"{shape.standby.scope}: standby leader {views[-1].leader.name if views[-1].leader else '?'} "
            f"follows {shape.service}")
    return DeployReport(tuple(runs), tuple(views), shape.service, leader, switched)


def _address(shape: HaShape, member: str) -> str:
    return next(h.address for h in shape.primary.members if h.name == member)


def observe(root: Path, *, observer: HaObserverPort | None = None, names: NameService | None = None,
            dns_key: Path | None = None) -> tuple[HaShape, HaView]:
    """Every cluster as its members report it, every etcd member's health, every site's answer for the name."""
    inventory = load_inventory(root)
    ha = ha_of(inventory)
    shape = plan_shape(inventory.topology, ha)
    plan = plan_deploy(inventory.topology, ha, shape)
    observer = observer or PatroniHttp()
    clusters = tuple(current_view(observer, plan, c) for c in shape.clusters)
    etcd = tuple(observer.etcd_health(c.scope, m.name, m.site, m.client_url) for c in shape.clusters for m in c.etcd)
    try:
        names = names or name_service(inventory, key_file=dns_key)
        answers = names.answers(ha.name)
        name_views = tuple(NameView(a.server.site, tuple(sorted(a.addresses or ())), a.error) for a in answers)
    except InvalidInputError as exc:  # no zone or no key: the rest of the status is still worth showing
        name_views = (NameView("*", (), exc.message),)
    return shape, HaView(clusters, etcd, name_views)
