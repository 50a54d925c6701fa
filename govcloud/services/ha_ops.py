"""Operating the HA layer: ``ha switchover`` (planned, zero loss) and ``ha watch`` (the name follows).

A switchover is Patroni's own (``POST /switchover`` on the leader, with the REST API's password): in
synchronous mode the candidate is the synchronous standby, which has every acknowledged commit, so
nothing acknowledged is lost. The command then moves the name itself (the follower's fenced look,
govcloud/failover/follow.py) rather than wait for a watcher, and returns once every site answers the
new leader.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from govcloud.adapters.ha_secrets import load_or_create
from govcloud.adapters.patroni import PatroniHttp
from govcloud.errors import InvalidInputError, RuntimeFailure
from govcloud.failover.ha_deploy import plan_deploy
from govcloud.failover.ha_status import ready
from govcloud.failover.patroni_config import RESTAPI_USER
from govcloud.failover.shape import plan_shape
from govcloud.inventory import load_inventory
from govcloud.services.ha import current_view, follower, ha_of, wait_ready, wait_settled
from govcloud.services.ha_names import Look
from govcloud.services.names_app import name_service
from govcloud.services.provision import state_dir

SWITCHOVER_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class SwitchoverReport:
    scope: str
    old_leader: str
    new_leader: str
    address: str  # what the name answers now
    seconds: float  # from the request to the name answering the new leader everywhere
    patroni: str  # Patroni's own answer


def switchover(root: Path, candidate: str | None, *, dns_key: Path | None = None,
               timeout_s: float = SWITCHOVER_TIMEOUT_S) -> SwitchoverReport:
    inventory = load_inventory(root)
    ha = ha_of(inventory)
    shape = plan_shape(inventory.topology, ha)
    plan = plan_deploy(inventory.topology, ha, shape)
    main = shape.primary
    patroni = PatroniHttp()
    view = current_view(patroni, plan, main)
    if not ready(main, view):  # whole: wait until its roles hold still (a member that has just rejoined)
        view = wait_settled(patroni, plan, main, timeout_s)
    if view.leader is None:
        raise RuntimeFailure(f"{main.scope} has no running leader: {view.error or 'Patroni is electing'}",
                             hint="`govcloud ha status`; a switchover needs a leader to hand over from")
    members = [h.name for h in main.members]
    target = candidate or (view.sync_standby.name if view.sync_standby else "")
    if target not in members or target == view.leader.name:
        raise InvalidInputError(f"cannot switch {main.scope} over to {target or '(no synchronous standby)'}: "
                                f"the leader is {view.leader.name}",
                                hint=f"pass --to with another member of {main.scope}: "
                                     + ", ".join(m for m in members if m != view.leader.name))
    secrets, _ = load_or_create(state_dir(), main.scope)
    follow = follower(shape, ha, name_service(inventory, key_file=dns_key))
    leader_url = next(p.rest_url for h in plan.hosts for p in h.patroni
                      if p.scope == main.scope and h.host.name == view.leader.name)
    started = time.monotonic()
    answer = patroni.switchover(leader_url, view.leader.name, target, RESTAPI_USER, secrets.restapi, timeout_s)
    after = wait_ready(patroni, plan, main, timeout_s)
    if after.leader is None or after.leader.name != target:
        raise RuntimeFailure(f"after the switchover {after.leader.name if after.leader else 'no member'} leads "
                             f"{main.scope}, not {target}: {answer}", hint="`govcloud ha status`")
    record = follow.settle(timeout_s)
    return SwitchoverReport(main.scope, view.leader.name, target, record.address, time.monotonic() - started, answer)


def watch(root: Path, stop: threading.Event, *, dns_key: Path | None = None, interval: float = 0.1,
          on_look: Callable[[Look], None] = lambda _l: None) -> None:
    """Keep the name on the primary cluster's leader until ``stop`` (``govcloud ha watch``)."""
    inventory = load_inventory(root)
    ha = ha_of(inventory)
    shape = plan_shape(inventory.topology, ha)
    follower(shape, ha, name_service(inventory, key_file=dns_key)).watch(stop, interval=interval, on_look=on_look)
