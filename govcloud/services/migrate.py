"""The migration engine: a wave's systems through preflight, provisioning, warm sync, cutover, verify.

Every step of every system is written to the journal as an *intent* before its side effect and an
*outcome* after it (``govcloud.adapters.journal``); the pure core decides what comes next
(``govcloud.migrate.steps.next_steps`` from the state machine) and what a target is
(``govcloud.migrate.targets``). So a process killed anywhere resumes correctly: servers are found by
name + ownership tag before any create, data moves with rsync (only what differs), and a cutover that
may have stopped the legacy service is rolled back rather than retried blindly.

Phases of one run: preflight for every system that needs it (all problems listed, nothing provisioned
when there is one); provisioning in one batch (every server booted concurrently, one Ansible run for
all targets); then per system, in dependency order and at most ``concurrency`` at a time: warm sync,
cutover (inside the wave's window), verify (automatic rollback on failure) and finish.

Fault injection: ``GOVCLOUD_FAULT_KILL_AT=<point>[@<system>]`` makes the process SIGKILL itself at a
named crash point (``govcloud.migrate.steps.CRASH_POINTS``) - the crash a test needs on cue.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import paramiko

from govcloud.adapters import ssh
from govcloud.adapters.journal import Journal, journal_path
from govcloud.adapters.servicemap import ServiceMap, default_path
from govcloud.errors import (
    GovcloudError,
    HostKeyError,
    InvalidInputError,
    MigrationError,
    OutsideWindowError,
    PreflightError,
    RefusedError,
    SSHError,
)
from govcloud.inventory import load_inventory
from govcloud.migrate.state import (
    Action,
    Event,
    State,
    Status,
    SyncDecision,
    sync_decision,
)
from govcloud.migrate.steps import CRASH_POINTS, StepPlan, composite, next_steps
from govcloud.migrate.targets import (
    FlavorInfo,
    TargetSpec,
    order_by_dependencies,
    pick_flavor,
    targets_of,
    window_state,
)
from govcloud.model import Inventory, Plan, System, Wave
from govcloud.provision.desired import project_name

log = logging.getLogger(__name__)

FAULT_ENV = "GOVCLOUD_FAULT_KILL_AT"
MIGRATION_TAG = "govcloud:migration"  # Nova tag on every server a migration boots (the ownership tag)
APP_DIR = "/srv/app"  # the legacy application's files (synced with the data)
APP_EXCLUDES = ("sampleapp.pid", "sampleapp.log")  # runtime files of the app, never synced
LEGACY_APP_CTL = "/usr/bin/python3 /srv/app/sampleapp.py"  # the legacy host's "service unit"
TARGET_APP_CTL = "/srv/govcloud/app-ctl"  # installed by playbooks/roles/migrate_target
FACT_BYTES, FACT_DOWNTIME, FACT_WINDOW_END = "bytes_sent", "downtime_seconds", "window_end"


# ------------------------------------------------------------------ options, results, progress

@dataclass(frozen=True)
class MigrateOptions:
    plan_file: Path
    wave: int
    known_hosts: Path
    systems: tuple[str, ...] = ()
    concurrency: int = 4
    dry_run: bool = False
    manual_cutover: bool = False
    outside_window: bool = False
    ssh_key: Path | None = None  # for the legacy hosts (default: the operator key)
    target_key: Path | None = None  # for the new servers (default: the operator key in the department keypairs)
    journal: Path | None = None
    service_map: Path | None = None
    clouds_yaml: Path | None = None
    image: str = "fake-image"
    timezone: str = "Asia/Shanghai"
    app_port: int = 8080
    boot_timeout: float = 300.0
    ssh_wait: float = 300.0
    health_timeout: float = 60.0
    control_path_dir: Path | None = None
    command: str = "run"

    def as_record(self) -> dict[str, Any]:
        """What resume needs to repeat the run (no secrets: paths only)."""
        return {"plan_file": str(self.plan_file), "wave": self.wave, "systems": list(self.systems),
                "concurrency": self.concurrency, "manual_cutover": self.manual_cutover,
                "known_hosts": str(self.known_hosts), "ssh_key": str(self.ssh_key or ""),
                "target_key": str(self.target_key or ""), "image": self.image, "timezone": self.timezone}


@dataclass
class SystemResult:
    system: str
    state: str
    downtime: float | None = None
    bytes_sent: int = 0
    note: str = ""


@dataclass
class RunSummary:
    run_id: str
    plan: str
    wave: int
    results: list[SystemResult] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: list[StepPlan] = field(default_factory=list)
    targets: dict[str, list[TargetSpec]] = field(default_factory=dict)

    refused: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.state == State.DONE.value or (r.state == State.SYNCED.value and r.note.startswith("manual"))
                   for r in self.results)


class Reporter(Protocol):
    def phase(self, text: str) -> None: ...

    def step(self, system: str, step: str, *, total: int | None = None, done: int | None = None) -> None: ...

    def finished(self, system: str, state: str, note: str = "") -> None: ...


class NullReporter:
    def phase(self, text: str) -> None:
        log.info("%s", text)

    def step(self, system: str, step: str, *, total: int | None = None, done: int | None = None) -> None:
        log.info("%s: %s", system, step)

    def finished(self, system: str, state: str, note: str = "") -> None:
        log.info("%s: %s %s", system, state, note)


def fault(point: str, system: str = "") -> None:
    """SIGKILL this process at ``point`` when ``GOVCLOUD_FAULT_KILL_AT`` names it (optionally ``@system``)."""
    want = os.environ.get(FAULT_ENV)
    if not want:
        return
    name, _, only = want.partition("@")
    if name == point and (not only or only == system):
        log.warning("fault injection: SIGKILL at %s (%s)", point, system)
        os.kill(os.getpid(), signal.SIGKILL)


assert set(CRASH_POINTS)  # the names live in the pure core; fault() is called with each of them


# ------------------------------------------------------------------ the wave's work

@dataclass(frozen=True)
class Work:
    system: System
    specs: tuple[TargetSpec, ...]

    @property
    def id(self) -> str:
        return self.system.id


def load_plan_file(path: Path) -> Plan:
    from govcloud.services.planning import load_plan

    return load_plan(path)


def wave_of(plan: Plan, number: int) -> Wave:
    for w in plan.waves:
        if w.number == number:
            return w
    raise InvalidInputError(f"plan {plan.name} has no wave {number}",
                            hint=f"waves: {', '.join(str(w.number) for w in plan.waves)}")


def wave_work(inventory: Inventory, plan: Plan, wave: Wave, systems: Sequence[str]) -> list[Work]:
    ids = [s.id for s in wave.systems]
    unknown = [s for s in systems if s not in ids]
    if unknown:
        raise InvalidInputError(f"not in wave {wave.number} of plan {plan.name}: {', '.join(unknown)}",
                                hint=f"the wave holds: {', '.join(ids[:20])}{' ...' if len(ids) > 20 else ''}")
    out = []
    for ps in wave.systems:
        if systems and ps.id not in systems:
            continue
        if not inventory.has_system(ps.id):
            raise InvalidInputError(f"system {ps.id} of plan {plan.name} is not in the inventories",
                                    hint="make the plan again (`govcloud plan`)")
        sysm = inventory.system(ps.id)
        out.append(Work(sysm, targets_of(sysm, ps.placement, inventory.topology)))
    return out


# ------------------------------------------------------------------ SSH sessions (persistent, shared)

class Sessions:
    """One persistent SSH session per host (paramiko channels are cheap; processes and handshakes are
    not), shared by the threads; a dead session is reopened."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._host_locks: dict[str, threading.Lock] = {}
        self._s: dict[str, ssh.SSHSession] = {}

    def get(self, ep: ssh.Endpoint) -> ssh.SSHSession:
        with self._lock:
            hl = self._host_locks.setdefault(ep.address, threading.Lock())
        with hl:
            s = self._s.get(ep.address)
            t = s.client.get_transport() if s is not None else None
            if s is not None and t is not None and t.is_active():
                return s
            s = ssh.connect(ep)
            with self._lock:
                self._s[ep.address] = s
            return s

    def drop(self, address: str) -> None:
        with self._lock:
            s = self._s.pop(address, None)
        if s is not None:
            s.close()

    def close(self) -> None:
        with self._lock:
            items = list(self._s.values())
            self._s.clear()
        for s in items:
            s.close()


# ------------------------------------------------------------------ the engine

class Migrator:
    """One run (``run``, ``resume``, ``cutover``) of one plan's wave. Not reusable."""

    def __init__(self, root: Path, options: MigrateOptions, reporter: Reporter | None = None, *,
                 inventory: Inventory | None = None) -> None:
        from govcloud.services.provision import ops_key

        self.root = root
        self.o = options
        self.r: Reporter = reporter or NullReporter()
        self.inventory = inventory or load_inventory(root)
        self.plan = load_plan_file(options.plan_file)
        self.wave = wave_of(self.plan, options.wave)
        self.work = wave_work(self.inventory, self.plan, self.wave, options.systems)
        self.by_id = {w.id: w for w in self.work}
        self.jpath = journal_path(root, options.journal)
        self.smap = ServiceMap(options.service_map or default_path(root))
        if not options.dry_run:
            ops = ops_key()[0]
            self.legacy_key = options.ssh_key or ops
            self.target_key = options.target_key or ops
        self.sessions = Sessions()
        self._target_pub: str | None = None
        self._cloud: Any = None
        self._local = threading.local()
        self._journals: list[Journal] = []
        self._all_lock = threading.Lock()
        self.failed_now: set[str] = set()  # systems that failed in this run's preflight/provisioning
        self._zone_cache: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._project_ids: dict[str, str | None] = {}
        self.refused: dict[str, str] = {}  # systems whose cutover was refused (outside the window): why
        self.run_id = ""

    # --- plumbing ---

    @property
    def journal(self) -> Journal:
        """This thread's journal connection (SQLite connections are per thread)."""
        j = getattr(self._local, "journal", None)
        if j is None:
            j = Journal(self.jpath)
            self._local.journal = j
            with self._lock_all():
                self._journals.append(j)
        return j

    @contextmanager
    def _lock_all(self) -> Iterator[None]:
        with self._all_lock:
            yield

    @property
    def cloud(self) -> Any:
        if self._cloud is None:
            from govcloud.adapters.openstack import OpenStackCloud

            self._cloud = OpenStackCloud(self.inventory.topology, clouds_yaml=self.o.clouds_yaml)
        return self._cloud

    def legacy_ep(self, system: System, host_name: str) -> ssh.Endpoint:
        h = next(h for h in system.hosts if h.name == host_name)
        return ssh.Endpoint(address=h.address, known_hosts=self.o.known_hosts, key_file=self.legacy_key, user=h.user,
                            port=h.port, name=h.name)

    def _target_public_key(self) -> str:
        """``type base64`` of the key new servers are logged in with ("" when it cannot be read)."""
        if self._target_pub is None:
            self._target_pub = ""
            key = getattr(self, "target_key", None)  # unset in --dry-run
            if key is not None:
                try:
                    import paramiko

                    k = paramiko.PKey.from_path(key)
                    self._target_pub = f"{k.get_name()} {k.get_base64()}"
                except (OSError, paramiko.SSHException, ValueError):
                    pass  # an unreadable key is reported where it is used
        return self._target_pub

    def target_ep(self, t: Mapping[str, Any]) -> ssh.Endpoint:
        return ssh.Endpoint(address=str(t["ip"]), known_hosts=self.o.known_hosts, key_file=self.target_key,
                            name=str(t["name"]))

    def fact(self, system: str, key: str) -> Any:
        return self.journal.latest_fact(self.plan.name, system, key)

    def record(self, system: str, step: str, key: str, value: Any) -> None:
        self.journal.record_fact(self.run_id, self.plan.name, system, step, key, value)

    def status(self, system: str) -> Status:
        return self.journal.status(self.plan.name, system)

    # --- dry run ---

    def dry_run(self) -> RunSummary:
        summary = RunSummary("dry-run", self.plan.name, self.wave.number)
        j = Journal(self.jpath, create=False) if self.jpath.exists() else None
        try:
            for w in self.work:
                st = j.status(self.plan.name, w.id) if j else Status()
                summary.dry_run.append(next_steps(w.id, st, manual_cutover=self.o.manual_cutover))
                summary.targets[w.id] = list(w.specs)
        finally:
            if j:
                j.close()
        return summary

    # --- the run ---

    def execute(self) -> RunSummary:
        if self.o.dry_run:
            return self.dry_run()
        started = time.monotonic()
        j = self.journal
        self.run_id = j.start_run(self.plan.name, self.wave.number, self.o.command, options=self.o.as_record())
        summary = RunSummary(self.run_id, self.plan.name, self.wave.number)
        status = "failed"
        try:
            with j.wave_lock(self.plan.name, self.wave.number, self.run_id):
                self._mark_crashed_runs()
                self._revoke_leftover_keys()
                plans = {w.id: self._plan_for(w) for w in self.work}
                self._preflight([w for w in self.work if Action.PREFLIGHT in plans[w.id].steps], plans)
                self._provision([w for w in self.work if Action.PROVISION in plans[w.id].steps])
                self._pipeline(plans)
                summary.results = [self._result(w.id) for w in self.work]
                summary.refused = sorted(self.refused)
                status = "done" if summary.ok else "failed"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            try:
                j.finish_run(self.run_id, status)
            finally:
                summary.seconds = time.monotonic() - started
                self.close()
        return summary

    def close(self) -> None:
        self.sessions.close()
        if self._cloud is not None:
            self._cloud.close()
        with self._lock_all():
            for j in self._journals:
                try:
                    j.close()
                except Exception:  # closing a connection of another thread is best effort
                    log.debug("closing a journal connection failed", exc_info=True)
            self._journals.clear()
        self._local = threading.local()

    def _mark_crashed_runs(self) -> None:
        """Runs of this wave still 'running' whose process is gone were killed: say so (resume takes over)."""
        j = self.journal
        for r in j.runs(self.plan.name):
            if r["status"] == "running" and r["id"] != self.run_id and int(r["wave"]) == self.wave.number:
                from govcloud.adapters.journal import pid_alive

                if r["host"] != os.uname().nodename or not pid_alive(int(r["pid"]), None):
                    j.finish_run(r["id"], "crashed")

    def _revoke_leftover_keys(self) -> None:
        """Per-migration keys that a killed run authorised (named by its open intents) are revoked now;
        their expiry-time is only the safety net."""
        j = self.journal
        for it in j.open_intents(self.plan.name):
            pairs = (it.get("detail") or {}).get("transfer_keys") or []
            if not pairs or it["system"] not in self.by_id:
                continue
            later = [t for t in j.transitions(self.plan.name, it["system"]) if t["id"] > it["id"]]
            if later:  # a later step already ran: this key was dealt with by an earlier resume
                continue
            work = self.by_id[it["system"]]
            for p in pairs:
                try:
                    tgt = self.sessions.get(self.target_ep({"ip": p["target"], "name": p.get("target_name", p["target"])}))
                    ssh.revoke(tgt, f"govcloud-mig-{p['mig_id']}")
                    src = self.sessions.get(self.legacy_ep(work.system, p["source_host"]))
                    base = f"$HOME/.ssh/govcloud-mig-{p['mig_id']}"
                    src.run(f'rm -f "{base}" "{base}.pub" "{base}.known_hosts"')
                    j.audit("migrate.revoke_key", it["system"], "ok", {"run_id": self.run_id, "mig_id": p["mig_id"]})
                except (SSHError, OSError, paramiko.SSHException, KeyError) as exc:
                    log.warning("could not revoke leftover key %s: %s", p, exc)

    def _plan_for(self, w: Work) -> StepPlan:
        j = self.journal
        st = j.ensure_system(self.plan.name, w.id, self.wave.number)
        sp = next_steps(w.id, st, manual_cutover=self.o.manual_cutover)
        if st.state == State.ROLLED_BACK:
            j.mark(self.run_id, self.plan.name, w.id, Event.RETRY, {"reason": "run again after a rollback"})
        elif sp.reopen:
            j.mark(self.run_id, self.plan.name, w.id, Event.RESUMED, {"reason": "resume after a failure before cutover"})
        return sp

    def _result(self, system: str) -> SystemResult:
        st = self.status(system)
        facts = self.journal.facts(self.plan.name, system)
        sent = sum(int(f["value"]) for f in facts if f["key"] == FACT_BYTES and f["run_id"] == self.run_id)
        down = next((float(f["value"]) for f in reversed(facts) if f["key"] == FACT_DOWNTIME), None)
        note = ""
        if system in self.refused:
            note = self.refused[system]
        elif st.state == State.SYNCED and self.o.manual_cutover:
            note = f"manual cutover: govcloud migrate cutover {system}"
        elif st.state != State.DONE:
            err = next((f["value"] for f in reversed(facts) if f["key"] == "error"
                        and (f["run_id"] == self.run_id or st.state in (State.FAILED, State.ROLLED_BACK))), "")
            note = str(err)
        return SystemResult(system, st.state.value, down if st.state == State.DONE else None, sent, note)

    @contextmanager
    def step(self, w: Work, action: Action, detail: Mapping[str, Any] | None = None,
             event: Event | None = None) -> Iterator[dict[str, Any]]:
        """intent -> side effect (the block) -> outcome; a GovcloudError in the block records ``failed``
        with the error as a fact and re-raises it."""
        from govcloud.migrate.state import event_for

        j = self.journal
        iid = j.intent(self.run_id, self.plan.name, w.id, action, detail)
        self.r.step(w.id, action.value)
        out: dict[str, Any] = {}
        try:
            yield out
        except GovcloudError as exc:
            self.record(w.id, action.value, "error", f"{action.value}: {exc.message}")
            j.outcome(iid, Event.FAILED, {"error": exc.message[:500]})
            raise
        ev = event or event_for(action)
        assert ev is not None
        j.outcome(iid, ev, out)

    # --- preflight ---

    def _preflight(self, works: list[Work], plans: Mapping[str, StepPlan]) -> None:
        if not works:
            return
        self.r.phase(f"preflight: {len(works)} system(s)")
        intents = {w.id: self.journal.intent(self.run_id, self.plan.name, w.id, Action.PREFLIGHT) for w in works}
        fault("preflight.after_intent", works[0].id)
        problems: dict[str, list[str]] = {w.id: [] for w in works}
        sizes: dict[str, int] = {}

        if not self.o.known_hosts.is_file():
            for w in works:
                problems[w.id].append(f"known_hosts file {self.o.known_hosts} not found: pass --known-hosts "
                                      "(or GOVCLOUD_KNOWN_HOSTS) with the hosts' keys")
        else:
            def check_host(w: Work, host: Any) -> tuple[str, list[str], int]:
                errs: list[str] = []
                total = 0
                ep = self.legacy_ep(w.system, host.name)
                try:
                    s = self.sessions.get(ep)
                except HostKeyError as exc:
                    return w.id, [f"{w.id}: legacy host {ep.label}: {exc.message}; fix: {exc.hint}"], 0
                except SSHError as exc:
                    return w.id, [f"{w.id}: legacy host {ep.label} unreachable: {exc.message}; fix: {exc.hint}"], 0
                for path in (*host.data, APP_DIR):
                    try:
                        total += ssh.measure(s, path).bytes
                    except SSHError as exc:
                        errs.append(f"{w.id}: legacy host {ep.label}: {exc.message}; fix: correct the data path in the "
                                    f"inventory or restore {path} on the host")
                return w.id, errs, total

            jobs = [(w, h) for w in works for h in w.system.hosts]
            with ThreadPoolExecutor(max_workers=max(1, min(16, len(jobs)))) as pool:
                for sid, errs, total in pool.map(lambda a: check_host(*a), jobs):
                    problems[sid].extend(errs)
                    sizes[sid] = sizes.get(sid, 0) + total
        self._check_dependencies(works, problems)
        try:
            self._check_cloud(works, problems)
        except GovcloudError as exc:
            for w in works:
                problems[w.id].append(f"{w.id}: the cloud could not be checked: {exc.message}; fix: {exc.hint or 'check clouds.yaml'}")
        j = self.journal
        failed = {sid: p for sid, p in problems.items() if p}
        for w in works:
            if failed:
                msg = "; ".join(failed.get(w.id, [])) or "another system of the wave failed preflight"
                self.failed_now.add(w.id)
                self.record(w.id, "preflight", "error", f"preflight: {msg}"[:2000])
                j.outcome(intents[w.id], Event.FAILED, {"problems": failed.get(w.id, [])})
                self.r.finished(w.id, "failed", "preflight")
            else:
                self.record(w.id, "preflight", "source_bytes", sizes.get(w.id, 0))
                j.outcome(intents[w.id], Event.PREFLIGHT_PASSED, {"source_bytes": sizes.get(w.id, 0)})
        if failed:
            lines = tuple(p for sid in sorted(failed) for p in failed[sid])
            raise PreflightError(f"preflight found {len(lines)} problem(s) in {len(failed)} system(s) of wave "
                                 f"{self.wave.number}; nothing was provisioned", problems=lines,
                                 hint="fix each problem, then run `govcloud migrate run` (or resume) again")

    def _check_dependencies(self, works: list[Work], problems: dict[str, list[str]]) -> None:
        j = self.journal
        done = {s["system"] for s in j.systems() if s["state"] == State.DONE.value}
        here = set(self.by_id)
        for w in works:
            for d in w.system.depends_on:
                if d not in done and d not in here:
                    problems[w.id].append(f"{w.id}: depends on {d}, which is neither migrated nor in this run of wave "
                                          f"{self.wave.number}; fix: migrate {d} first (its wave) or add it with --systems")

    def _check_cloud(self, works: list[Work], problems: dict[str, list[str]]) -> None:
        """Landing zone (project, network, keypair), image, flavors and free quota per department and region."""
        zones = self._zones(works)
        existing = self._existing_servers()
        need: dict[tuple[str, str], list[int]] = {}
        for w in works:
            for spec in w.specs:
                key = (spec.region, spec.department)
                z = zones[key]
                pname = project_name(spec.department)
                if z is None:
                    msg = (f"{w.id}: landing zone {pname} does not exist in region {spec.region}; fix: run `govcloud "
                           f"provision apply --department {spec.department}`")
                    if msg not in problems[w.id]:
                        problems[w.id].append(msg)
                    continue
                for what, present in (("network " + pname + "-app", z["network"]), ("keypair " + pname, z["keypair"])):
                    if not present:
                        msg = (f"{w.id}: {what} missing in region {spec.region}; fix: run `govcloud provision apply "
                               f"--department {spec.department}`")
                        if msg not in problems[w.id]:
                            problems[w.id].append(msg)
                kp_pub = z.get("keypair_public_key")
                if z["keypair"] and kp_pub and self._target_public_key() and kp_pub != self._target_public_key():
                    msg = (f"{w.id}: keypair {pname} in region {spec.region} holds another public key than the one "
                           f"govcloud logs in to new servers with ({self.target_key}): the targets would lock us out; "
                           f"fix: pass the matching --target-key, or delete the keypair and run `govcloud provision "
                           f"apply --department {spec.department}`")
                    if msg not in problems[w.id]:
                        problems[w.id].append(msg)
                if self.o.image not in z["images"]:
                    msg = f"{w.id}: image {self.o.image} missing in region {spec.region}; fix: upload it or pass --image"
                    if msg not in problems[w.id]:
                        problems[w.id].append(msg)
                fl = pick_flavor([FlavorInfo(f["name"], f["vcpus"], f["ram_mb"]) for f in z["flavors"]], spec.vcpus, spec.ram_mb)
                if fl is None:
                    problems[w.id].append(f"{w.id}: no flavor with at least {spec.vcpus} vCPU / {spec.ram_mb} MB in region "
                                          f"{spec.region} for {spec.name}; fix: create one (openstack flavor create)")
                    continue
                if spec.name in existing:
                    continue
                acc = need.setdefault(key, [0, 0, 0])
                acc[0] += fl.vcpus
                acc[1] += fl.ram_mb
                acc[2] += 1
        self._check_capacity(works, zones, existing, problems)
        for (region, dept), (cores, ram, inst) in sorted(need.items()):
            z = zones.get((region, dept))
            if not z:
                continue
            short = []
            for k, n in (("cores", cores), ("ram", ram), ("instances", inst)):
                limit = z["quota"][k]
                free = limit - z["in_use"][k]
                if limit >= 0 and n > free:
                    short.append(f"{k} needs {n}, {free} free of {limit}")
            if short:
                for w in works:
                    if w.system.department == dept and any(s.region == region for s in w.specs):
                        problems[w.id].append(f"{w.id}: quota of {project_name(dept)} in region {region} too small for "
                                              f"this wave ({'; '.join(short)}); fix: raise the quota (openstack quota set) "
                                              "or migrate fewer systems at once (--systems)")

    def _check_capacity(self, works: list[Work], zones: Mapping[tuple[str, str], dict[str, Any] | None],
                        existing: Mapping[str, Any], problems: dict[str, list[str]]) -> None:
        """Free vCPUs and RAM per site (Placement) against the flavors of the servers still to boot."""
        need: dict[str, list[int]] = {}
        users: dict[str, set[str]] = {}
        region_of: dict[str, str] = {}
        for w in works:
            for spec in w.specs:
                z = zones.get((spec.region, spec.department))
                if spec.name in existing or not z:
                    continue
                fl = pick_flavor([FlavorInfo(f["name"], f["vcpus"], f["ram_mb"]) for f in z["flavors"]], spec.vcpus,
                                 spec.ram_mb)
                if fl is None:
                    continue
                acc = need.setdefault(spec.site, [0, 0])
                acc[0] += fl.vcpus
                acc[1] += fl.ram_mb
                users.setdefault(spec.site, set()).add(w.id)
                region_of[spec.site] = spec.region
        free: dict[str, dict[str, int]] = {}
        for region in sorted(set(region_of.values())):
            free.update(self.cloud.site_capacity(region))
        for site, (vcpus, ram) in sorted(need.items()):
            have = free.get(site)
            if have is None:
                short = [f"no compute hosts in availability zone {site}"]
            else:
                short = [f"{k} needs {n}, {have[k]} free" for k, n in (("vcpus", vcpus), ("ram_mb", ram)) if n > have[k]]
            if short:
                for sid in sorted(users[site]):
                    problems[sid].append(f"{sid}: site {site} lacks capacity for this run's servers ({'; '.join(short)}); "
                                         "fix: add compute capacity there, or migrate fewer systems at once (--systems)")

    def _zones(self, works: Sequence[Work]) -> dict[tuple[str, str], dict[str, Any] | None]:
        """The landing zones the works need, read side by side once per run (``None``: no project)."""
        keys = sorted({(s.region, s.department) for w in works for s in w.specs} - set(self._zone_cache))
        depts = sorted({d for _, d in keys} - set(self._project_ids))

        def project(dept: str) -> tuple[str, str | None]:
            return dept, self.cloud.find_project_id(project_name(dept))

        def zone(key: tuple[str, str]) -> tuple[tuple[str, str], dict[str, Any] | None]:
            pid = self._project_ids.get(key[1])
            if pid is None:
                return key, None
            z: dict[str, Any] = self.cloud.landing_zone(key[0], pid, key[1])
            z["project_id"] = pid
            return key, z

        with ThreadPoolExecutor(max_workers=8) as pool:
            self._project_ids.update(pool.map(project, depts))
            self._zone_cache.update(pool.map(zone, keys))
        return self._zone_cache

    def _existing_servers(self) -> dict[str, Any]:
        """Servers this migration booted earlier (by ownership tag), by name; one list call per region."""
        out: dict[str, Any] = {}
        regions = sorted({s.region for w in self.work for s in w.specs})
        for region in regions:
            for s in self.cloud.find_servers(region, MIGRATION_TAG):
                if s.status not in ("DELETED", "SOFT_DELETED"):
                    out.setdefault(s.name, s)
        return out

    # --- provisioning ---

    def _provision(self, works: list[Work]) -> None:
        if not works:
            return
        self.r.phase(f"provision: {sum(len(w.specs) for w in works)} server(s) for {len(works)} system(s)")
        j = self.journal
        intents = {w.id: j.intent(self.run_id, self.plan.name, w.id, Action.PROVISION,
                                  {"servers": [s.name for s in w.specs]}) for w in works}
        failed: dict[str, str] = {}
        targets: dict[str, list[dict[str, Any]]] = {}
        try:
            self._boot_and_wait(works, failed, targets)
            fault("provision.after_active", works[0].id)
            ok = [w for w in works if w.id not in failed]
            self._configure(ok, targets, failed)
            fault("provision.after_configure", works[0].id)
        except GovcloudError as exc:
            for w in works:
                failed.setdefault(w.id, exc.message)
        for w in works:
            if w.id in failed:
                self.failed_now.add(w.id)
                self.record(w.id, "provision", "error", f"provision: {failed[w.id]}"[:2000])
                j.outcome(intents[w.id], Event.FAILED, {"error": failed[w.id][:500]})
                self.r.finished(w.id, "failed", "provision")
            else:
                self.record(w.id, "provision", "targets", targets[w.id])
                j.outcome(intents[w.id], Event.PROVISIONED, {"servers": len(targets[w.id])})

    def _boot_and_wait(self, works: list[Work], failed: dict[str, str], targets: dict[str, list[dict[str, Any]]]) -> None:
        existing = self._existing_servers()
        self._replace_errored(works, existing)
        zones = self._zones(works)
        to_boot: list[tuple[Work, TargetSpec, dict[str, Any], FlavorInfo]] = []
        ids: dict[str, dict[str, str]] = {w.id: {} for w in works}
        for w in works:
            for spec in w.specs:
                if spec.name in existing:
                    ids[w.id][spec.name] = existing[spec.name].id
                    continue
                z = zones[(spec.region, spec.department)]
                fl = pick_flavor([FlavorInfo(f["name"], f["vcpus"], f["ram_mb"]) for f in z["flavors"]], spec.vcpus,
                                 spec.ram_mb) if z else None
                if z is None or fl is None:
                    failed[w.id] = f"landing zone or flavor for {spec.name} missing in {spec.region} (preflight passed earlier)"
                    continue
                to_boot.append((w, spec, z, fl))

        def boot(item: tuple[Work, TargetSpec, dict[str, Any], FlavorInfo]) -> tuple[str, str, str]:
            w, spec, z, fl = item
            flavor_id = next(f["id"] for f in z["flavors"] if f["name"] == fl.name)
            try:
                s = self.cloud.boot_server(spec.region, z["project_id"], name=spec.name, image_id=z["images"][self.o.image],
                                           flavor_id=flavor_id, network_id=z["network"], az=spec.site,
                                           key_name=z["keypair"], metadata=spec.metadata(self.plan.name),
                                           tags=[MIGRATION_TAG, f"govcloud:system={w.id}"],
                                           security_groups=z["security_groups"])
            except GovcloudError as exc:
                return w.id, spec.name, "!" + exc.message
            fault("provision.after_boot_request", w.id)
            return w.id, spec.name, str(s.id)

        # Nova's API is the bottleneck (about 1.4 creates/s on the devcloud at 16 in flight, 1/s at 10);
        # the SDK's pool of 10 keep-alive connections then discards extras (harmless, so not logged)
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(to_boot)))) as pool:
            for sid, name, got in pool.map(boot, to_boot):
                if got.startswith("!"):
                    failed[sid] = got[1:]
                else:
                    ids[sid][name] = got
        for w in works:
            if ids[w.id]:
                self.record(w.id, "provision", "server_ids", ids[w.id])
        self.r.phase(f"provision: {len(to_boot)} server(s) booted, {sum(len(v) for v in ids.values()) - len(to_boot)} "
                     "found; waiting for ACTIVE")
        # wait until ACTIVE (one list call per region per poll)
        want = {sid: n for w in works if w.id not in failed for n, sid in ids[w.id].items()}
        owner = {sid: w.id for w in works for sid in ids[w.id].values()}
        regions = sorted({s.region for w in works for s in w.specs})
        deadline = time.monotonic() + self.o.boot_timeout
        active: dict[str, Any] = {}
        while True:
            for region in regions:
                for s in self.cloud.find_servers(region, MIGRATION_TAG):
                    if s.id in want and s.id not in active:
                        if s.status == "ACTIVE" and self.cloud.fixed_ipv4(s):
                            active[s.id] = s
                        elif s.status == "ERROR":
                            why = (getattr(s, "fault", None) or {}).get("message", "") or "no fault recorded"
                            failed[owner[s.id]] = (f"server {s.name} ({s.id}) went to ERROR in {s.availability_zone}: "
                                                   f"{why.strip()} (a rerun replaces it)")
            pending = [sid for sid in want if sid not in active and owner[sid] not in failed]
            if not pending:
                break
            if time.monotonic() > deadline:
                for sid in pending:
                    failed[owner[sid]] = f"server {want[sid]} ({sid}) not ACTIVE after {self.o.boot_timeout:.0f}s"
                break
            time.sleep(1.0)  # Nova has no push notification for us: poll with a deadline
        for w in works:
            if w.id in failed:
                continue
            rows = []
            for spec in w.specs:
                s = active[ids[w.id][spec.name]]
                rows.append({"name": spec.name, "id": s.id, "ip": self.cloud.fixed_ipv4(s), "site": spec.site,
                             "region": spec.region, "primary": spec.primary, "legacy_host": spec.legacy_host,
                             "data": list(spec.data)})
            targets[w.id] = rows
        # wait until every target answers ssh with strict host keys
        self.r.phase(f"provision: {len(active)} server(s) ACTIVE; waiting for ssh (strict host keys)")
        jobs = [(w.id, t) for w in works if w.id not in failed for t in targets[w.id]]

        end = time.monotonic() + self.o.ssh_wait  # one deadline for all targets, however many wait in the pool

        def reachable(item: tuple[str, dict[str, Any]]) -> tuple[str, str]:
            sid, t = item
            ep = self.target_ep(t)
            last = ""
            while time.monotonic() < end:
                try:
                    self.sessions.get(ep)
                    return sid, ""
                except SSHError as exc:  # not a lab host yet / key not in known_hosts yet / sshd starting
                    last = exc.message
                time.sleep(0.5)
            return sid, f"target {ep.label} not reachable over ssh with strict host keys after {self.o.ssh_wait:.0f}s: {last}"

        with ThreadPoolExecutor(max_workers=max(1, min(32, len(jobs)))) as pool:
            for sid, err in pool.map(reachable, jobs):
                if err:
                    failed[sid] = err

    def _replace_errored(self, works: list[Work], existing: dict[str, Any]) -> None:
        """A server of ours that Nova put in ERROR (no valid host, a failed build) is deleted so that it is
        booted again: an ERROR server never becomes ACTIVE. Audited; waits until Nova forgot it."""
        mine = {s.name: w for w in works for s in w.specs}
        bad = [(name, srv) for name, srv in existing.items() if name in mine and srv.status == "ERROR"]
        if not bad:
            return
        region_of = {s.name: s.region for w in works for s in w.specs}
        for name, srv in bad:
            self.cloud.delete_server(region_of[name], srv.id)
            self.journal.audit("migrate.replace_server", mine[name].id, "ok",
                               {"run_id": self.run_id, "server": name, "id": srv.id, "reason": "ERROR"})
            del existing[name]
        ids = {srv.id for _, srv in bad}
        deadline = time.monotonic() + self.o.boot_timeout
        while time.monotonic() < deadline:
            left = {s.id for r in sorted(set(region_of.values())) for s in self.cloud.find_servers(r, MIGRATION_TAG)} & ids
            if not left:
                return
            time.sleep(1.0)  # Nova deletes asynchronously: poll with a deadline
        raise MigrationError(f"{len(ids)} server(s) in ERROR were not deleted within {self.o.boot_timeout:.0f}s",
                             hint="check nova-compute; then resume")

    def _configure(self, works: list[Work], targets: Mapping[str, list[dict[str, Any]]], failed: dict[str, str]) -> None:
        if not works:
            return
        from govcloud.adapters.ansible import (
            RunSpec,
            Target,
            run_playbook,
            runner_kwargs,
        )
        from govcloud.services.hosts import PLAYBOOKS
        from govcloud.services.provision import state_dir

        tlist = []
        owner: dict[str, str] = {}
        for w in works:
            for t in targets[w.id]:
                owner[t["name"]] = w.id
                tlist.append(Target(name=t["name"], address=t["ip"], region=t["region"], site=t["site"],
                                    department=w.system.department, system=w.id, role="migrate",
                                    vars=(("migrate_target_data", list(t["data"])), ("migrate_target_system", w.id))))
        self.r.phase(f"configure: Ansible on {len(tlist)} target(s)")
        spec = RunSpec(run_id=f"migrate-{uuid.uuid4().hex[:12]}", state_dir=state_dir(), project_dir=PLAYBOOKS,
                       playbook="migrate-target.yml", targets=tuple(tlist), ssh_key=self.target_key,
                       known_hosts=self.o.known_hosts, forks=max(10, min(25, len(tlist))),
                       control_path_dir=self.o.control_path_dir)
        result = run_playbook(runner_kwargs(spec))
        seen = {h.name for h in result.hosts}
        for h in result.failed_hosts:
            failed[owner[h.name]] = f"Ansible run {result.run_id}: {h.name}: {h.failed_task}: {h.message}"
        for name, sid in owner.items():
            if name not in seen and result.status != "successful":
                failed.setdefault(sid, f"Ansible run {result.run_id} ({result.status}) has no result for {name}")

    # --- per-system pipeline ---

    def _pipeline(self, plans: Mapping[str, StepPlan]) -> None:
        depends = {w.id: w.system.depends_on for w in self.work}
        batches = order_by_dependencies([w.id for w in self.work], depends)
        bad: set[str] = set()
        self.r.phase(f"migrate: {len(self.work)} system(s), {len(batches)} dependency level(s), "
                     f"concurrency {self.o.concurrency}")
        for batch in batches:
            runnable = []
            for sid in batch:
                blocked = [d for d in depends[sid] if d in bad]
                st = self.status(sid)
                if sid in self.failed_now:
                    bad.add(sid)
                    continue
                if blocked:
                    self.record(sid, "pipeline", "error", f"not continued: dependency {', '.join(blocked)} failed")
                    self.r.finished(sid, st.state.value, f"dependency {', '.join(blocked)} failed")
                    bad.add(sid)
                    continue
                runnable.append(sid)
            with ThreadPoolExecutor(max_workers=max(1, self.o.concurrency)) as pool:
                for sid, ok in pool.map(self._system, runnable):
                    if not ok:
                        bad.add(sid)

    def _system(self, sid: str) -> tuple[str, bool]:
        w = self.by_id[sid]
        try:
            while True:
                st = self.status(sid)
                sp = next_steps(sid, st, manual_cutover=self.o.manual_cutover, retry_rolled_back=False)
                if not sp.steps:
                    self.r.finished(sid, st.state.value, sp.note)
                    return sid, st.state in (State.DONE, State.SYNCED)
                act = sp.steps[0]
                if sp.reopen:
                    self.journal.mark(self.run_id, self.plan.name, sid, Event.RESUMED, {"reason": "resume"})
                if act in (Action.PREFLIGHT, Action.PROVISION):
                    self.r.finished(sid, st.state.value, f"needs {act.value} (another run will do it)")
                    return sid, False
                {Action.WARM_SYNC: self.warm_sync, Action.CUTOVER: self.cutover, Action.VERIFY: self.verify,
                 Action.FINISH: self.finish, Action.ROLLBACK: self.rollback}[act](w)
                if act == Action.ROLLBACK:
                    self.r.finished(sid, self.status(sid).state.value, "rolled back")
                    return sid, False
        except OutsideWindowError as exc:
            self.refused[sid] = exc.message
            self.r.finished(sid, self.status(sid).state.value, exc.message[:200])
            return sid, False
        except GovcloudError as exc:
            log.debug("system %s failed", sid, exc_info=True)
            self.r.finished(sid, self.status(sid).state.value, exc.message[:200])
            return sid, False

    # --- data ---

    def _targets(self, w: Work) -> list[dict[str, Any]]:
        t = self.fact(w.id, "targets")
        if not t:
            raise MigrationError(f"{w.id}: the journal has no targets (provisioning did not complete)",
                                 hint="run `govcloud migrate resume`")
        return list(t)

    def _manifests(self, w: Work, targets: Sequence[Mapping[str, Any]] | None, *, source: bool = True
                   ) -> tuple[dict[str, str], dict[str, dict[str, str]], dict[str, int]]:
        """Source (``legacy-host:path`` -> digest) and, when ``targets`` is given, per-target manifests,
        all computed at once (one thread and SSH channel per host and path; each host hashes its own
        tree with its hash cache, so only files changed since the last manifest are read). Also the
        counts of what was read, for the journal."""
        jobs: list[tuple[str, str, ssh.Endpoint, str]] = []  # (side, key, endpoint, path)
        if source:
            for h in w.system.hosts:
                ep = self.legacy_ep(w.system, h.name)
                jobs += [("", f"{h.name}:{p}", ep, p) for p in h.data]
        for t in targets or ():
            ep = self.target_ep(t)
            jobs += [(str(t["name"]), f"{t['legacy_host']}:{p}", ep, p) for p in t["data"]]

        def one(job: tuple[str, str, ssh.Endpoint, str]) -> tuple[str, str, ssh.Manifest]:
            side, key, ep, path = job
            return side, key, ssh.incremental_manifest(self.sessions.get(ep), path)

        src: dict[str, str] = {}
        dst: dict[str, dict[str, str]] = {str(t["name"]): {} for t in targets or ()}
        counts = {"files": 0, "hashed_files": 0, "hashed_bytes": 0}
        if not jobs:
            return src, dst, counts
        with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
            for side, key, m in pool.map(one, jobs):
                (dst[side] if side else src)[key] = m.digest
                counts["files"] += m.files
                counts["hashed_files"] += m.hashed_files
                counts["hashed_bytes"] += m.hashed_bytes
        return src, dst, counts

    def _source_manifests(self, w: Work) -> dict[str, str]:
        return self._manifests(w, None)[0]

    def _target_manifests(self, w: Work, targets: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
        """Per target: legacy-host:path -> digest (comparable with the source's)."""
        return self._manifests(w, targets, source=False)[1]

    def _record_manifest_work(self, w: Work, step: str, seconds: float, counts: Mapping[str, int]) -> None:
        self.record(w.id, step, "manifest_seconds", round(seconds, 3))
        self.record(w.id, step, "manifest_hashed_files", int(counts["hashed_files"]))
        self.record(w.id, step, "manifest_hashed_bytes", int(counts["hashed_bytes"]))

    def _site_composites(self, w: Work, dst: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
        """Per site: one composite over all its targets' manifests (comparable with the source's)."""
        site_of = {t["name"]: t["site"] for t in self._targets(w)}
        merged: dict[str, dict[str, str]] = {}
        for name, m in dst.items():
            merged.setdefault(site_of[name], {}).update(m)
        return {site: composite(m) for site, m in merged.items()}

    def _transfer_keys(self, w: Work, targets: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
        return [{"mig_id": t["name"][:64], "target": t["ip"], "target_name": t["name"], "source_host": t["legacy_host"]}
                for t in targets]

    @contextmanager
    def _staged_keys(self, w: Work, targets: Sequence[Mapping[str, Any]]) -> Iterator[dict[str, ssh.MigrationKey]]:
        """Per-migration keys (target name -> key) authorised for the block and removed after it (also on
        failure): the cutover sets them up before it stops the source, so their ssh round trips are
        not part of the downtime."""
        with contextlib.ExitStack() as stack:
            keys: dict[str, ssh.MigrationKey] = {}
            for t in targets:
                src_ep = self.legacy_ep(w.system, t["legacy_host"])
                keys[str(t["name"])] = stack.enter_context(ssh.transfer_key(
                    self.sessions.get(src_ep), self.sessions.get(self.target_ep(t)), mig_id=str(t["name"])[:64],
                    source_ip=src_ep.address, target_host_keys=ssh.known_hosts_lines(self.o.known_hosts, str(t["ip"]))))
            yield keys

    def _push_all(self, w: Work, targets: Sequence[Mapping[str, Any]], *, checksum: bool = False,
                  step: str = "sync", keys: Mapping[str, ssh.MigrationKey] | None = None) -> dict[str, int]:
        """rsync on each legacy host to each of its targets (per-migration key, removed after); returns
        summed stats. Pairs run side by side (each is a process on a legacy host, not here)."""
        total = int(self.fact(w.id, "source_bytes") or 0) * max(1, len({t["site"] for t in targets}))
        acc = {"bytes_sent": 0, "literal_data": 0, "matched_data": 0, "files_transferred": 0}
        lock = threading.Lock()

        def pair(t: Mapping[str, Any]) -> None:
            src_ep = self.legacy_ep(w.system, t["legacy_host"])
            src = self.sessions.get(src_ep)
            tgt = self.sessions.get(self.target_ep(t))
            staged = (keys or {}).get(str(t["name"]))
            lines = ssh.known_hosts_lines(self.o.known_hosts, str(t["ip"]))
            with (contextlib.nullcontext(staged) if staged is not None else
                  ssh.transfer_key(src, tgt, mig_id=str(t["name"])[:64], source_ip=src_ep.address,
                                   target_host_keys=lines)) as key:
                fault(f"{step}.after_key", w.id)
                host = next(h for h in w.system.hosts if h.name == t["legacy_host"])
                jobs: list[tuple[str, tuple[str, ...]]] = [*((p, ()) for p in host.data), (APP_DIR, APP_EXCLUDES)]

                def one(job: tuple[str, tuple[str, ...]]) -> None:
                    path, excludes = job
                    spec = ssh.RsyncSpec(source_path=path, dest_host=str(t["ip"]), dest_path=path,
                                         identity=key.private_path, known_hosts=key.known_hosts_path,
                                         checksum=checksum, excludes=excludes)
                    st = self._push_retrying(src, spec)
                    with lock:
                        acc["bytes_sent"] += st.bytes_sent
                        acc["literal_data"] += st.literal_data
                        acc["matched_data"] += st.matched_data
                        acc["files_transferred"] += st.files_transferred
                        self.r.step(w.id, step, total=max(total, 1), done=min(total, acc["literal_data"] + acc["matched_data"]))

                # the paths side by side (one rsync process each on the legacy host): the small ones
                # (the app) no longer add an ssh handshake and a file-list pass to the big one's time
                dirs = [p.rstrip("/") + "/" for p, _ in jobs]
                nested = any(a != b and a.startswith(b) for a in dirs for b in dirs)
                with ThreadPoolExecutor(max_workers=1 if nested else len(jobs)) as paths:
                    list(paths.map(one, jobs))

        with ThreadPoolExecutor(max_workers=max(1, min(4, len(targets)))) as pool:
            list(pool.map(pair, targets))
        return acc

    @staticmethod
    def _push_retrying(src: ssh.SSHSession, spec: ssh.RsyncSpec) -> ssh.RsyncStats:
        """rsync, again after a transport failure (ssh could not connect, connection lost: exit 255, 12,
        30, 35), at most 3 attempts: a network hiccup between two hosts must not fail a migration; rsync
        resumes with what already arrived."""
        for attempt in range(1, 4):
            try:
                return ssh.push(src, spec)
            except SSHError as exc:
                if exc.status not in (255, 12, 30, 35) or attempt == 3:
                    raise
                log.warning("rsync to %s failed (exit %s), attempt %d of 3: %s", spec.dest_host, exc.status, attempt,
                            exc.stderr)
                time.sleep(2.0 * attempt)  # backoff between attempts of a remote transfer: nothing to poll
        raise AssertionError("unreachable")

    def warm_sync(self, w: Work) -> None:
        targets = self._targets(w)
        keys = self._transfer_keys(w, targets)
        with self.step(w, Action.WARM_SYNC, {"transfer_keys": keys}) as out:
            last_src = self.fact(w.id, "source_manifest")
            last_dst = self.fact(w.id, "target_manifest")
            current = composite(self._source_manifests(w)) if last_src and last_dst else ""
            decision = sync_decision(last_src, last_dst, current) if current else SyncDecision.FULL
            stats = {"bytes_sent": 0, "literal_data": 0, "matched_data": 0, "files_transferred": 0}
            t0 = time.monotonic()
            if decision != SyncDecision.SKIP:
                stats = self._push_all(w, targets, step="sync")
            transfer_s = time.monotonic() - t0
            fault("sync.after_rsync", w.id)
            # the freshness proof, and it primes the hosts' hash caches while the source is still live,
            # so the cutover's manifests (service down) only read what changed after this point
            self.r.step(w.id, "manifests")
            t1 = time.monotonic()
            src, dst, counts = self._manifests(w, targets)
            prime_s = time.monotonic() - t1
            self.record(w.id, "warm_sync", "transfer_seconds", round(transfer_s, 3))
            self._record_manifest_work(w, "warm_sync", prime_s, counts)
            self._record_sync(w, "warm_sync", decision, stats, src, dst)
            out.update({"decision": decision.value, **stats, "transfer_seconds": round(transfer_s, 3),
                        "manifest_seconds": round(prime_s, 3), "manifest_hashed_bytes": counts["hashed_bytes"]})

    def _record_sync(self, w: Work, step: str, decision: SyncDecision, stats: Mapping[str, int],
                     src: Mapping[str, str], dst: Mapping[str, Mapping[str, str]]) -> tuple[str, str]:
        src_c = composite(dict(src))
        per = self._site_composites(w, dst)
        dst_c = next(iter(per.values())) if per and len(set(per.values())) == 1 else "differs:" + composite(per)
        self.record(w.id, step, "sync_decision", decision.value)
        self.record(w.id, step, FACT_BYTES, int(stats["bytes_sent"]))
        self.record(w.id, step, "literal_data", int(stats["literal_data"]))
        self.record(w.id, step, "files_transferred", int(stats["files_transferred"]))
        self.record(w.id, step, "source_manifest", src_c)
        self.record(w.id, step, "target_manifest", dst_c)
        self.record(w.id, step, "manifests", {"source": dict(src), "targets": {k: dict(v) for k, v in dst.items()}})
        return src_c, dst_c

    # --- app control and health ---

    def _app(self, ep: ssh.Endpoint, ctl: str, action: str) -> ssh.CommandResult:
        s = self.sessions.get(ep)
        return s.run(f"{ctl} {shlex.quote(action)}", check=False, timeout=60)

    def _legacy_all(self, w: Work, action: str) -> None:
        def one(h: Any) -> None:
            r = self._app(self.legacy_ep(w.system, h.name), LEGACY_APP_CTL, action)
            if r.status != 0:
                raise MigrationError(f"{w.id}: `{action}` of the legacy app on {h.name} ({h.address}) exited {r.status}: "
                                     f"{(r.stderr or r.stdout).strip()[-300:]}",
                                     hint=f"check /srv/app/sampleapp.log on {h.name}")

        with ThreadPoolExecutor(max_workers=max(1, len(w.system.hosts))) as pool:
            list(pool.map(one, w.system.hosts))

    def _healthy(self, ip: str) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://{ip}:{self.o.app_port}/health", timeout=3) as resp:
                doc = json.loads(resp.read() or b"{}")
                return bool(resp.status == 200 and doc.get("status") == "ok")
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _wait_healthy(self, ips: Sequence[str], timeout: float) -> list[str]:
        """The addresses still unhealthy at the deadline (empty: all healthy)."""
        end = time.monotonic() + timeout
        left = list(ips)
        while left:
            left = [ip for ip in left if not self._healthy(ip)]
            if not left or time.monotonic() > end:
                break
            time.sleep(0.2)
        return left

    def _endpoint_host(self, w: Work) -> Any:
        return next((h for h in w.system.hosts if h.role == "app"), w.system.hosts[0])

    # --- cutover, verify, finish, rollback ---

    def check_window(self, w: Work) -> str:
        """The ISO end of the window occurrence the cutover runs in; refuses outside it unless told."""
        tz = ZoneInfo(self.o.timezone)
        ws = window_state(self.wave.window, datetime.now(tz))
        if ws.inside:
            return ws.closes.isoformat()
        if not self.o.outside_window:
            self.journal.audit("migrate.cutover", w.id, "refused", {"run_id": self.run_id, "reason": "outside window",
                                                                    "window": str(self.wave.window),
                                                                    "next_opens": ws.opens.isoformat()})
            raise OutsideWindowError(
                f"{w.id}: cutover refused: now is outside wave {self.wave.number}'s window {self.wave.window} "
                f"({self.o.timezone}); it next opens {ws.opens.isoformat()}",
                hint="run it inside the window, or pass --outside-window (audited) if the change board allows")
        self.journal.audit("migrate.cutover", w.id, "outside_window", {"run_id": self.run_id, "window": str(self.wave.window)})
        return datetime.now(tz).isoformat()

    def cutover(self, w: Work) -> None:
        window_end = self.check_window(w)
        targets = self._targets(w)
        keys = self._transfer_keys(w, targets)
        ep_host = self._endpoint_host(w)
        primary = next(t for t in targets if t["primary"] and t["legacy_host"] == ep_host.name)
        switched = False
        try:
            with self.step(w, Action.CUTOVER, {"transfer_keys": keys, "window_end": window_end}) as out:
                self.record(w.id, "cutover", FACT_WINDOW_END, window_end)
                with self._staged_keys(w, targets) as staged:  # before the stop: not part of the downtime
                    stopped_at = self._stopped_at(w)
                    self._legacy_all(w, "stop")
                    if stopped_at is None:
                        stopped_at = time.time()
                        self.record(w.id, "cutover", "source_stopped_at", stopped_at)
                    fault("cutover.after_stop", w.id)
                    t0 = time.monotonic()
                    src, _, counts = self._manifests(w, None)  # the source is stopped: this is final
                    manifest_s = time.monotonic() - t0
                    decision = sync_decision(self.fact(w.id, "source_manifest"), self.fact(w.id, "target_manifest"),
                                             composite(src))
                    stats = {"bytes_sent": 0, "literal_data": 0, "matched_data": 0, "files_transferred": 0}
                    t1 = time.monotonic()
                    if decision != SyncDecision.SKIP:
                        stats = self._push_all(w, targets, step="cutover", keys=staged)
                    transfer_s = time.monotonic() - t1
                    t2 = time.monotonic()
                    _, dst, more = self._manifests(w, targets, source=False)
                    manifest_s += time.monotonic() - t2
                    counts = {k: counts[k] + more[k] for k in counts}
                    if any(m != {k: v for k, v in src.items() if k in m} for m in dst.values()):
                        # rsync's quick check can miss a same-size rewrite within the mtime granularity
                        extra = self._push_all(w, targets, checksum=True, step="cutover", keys=staged)
                        stats = {k: stats[k] + extra[k] for k in stats}
                        dst = self._target_manifests(w, targets)
                        out["checksum_pass"] = True
                self.record(w.id, "cutover", "transfer_seconds", round(transfer_s, 3))
                self._record_manifest_work(w, "cutover", manifest_s, counts)
                src_c, dst_c = self._record_sync(w, "cutover", decision, stats, src, dst)
                if src_c != dst_c:
                    raise MigrationError(f"{w.id}: target data differs from the stopped source after the final sync "
                                         "and a --checksum pass", hint="see `govcloud migrate log " + w.id + "` (manifests)")
                fault("cutover.after_final_sync", w.id)
                for t in targets:
                    r = self._app(self.target_ep(t), TARGET_APP_CTL, "start")
                    out.setdefault("target_start", {})[t["name"]] = r.status
                fault("cutover.after_start", w.id)
                legacy_addr = ep_host.address
                cur = self.smap.lookup(w.id)
                if cur is None:
                    self.smap.switch(w.id, address=legacy_addr, port=self.o.app_port, site="legacy", expect="",
                                     reason=f"registered by migration {self.run_id}")
                    cur = self.smap.lookup(w.id)
                assert cur is not None
                expect = cur.address if cur.address in (legacy_addr, primary["ip"]) else legacy_addr
                self.smap.switch(w.id, address=primary["ip"], port=self.o.app_port, site=primary["site"], expect=expect,
                                 reason=f"cutover {self.run_id}")
                switched = True
                self.journal.audit("service_map.switch", w.id, "ok", {"run_id": self.run_id, "from": legacy_addr,
                                                                      "to": primary["ip"]})
                fault("cutover.after_switch", w.id)
                out.update({"decision": decision.value, **stats, "endpoint": primary["ip"]})
        except GovcloudError as exc:
            if isinstance(exc, RefusedError):
                raise
            # the legacy service may be stopped: bring it back now (state is failed with last good `synced`)
            self._restore_legacy(w, targets, switched_to=primary["ip"] if switched else None, reason=exc.message)
            raise

    def _stopped_at(self, w: Work) -> float | None:
        """The source stop time of this cutover attempt, if a killed attempt already stopped it."""
        trs = self.journal.transitions(self.plan.name, w.id)
        last_sync = max((t["at"] for t in trs if t["action"] == Action.WARM_SYNC.value and t["phase"] == "outcome"), default="")
        for f in reversed(self.journal.facts(self.plan.name, w.id, "source_stopped_at")):
            return float(f["value"]) if f["at"] > last_sync else None
        return None

    def verify(self, w: Work) -> None:
        targets = self._targets(w)
        ips = [t["ip"] for t in targets]
        try:
            with self.step(w, Action.VERIFY, {"targets": ips}) as out:
                bad = self._wait_healthy(ips, self.o.health_timeout)
                healthy_at = time.time()
                if bad:
                    raise MigrationError(f"{w.id}: target app not healthy on {', '.join(bad)} within "
                                         f"{self.o.health_timeout:.0f}s (GET /health)",
                                         hint=f"inspect the target (kept): {TARGET_APP_CTL} status; /srv/app/sampleapp.log")
                src = self.fact(w.id, "source_manifest")
                dst = self._target_manifests(w, targets)
                per = set(self._site_composites(w, dst).values())
                if per != {src}:
                    raise MigrationError(f"{w.id}: checksum manifests differ between source and target(s) at verify",
                                         hint=f"see `govcloud migrate log {w.id}`")
                stopped = self._stopped_at_any(w)
                downtime = round(healthy_at - stopped, 3) if stopped else None
                if downtime is not None:
                    self.record(w.id, "verify", FACT_DOWNTIME, downtime)
                out.update({"healthy": ips, "downtime_seconds": downtime})
                fault("verify.before_outcome", w.id)
        except GovcloudError as exc:
            self.rollback(w, reason=exc.message)
            raise

    def _stopped_at_any(self, w: Work) -> float | None:
        v = self.fact(w.id, "source_stopped_at")
        return float(v) if v is not None else None

    def finish(self, w: Work) -> None:
        with self.step(w, Action.FINISH) as out:
            out["legacy"] = "stopped, intact until `govcloud migrate decommission`"
            fault("finish.before_outcome", w.id)

    def rollback(self, w: Work, reason: str = "") -> None:
        """Legacy app back, endpoint back to the legacy host, target app stopped (the target is kept)."""
        targets = self.fact(w.id, "targets") or []
        with self.step(w, Action.ROLLBACK, {"reason": reason[:300]}, event=Event.ROLLED_BACK) as out:
            cur = self.smap.lookup(w.id)
            self._restore_legacy(w, targets, switched_to=cur.address if cur else None, reason=reason)
            out["legacy_healthy"] = True

    def _restore_legacy(self, w: Work, targets: Sequence[Mapping[str, Any]], *, switched_to: str | None, reason: str) -> None:
        for t in targets:
            try:
                self._app(self.target_ep(t), TARGET_APP_CTL, "stop")
            except SSHError as exc:
                log.warning("%s: could not stop the target app on %s: %s", w.id, t["name"], exc)
        self._legacy_all(w, "start")
        ep_host = self._endpoint_host(w)
        if switched_to and switched_to != ep_host.address:
            self.smap.switch(w.id, address=ep_host.address, port=self.o.app_port, site="legacy", expect=switched_to,
                             reason=f"rollback {self.run_id}: {reason[:120]}")
            self.journal.audit("service_map.switch", w.id, "ok", {"run_id": self.run_id, "from": switched_to,
                                                                  "to": ep_host.address, "reason": "rollback"})
        bad = self._wait_healthy([h.address for h in w.system.hosts], self.o.health_timeout)
        if bad:
            raise MigrationError(f"{w.id}: legacy app not healthy again on {', '.join(bad)} after rollback",
                                 hint="start it by hand: python3 /srv/app/sampleapp.py start")


# ------------------------------------------------------------------ entry points for the CLI

def run(root: Path, options: MigrateOptions, reporter: Reporter | None = None) -> RunSummary:
    return Migrator(root, options, reporter).execute()


def _open(root: Path, journal: Path | None) -> Journal:
    return Journal(journal_path(root, journal), create=False)


def options_of_last_run(root: Path, journal: Path | None, plan: str | None = None, *,
                        unfinished: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """(run row, its options) of the newest run (unfinished only: running/crashed/failed/interrupted)."""
    with _open(root, journal) as j:
        runs = [r for r in j.runs(plan) if r["options"]]
    if unfinished:
        runs = [r for r in runs if r["status"] != "done"]
    if not runs:
        raise InvalidInputError("nothing to resume: no unfinished migration run in the journal"
                                + (f" for plan {plan}" if plan else ""),
                                hint="start one with `govcloud migrate run PLAN --wave N`")
    r = runs[-1]
    return r, dict(r["options"])


def resume_options(root: Path, journal: Path | None, plan: str | None, **override: Any) -> MigrateOptions:
    _, o = options_of_last_run(root, journal, plan)
    kw: dict[str, Any] = {
        "plan_file": Path(o["plan_file"]), "wave": int(o["wave"]), "systems": tuple(o.get("systems") or ()),
        "concurrency": int(o.get("concurrency", 4)), "manual_cutover": bool(o.get("manual_cutover")),
        "known_hosts": Path(o["known_hosts"]), "ssh_key": Path(o["ssh_key"]) if o.get("ssh_key") else None,
        "target_key": Path(o["target_key"]) if o.get("target_key") else None, "image": o.get("image", "fake-image"),
        "timezone": o.get("timezone", "Asia/Shanghai"), "journal": journal, "command": "resume"}
    kw.update({k: v for k, v in override.items() if v is not None})
    return MigrateOptions(**kw)


def system_options(root: Path, journal: Path | None, system: str, command: str, **override: Any) -> MigrateOptions:
    """Options to act on one system: its plan and wave from the journal, the rest from its plan's last run."""
    with _open(root, journal) as j:
        rows = [s for s in j.systems() if s["system"] == system]
        if not rows:
            raise InvalidInputError(f"system {system} is not in the journal {j.path}",
                                    hint="`govcloud migrate status` lists the systems migrations know")
        row = rows[-1]
        runs = [r for r in j.runs(row["plan"]) if r["options"] and int(r["wave"]) == int(row["wave"])]
    if not runs:
        raise InvalidInputError(f"no run of plan {row['plan']} wave {row['wave']} recorded its options")
    o = runs[-1]["options"]
    kw: dict[str, Any] = {
        "plan_file": Path(o["plan_file"]), "wave": int(row["wave"]), "systems": (system,),
        "concurrency": 1, "manual_cutover": False, "known_hosts": Path(o["known_hosts"]),
        "ssh_key": Path(o["ssh_key"]) if o.get("ssh_key") else None,
        "target_key": Path(o["target_key"]) if o.get("target_key") else None, "image": o.get("image", "fake-image"),
        "timezone": o.get("timezone", "Asia/Shanghai"), "journal": journal, "command": command}
    kw.update({k: v for k, v in override.items() if v is not None})
    return MigrateOptions(**kw)


def cutover_one(root: Path, options: MigrateOptions, reporter: Reporter | None = None) -> RunSummary:
    """`migrate cutover SYSTEM`: a system waiting at `synced` (manual cutover) goes through cutover,
    verify and finish."""
    m = Migrator(root, options, reporter)
    (w,) = m.work
    with Journal(m.jpath) as j:
        st = j.status(m.plan.name, w.id)
    if st.state != State.SYNCED:
        m.close()
        raise InvalidInputError(f"{w.id} is {st.state.value}; `migrate cutover` needs a system at synced",
                                hint="run the wave with --manual-cutover first, or see `govcloud migrate status`")
    return m.execute()


def rollback_one(root: Path, options: MigrateOptions, reporter: Reporter | None = None) -> RunSummary:
    """`migrate rollback SYSTEM`: legacy service back, endpoint back, target kept."""
    m = Migrator(root, options, reporter)
    (w,) = m.work
    j = m.journal
    st = j.status(m.plan.name, w.id)
    if st.state not in (State.CUTOVER, State.VERIFIED, State.FAILED):
        m.close()
        raise InvalidInputError(f"{w.id} is {st.state.value}: only a system at cutover, verified or failed can be "
                                "rolled back", hint="a done system is decommissioned or migrated back by a new plan")
    started = time.monotonic()
    m.run_id = j.start_run(m.plan.name, m.wave.number, "rollback", options=options.as_record())
    summary = RunSummary(m.run_id, m.plan.name, m.wave.number)
    status = "failed"
    try:
        with j.wave_lock(m.plan.name, m.wave.number, m.run_id):
            m.rollback(w, reason="operator asked (govcloud migrate rollback)")
            status = "done"
    finally:
        summary.results = [m._result(w.id)]
        j.finish_run(m.run_id, status)
        summary.seconds = time.monotonic() - started
        m.close()
    return summary


def decommission(root: Path, options: MigrateOptions) -> list[str]:
    """Remove the legacy copy of a done system: its data paths and app directory on every legacy host."""
    m = Migrator(root, options)
    (w,) = m.work
    j = m.journal
    try:
        st = j.status(m.plan.name, w.id)
        if st.state != State.DONE:
            raise RefusedError(f"{w.id} is {st.state.value}: only a done system is decommissioned",
                               hint="finish its migration first (`govcloud migrate status`)")
        removed = []
        for h in w.system.hosts:
            s = m.sessions.get(m.legacy_ep(w.system, h.name))
            s.run(f"{LEGACY_APP_CTL} stop >/dev/null 2>&1; true")
            paths = [*h.data, APP_DIR]
            s.run("rm -rf -- " + " ".join(shlex.quote(p) for p in paths))
            removed += [f"{h.name}:{p}" for p in paths]
        j.record_fact("decommission", m.plan.name, w.id, "decommission", "decommissioned_at", datetime.now(UTC).isoformat())
        j.audit("migrate.decommission", w.id, "ok", {"removed": removed})
        return removed
    finally:
        m.close()


def status_rows(root: Path, journal: Path | None, plan: str | None = None) -> list[dict[str, Any]]:
    with _open(root, journal) as j:
        rows = []
        for s in j.systems(plan):
            facts = j.facts(s["plan"], s["system"])
            last = {f["key"]: f["value"] for f in facts}
            rows.append({"plan": s["plan"], "wave": s["wave"], "system": s["system"], "state": s["state"],
                         "last_good": s["last_good"], "updated_at": s["updated_at"],
                         "bytes_sent": sum(int(f["value"]) for f in facts if f["key"] == FACT_BYTES),
                         "downtime_seconds": last.get(FACT_DOWNTIME), "error": last.get("error") if s["state"] in
                         ("failed", "rolled_back") else None,
                         "servers": len(last.get("targets") or [])})
        return rows


def system_log(root: Path, journal: Path | None, system: str) -> dict[str, Any]:
    with _open(root, journal) as j:
        rows = [s for s in j.systems() if s["system"] == system]
        if not rows:
            raise InvalidInputError(f"system {system} is not in the journal {j.path}")
        plan = rows[-1]["plan"]
        return {"plan": plan, "system": system, "transitions": j.transitions(plan, system),
                "facts": [{k: f[k] for k in ("at", "run_id", "step", "key", "value")} for f in j.facts(plan, system)]}


def cleanup_servers(cloud: Any, regions: Iterable[str], system: str | None = None) -> list[str]:
    """Delete servers a migration booted (tests and benchmarks): by ownership tag, optionally one system."""
    out = []
    for region in regions:
        for s in cloud.find_servers(region, MIGRATION_TAG):
            if system is None or f"govcloud:system={system}" in (s.tags or []):
                cloud.delete_server(region, s.id)
                out.append(s.id)
    return out


Callback = Callable[..., None]
