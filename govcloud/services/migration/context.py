"""What every step is given: the run's journal, its ports to the outside world and its options.

A step is a function ``(ctx, work) -> None`` (``preflight`` and ``targets`` take the whole batch). It
reads what it needs from ``ctx`` and records through it: :meth:`RunContext.step` writes the intent
before the step's side effects and the outcome after them, so a crash anywhere leaves the journal
naming what may have happened. Nothing in a step reaches into another step.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from govcloud.adapters.journal import Journal
from govcloud.adapters.ports import (
    CloudPort,
    ConfigurePort,
    Endpoint,
    EndpointPort,
    HealthPort,
    HostPort,
)
from govcloud.errors import GovcloudError, MigrationError
from govcloud.migrate.records import FactReader, Target, targets_from_fact
from govcloud.migrate.state import Action, Event, Status, event_for
from govcloud.migrate.zones import LandingZone, ZoneKey
from govcloud.model import Plan, System, Topology, Wave
from govcloud.services.migration.options import MigrateOptions, NullReporter, Reporter
from govcloud.services.migration.work import Work

log = logging.getLogger(__name__)

Outcome = dict[str, Any]  # the JSON detail a step's outcome records


@dataclass
class Ports:
    """The engine's outside world. The cloud is opened on first use: a resume that only syncs, or a
    dry run, never connects to OpenStack."""

    hosts: HostPort
    health: HealthPort
    endpoints: EndpointPort
    configure: ConfigurePort
    open_cloud: Callable[[], CloudPort]
    fault: Callable[[str, str], None]  # a named crash point was reached (``adapters.faults.kill_at``)
    _cloud: CloudPort | None = field(default=None, init=False)

    @property
    def cloud(self) -> CloudPort:
        if self._cloud is None:
            self._cloud = self.open_cloud()
        return self._cloud

    def close(self) -> None:
        self.hosts.close()
        if self._cloud is not None:
            self._cloud.close()


@dataclass(frozen=True)
class Keys:
    """The keys the controller logs in with (paths; the private halves never leave the controller)."""

    legacy: Path | None  # the legacy hosts
    target: Path | None  # the new servers
    target_public: str  # "type base64" of the target key ("" unknown), compared with the keypairs


class RunContext:
    """One run of one plan's wave: the journal (one connection per thread), the ports and options."""

    def __init__(self, plan: Plan, wave: Wave, work: list[Work], options: MigrateOptions, ports: Ports, keys: Keys,
                 journal_file: Path, reporter: Reporter | None = None, topology: Topology | None = None) -> None:
        self.plan = plan
        self.topology = topology  # the regions' images per OS (None: only an --image override can boot)
        self.wave = wave
        self.work = work
        self.by_id = {w.id: w for w in work}
        self.options = options
        self.ports = ports
        self.keys = keys
        self.journal_file = journal_file
        self.reporter: Reporter = reporter or NullReporter()
        self.run_id = ""
        self.failed_now: set[str] = set()  # systems that failed in this run's preflight or provisioning
        self.refused: dict[str, str] = {}  # systems whose cutover was refused (outside the window): why
        self.stale_plan: dict[str, str] | None = None  # run by --allow-stale-plan: the digests, for the audit
        self.zones: dict[ZoneKey, LandingZone | None] = {}  # read once per run
        self.project_ids: dict[str, str | None] = {}
        self._local = threading.local()
        self._journals: list[Journal] = []
        self._journals_lock = threading.Lock()

    # --- the journal ---

    @property
    def journal(self) -> Journal:
        """This thread's journal connection (SQLite connections are per thread)."""
        j: Journal | None = getattr(self._local, "journal", None)
        if j is None:
            j = Journal(self.journal_file)
            self._local.journal = j
            with self._journals_lock:
                self._journals.append(j)
        return j

    def fact(self, system: str, key: str) -> Any:
        return self.journal.latest_fact(self.plan.name, system, key)

    def record(self, system: str, step: str, key: str, value: Any) -> None:
        self.journal.record_fact(self.run_id, self.plan.name, system, step, key, value)

    def facts_of(self, system: str) -> FactReader:
        """``system``'s latest facts by key: what a typed record's ``from_facts`` reads."""
        return lambda key: self.fact(system, key)

    def record_facts(self, system: str, step: str, facts: Mapping[str, object]) -> None:
        """A typed record's ``to_facts``, one journal fact per key (the shape journals always held)."""
        for key, value in facts.items():
            self.record(system, step, key, value)

    def status(self, system: str) -> Status:
        return self.journal.status(self.plan.name, system)

    def audit(self, action: str, system: str, result: str, detail: Mapping[str, Any]) -> None:
        self.journal.audit(action, system, result, {"run_id": self.run_id, **detail})

    @contextmanager
    def step(self, w: Work, action: Action, detail: Mapping[str, Any] | None = None,
             event: Event | None = None) -> Iterator[Outcome]:
        """intent -> side effect (the block) -> outcome; a GovcloudError in the block records ``failed``
        with the error as a fact and re-raises it."""
        j = self.journal
        iid = j.intent(self.run_id, self.plan.name, w.id, action, detail)
        self.reporter.step(w.id, action.value)
        out: Outcome = {}
        try:
            yield out
        except GovcloudError as exc:
            self.record(w.id, action.value, "error", f"{action.value}: {exc.message}")
            j.outcome(iid, Event.FAILED, {"error": exc.message[:500]})
            raise
        ev = event or event_for(action)
        assert ev is not None
        j.outcome(iid, ev, out)

    def fault(self, point: str, system: str) -> None:
        self.ports.fault(point, system)

    # --- hosts ---

    def legacy_ep(self, system: System, host_name: str) -> Endpoint:
        h = next(h for h in system.hosts if h.name == host_name)
        return Endpoint(address=h.address, known_hosts=self.options.known_hosts, key_file=self.keys.legacy,
                        user=h.user, port=h.port, name=h.name)

    def target_ep(self, t: Target) -> Endpoint:
        return self.target_ep_at(t.ip, t.name)

    def target_ep_at(self, address: str, name: str) -> Endpoint:
        return Endpoint(address=address, known_hosts=self.options.known_hosts, key_file=self.keys.target, name=name)

    def targets(self, w: Work) -> tuple[Target, ...]:
        """The system's booted targets, from the journal (provisioning recorded them)."""
        t = targets_from_fact(self.fact(w.id, "targets"))
        if not t:
            raise MigrationError(f"{w.id}: the journal has no targets (provisioning did not complete)",
                                 hint="run `govcloud migrate resume`")
        return t

    def close(self) -> None:
        self.ports.close()
        with self._journals_lock:
            for j in self._journals:
                try:
                    j.close()
                except Exception:  # closing a connection of another thread is best effort
                    log.debug("closing a journal connection failed", exc_info=True)
            self._journals.clear()
        self._local = threading.local()
