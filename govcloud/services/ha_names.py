"""The service name follows the Patroni leader (govcloud/failover/follow.py has the why and the rules).

``LeaderFollower.look`` is one look at etcd and, when the decision says so, one fenced switch; ``watch``
repeats it every ``interval`` until stopped (``govcloud ha watch``), and ``ha deploy`` and
``ha switchover`` call ``look`` themselves until the name is on the leader, so neither depends on a
watcher running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from govcloud.errors import GovcloudError, RuntimeFailure
from govcloud.failover.follow import Decision, LeaderKey, NameRecord, Step, decide
from govcloud.failover.shape import ClusterShape

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.1


class LeaderStore(Protocol):
    """The leader key and the name's record (``govcloud.adapters.etcd.EtcdGateway``)."""

    def leader(self, scope: str) -> LeaderKey | None: ...

    def record(self, scope: str) -> NameRecord | None: ...

    def claim(self, scope: str, leader: LeaderKey, record: NameRecord) -> bool: ...

    def finish(self, scope: str, record: NameRecord) -> bool: ...


class NameSwitch(Protocol):
    """``NameService.switch``: the fenced compare-and-swap of a name on every site's server."""

    def switch(self, service: str, *, address: str, port: int, site: str = "", expect: str | None = None,
               reason: str = "") -> object: ...


@dataclass(frozen=True)
class Look:
    decision: Decision
    switched: bool = False  # this look moved the name (or finished a move another watcher began)
    lost_claim: bool = False  # another watcher claimed the election first
    error: str = ""


class LeaderFollower:
    def __init__(self, cluster: ClusterShape, label: str, store: LeaderStore, names: NameSwitch) -> None:
        self.cluster = cluster
        self.label = label
        self.store = store
        self.names = names
        self.addresses = {h.name: h.address for h in cluster.members}
        self.site_of = {h.address: h.site for h in cluster.members}

    def look(self) -> Look:
        scope = self.cluster.scope
        leader = self.store.leader(scope)
        decision = decide(leader, self.store.record(scope), self.addresses)
        if decision.step is Step.CLAIM:
            assert leader is not None and decision.record is not None
            if not self.store.claim(scope, leader, decision.record):
                return Look(decision, lost_claim=True)
        if decision.step not in (Step.CLAIM, Step.COMPLETE):
            return Look(decision, error=decision.why if decision.step is Step.UNKNOWN else "")
        record = decision.record
        assert record is not None
        # the claim is in etcd before the name moves: a watcher that dies here leaves it to be completed
        self.names.switch(self.label, address=record.address, port=0, site=self.site_of.get(record.address, ""),
                          expect=record.previous, reason=f"{scope}: {decision.why}")
        self.store.finish(scope, record)
        return Look(decision, switched=True)

    def settled(self) -> bool:
        """The name was moved, and marked done, for the current election (reads only)."""
        record = self.store.record(self.cluster.scope)
        leader = self.store.leader(self.cluster.scope)
        return (record is not None and record.done and leader is not None
                and record.revision == leader.create_revision and self.addresses.get(leader.member) == record.address)

    def settle(self, timeout_s: float, *, on_look: Callable[[Look], None] = lambda _l: None) -> NameRecord:
        """Look until the name is on the current leader (decision NONE with a done record)."""
        deadline = time.monotonic() + timeout_s
        while True:
            look = self.look()
            on_look(look)
            if self.settled():
                record = self.store.record(self.cluster.scope)
                assert record is not None
                return record
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"the name {self.label} did not settle on {self.cluster.scope}'s leader in "
                                     f"{timeout_s:.0f} s: {look.error or look.decision.why}",
                                     hint="`govcloud ha status` shows the leader and what each site answers")
            time.sleep(WATCH_INTERVAL_S)

    def watch(self, stop: threading.Event, *, interval: float = WATCH_INTERVAL_S,
              on_look: Callable[[Look], None] = lambda _l: None) -> None:
        """Look every ``interval`` until ``stop``; a failed look (etcd or DNS unreachable, a conflict) is
        reported and the next look tries again: the decision is made afresh from etcd each time."""
        last_error = ""
        while not stop.is_set():
            try:
                look = self.look()
            except GovcloudError as exc:
                look = Look(Decision(Step.NONE, "look failed"), error=exc.message)
            if look.switched or look.lost_claim or (look.error and look.error != last_error):
                on_look(look)
            last_error = look.error
            stop.wait(interval)
