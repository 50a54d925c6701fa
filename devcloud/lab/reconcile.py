"""Nova servers -> lab hosts: every ACTIVE server becomes an SSH-reachable host in its AZ's site.

The pure part (:func:`desired_hosts`, :func:`diff`) turns a server list into host specs and a plan;
:func:`fetch_servers` reads the real clouds (openstacksdk, clouds ``gz`` and ``st`` of devcloud's
clouds.yaml); :func:`reconcile` applies the plan to the lab. Only hosts of kind ``nova`` are ever
removed, so legacy and infra hosts are never touched.

:class:`Watcher` (``devcloud lab reconcile --watch``, started by ``lab up``) makes the lab behave like
a cloud: it lists the servers of each region once per interval and applies a reconcile only when the
lab's nova hosts differ from what the clouds say. Every reconcile (explicit or watcher) runs under
one lock file, so they never apply stale lists over each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from devcloud.lab import net
from devcloud.lab.novaapi import (
    CLOUDS,
    ServerInfo,
    connect,
    fetch_servers,
    resolve_server,
)
from devcloud.lab.state import HostSpec
from devcloud.lab.watchutil import (
    GONE,
    QuietLog,
    Signature,
    backoff_delay,
    changes_since,
    retry_delay,
    server_signature,
    snapshot,
)

log = logging.getLogger(__name__)


@dataclass
class Plan:
    create: list[HostSpec] = field(default_factory=list)
    replace: list[HostSpec] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)


def host_key(server_id: str) -> str:
    return f"n-{server_id.lower()}"


def hostname_of(name: str) -> str:
    """A server name as a valid hostname (what `hostname` inside the host answers)."""
    h = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return h or "server"


def desired_hosts(servers: Iterable[ServerInfo]) -> tuple[dict[str, HostSpec], list[str]]:
    """Host specs for the servers that can be lab hosts, and one reason per server skipped."""
    want: dict[str, HostSpec] = {}
    skipped: list[str] = []
    by_ip: dict[str, str] = {}
    for s in sorted(servers, key=lambda x: x.id):
        label = f"{s.region}/{s.name} ({s.id})"
        if s.status != "ACTIVE":
            continue
        if s.az not in net.DATACENTRES:
            skipped.append(f"{label}: availability zone {s.az!r} is not a lab site")
            continue
        if not (s.ip and s.cidr):
            skipped.append(f"{label}: no IPv4 fixed IP")
            continue
        site = net.site(s.az)
        subnet = IPv4Network(s.cidr, strict=False)
        gateway = s.gateway or str(subnet.network_address + 1)
        try:
            net.validate_host_address(site, IPv4Address(s.ip), subnet.prefixlen, IPv4Address(gateway))
        except (net.LabError, ValueError) as e:
            skipped.append(f"{label}: {e}")
            continue
        if s.ip in by_ip:
            skipped.append(f"{label}: fixed IP {s.ip} already used by {by_ip[s.ip]}")
            continue
        by_ip[s.ip] = label
        if not s.public_key:
            skipped.append(f"{label}: no keypair public key (key_name={s.key_name!r}); host created without keys")
        key = host_key(s.id)
        want[key] = HostSpec(
            key=key, hostname=hostname_of(s.name), site=site.name, ip=s.ip, prefixlen=subnet.prefixlen,
            gateway=gateway, kind="nova", authorized_keys=[s.public_key.strip()] if s.public_key else [],
            meta={"server_id": s.id, "server_name": s.name, "region": s.region, "az": s.az, "key_name": s.key_name or ""},
        )
    return want, skipped


def diff(desired: dict[str, HostSpec], current: Iterable[HostSpec]) -> Plan:
    """What to do so the lab's ``nova`` hosts match ``desired``."""
    plan = Plan()
    have = {h.key: h for h in current if h.kind == "nova"}
    for key, spec in sorted(desired.items()):
        old = have.get(key)
        if old is None:
            plan.create.append(spec)
        elif old.same_shape(spec):
            plan.keep.append(key)
        else:
            plan.replace.append(spec)
    plan.remove = sorted(k for k in have if k not in desired)
    return plan


@dataclass
class ReconcileResult:
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def lock_path(lab_dir: Path) -> Path:
    """The one lock every reconcile (explicit or watcher) holds while it lists and applies."""
    return lab_dir / ".reconcile.lock"


@contextlib.contextmanager
def reconcile_lock(lab_dir: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold the reconcile lock; yields False at once (lock not taken) when ``blocking=False`` and busy.

    Listing and applying under one lock means a slower caller never applies an older server list
    over a newer one (a deleted server's host would come back for a moment). Not re-entrant.
    """
    lab_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_path(lab_dir), "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def reconcile(lab: Any, servers: Sequence[ServerInfo] | None = None, clouds_yaml: Path | None = None) -> ReconcileResult:
    """Make the lab's nova hosts match the clouds' ACTIVE servers. Idempotent.

    Holds the reconcile lock while listing and applying (waits for a running watcher step).
    """
    with reconcile_lock(Path(lab.files.root)):
        if servers is None:
            path = clouds_yaml or lab.paths.clouds_yaml
            if not Path(path).exists():
                raise net.LabError(f"no clouds.yaml at {path}: is the devcloud up (`devcloud up`)?")
            servers = fetch_servers(Path(path))
        return apply_servers(lab, servers)


def apply_servers(lab: Any, servers: Sequence[ServerInfo]) -> ReconcileResult:
    """Apply a server list to the lab (the caller holds the reconcile lock)."""
    desired, skipped = desired_hosts(servers)
    plan = diff(desired, lab.hosts())
    res = ReconcileResult(kept=plan.keep, skipped=skipped)
    if plan.remove:  # first: a new server may have the address of a deleted one
        lab.remove_hosts(plan.remove)
        res.removed.extend(plan.remove)
    todo = [*plan.replace, *plan.create]
    if not todo:
        return res
    args = [
        {"key": s.key, "site": s.site, "ip": s.ip, "prefixlen": s.prefixlen, "gateway": s.gateway, "hostname": s.hostname,
         "kind": "nova", "authorized_keys": s.authorized_keys, "controller_key": False, "meta": s.meta}
        for s in todo
    ]
    try:  # one lock, one route and known_hosts update for all (hundreds of servers may come at once)
        lab.add_hosts(args)
        done = {s.key for s in todo}
    except net.LabError:  # one bad server (e.g. an address clash) must not block the others: one by one
        done = set()
        have = {h.key: h for h in lab.hosts(kind="nova")}
        for spec, kw in zip(todo, args):
            if spec.key in have and have[spec.key].same_shape(spec):
                done.add(spec.key)
                continue
            try:
                lab.add_host(**kw)
                done.add(spec.key)
            except net.LabError as e:
                res.skipped.append(f"{spec.meta.get('server_name')} ({spec.meta.get('server_id')}): {e}")
    for spec in todo:
        if spec.key in done:
            (res.replaced if spec in plan.replace else res.created).append(spec.key)
    return res


def wait_for_hosts(lab: Any, server_ids: Sequence[str], *, timeout: float = 120.0, clouds_yaml: Path | None = None) -> list[HostSpec]:
    """Reconcile until every server in ``server_ids`` is a running lab host (e.g. right after boot).

    Returns their host specs in the given order; raises LabError naming the missing ones on timeout.
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        reconcile(lab, clouds_yaml=clouds_yaml)
        by_id = {h.meta.get("server_id"): h for h in lab.hosts(kind="nova")}
        missing = [sid for sid in server_ids if sid not in by_id]
        if not missing:
            return [by_id[sid] for sid in server_ids]
        if time.monotonic() > deadline:
            raise net.LabError(f"servers not lab hosts after {timeout:.0f}s (not ACTIVE or no fixed IP?): {', '.join(missing)}")
        time.sleep(1.0)


# ------------------------------------------------------------------ the watcher

WATCH_NAME = "reconcile-watch"  # ProcessRegistry name (PID file in <lab>/run)


def watch_log(lab_dir: Path) -> Path:
    return lab_dir / "reconcile-watch.log"


def watch_singleton_path(lab_dir: Path) -> Path:
    """Held for a watcher's whole life: a second watcher (PID file lost) refuses to start."""
    return lab_dir / ".reconcile-watch.lock"


def has_work(plan: Plan) -> bool:
    return bool(plan.create or plan.replace or plan.remove)


@dataclass
class _Entry:
    sig: Signature
    info: ServerInfo
    server: Any  # the listed server (what resolve_server reads), to look it up again without listing it
    retry_at: float | None = None  # incomplete (no fixed IP yet, keypair unreadable): resolve again then
    attempts: int = 0


class _Stopped(BaseException):
    """Raised by the SIGTERM handler outside an apply: a poll blocked on a slow API ends at once."""


@dataclass
class StepOutcome:
    """One watcher step: ``state`` is applied | unchanged | busy | lab-down | cloud-unknown | failed."""

    state: str
    result: ReconcileResult | None = None
    errors: dict[str, str] = field(default_factory=dict)


class Watcher:
    """Poll both regions, keep the lab's nova hosts equal to their ACTIVE servers.

    Per interval: one server list per region (openstacksdk connections and tokens are kept); port,
    subnet and keypair look-ups only for servers that are new or changed; a reconcile only when the
    lab differs. A region that fails keeps its last list (its hosts are never removed because its
    API is down); a region never listed blocks applying at all.

    With devcloud's own cloud (``cloud``: its layout, by default when the lab's clouds.yaml is used)
    the watcher also knows *which* cloud it lists: every `devcloud up` builds a fresh one. When that
    cloud is gone (taken down, being rebuilt, or every process of it killed) so are its servers: their
    hosts are removed. A new cloud (another READY marker) is listed afresh in full: a changes-since
    list of a fresh cloud would never report the old cloud's servers as deleted.
    """

    def __init__(
        self,
        lab: Any,
        clouds_yaml: Path | None = None,
        *,
        interval: float = 1.0,
        max_backoff: float = 15.0,
        full_every: float = 300.0,
        clouds: Sequence[str] = CLOUDS,
        connect_fn: Callable[[str, Path], Any] | None = None,
        cloud: Any = None,
    ) -> None:
        self.lab = lab
        self.cloud = cloud if cloud is not None else _devcloud_of(lab, clouds_yaml)  # .generation(), or None
        self.cloud_gen: Any = _UNSEEN
        self.clouds_yaml = Path(clouds_yaml or lab.paths.clouds_yaml)
        self.interval, self.max_backoff = interval, max_backoff
        self.clouds = tuple(clouds)
        self.connect_fn = connect_fn or (lambda cloud, path: connect(cloud, path, timeout=30.0))
        self.full_every = full_every
        self.conns: dict[str, Any] = {}
        self.cache: dict[str, dict[str, _Entry]] = {}  # cloud -> server id -> entry (only clouds listed once)
        self.listed_at: dict[str, tuple[float, float]] = {}  # cloud -> (wall clock of the last list, of the last full one)
        self.subnets: dict[str, Any] = {}
        self.applying = False
        self.failures = 0
        self.quiet = QuietLog(log)
        self._skipped: set[str] = set()

    # -- polling (no lab needed)

    def poll(self) -> dict[str, str]:
        """List every region once; returns ``{cloud: error}`` for the regions that failed."""
        errors: dict[str, str] = {}
        for cloud in self.clouds:
            try:
                self._poll_cloud(cloud)
                self.quiet.ok(f"cloud {cloud}")
            except Exception as e:  # noqa: BLE001 - the cloud may be down: log, keep the last list, retry
                errors[cloud] = f"{type(e).__name__}: {e}"
                self.quiet.failed(f"cloud {cloud}", errors[cloud])
                conn = self.conns.pop(cloud, None)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
        return errors

    def current(self) -> tuple[list[ServerInfo] | None, dict[str, str]]:
        """The servers to mirror now and the regions' errors: ``[]`` when the devcloud is gone (its
        servers with it), None while some region was never listed (nothing may be judged then)."""
        if not self._cloud_present():
            return [], {}
        errors = self.poll()
        return self.servers(), errors

    def _cloud_present(self) -> bool:
        if self.cloud is None:
            return True
        gen = self.cloud.generation()
        if gen != self.cloud_gen:
            if self.cloud_gen is not _UNSEEN:
                log.info("the devcloud %s: every region is listed afresh",
                         "is gone (so are its servers)" if gen is None else "was rebuilt")
            for conn in self.conns.values():
                with contextlib.suppress(Exception):
                    conn.close()
            self.conns, self.cache, self.listed_at, self.subnets = {}, {}, {}, {}
            self.cloud_gen = gen
        return gen is not None

    def _poll_cloud(self, cloud: str) -> None:
        """One list call: everything every ``full_every`` seconds, else only what changed since the last
        list (Nova's ``changes-since``, which also returns deleted servers), with a few seconds' overlap."""
        if not self.clouds_yaml.exists():
            raise net.LabError(f"no clouds.yaml at {self.clouds_yaml} (is the devcloud up?)")
        conn = self.conns.get(cloud)
        if conn is None:
            conn = self.conns[cloud] = self.connect_fn(cloud, self.clouds_yaml)
        region = conn.config.region_name
        started = time.time()
        last, last_full = self.listed_at.get(cloud, (0.0, 0.0))
        full = cloud not in self.cache or started - last_full >= self.full_every
        query: dict[str, Any] = {"details": True, "all_projects": True}
        if not full:
            query["changes_since"] = changes_since(last)
        listed = list(conn.compute.servers(**query))
        old = self.cache.get(cloud, {})
        fresh: dict[str, _Entry] = {} if full else dict(old)
        now = time.monotonic()
        seen = set()
        for s in listed:
            seen.add(s.id)
            if s.status in GONE:
                fresh.pop(s.id, None)
                continue
            fresh[s.id] = self._entry(conn, region, s, old.get(s.id), now)
        for sid, e in list(fresh.items()):  # incomplete ones a changes-since list did not repeat
            if sid not in seen and e.retry_at is not None and now >= e.retry_at:
                fresh[sid] = self._entry(conn, region, e.server, e, now)
        self.cache[cloud] = fresh
        self.listed_at[cloud] = (started, started if full else last_full)

    def _entry(self, conn: Any, region: str, s: Any, e: _Entry | None, now: float) -> _Entry:
        sig = server_signature(s)
        if e is not None and e.sig == sig and (e.retry_at is None or now < e.retry_at):
            return e
        info, complete = resolve_server(conn, region, s, self.subnets)
        # ACTIVE before Neutron shows its port's fixed IP: the list signature may never change again
        complete = complete and (info.status != "ACTIVE" or info.ip is not None)
        attempts = e.attempts + 1 if e is not None and e.sig == sig and not complete else 0
        return _Entry(sig, info, snapshot(s), None if complete else now + retry_delay(attempts), attempts)

    def servers(self) -> list[ServerInfo] | None:
        """The last known servers of every region, or None while some region was never listed."""
        if any(c not in self.cache for c in self.clouds):
            return None
        return [e.info for c in self.clouds for e in self.cache[c].values()]

    # -- one step

    def step(self) -> StepOutcome:
        if not _lab_up(self.lab):
            return StepOutcome("lab-down")
        with reconcile_lock(Path(self.lab.files.root), blocking=False) as got:
            if not got:  # an explicit reconcile is running: it applies a fresher list than ours would
                return StepOutcome("busy")
            servers, errors = self.current()
            if servers is None:
                return StepOutcome("cloud-unknown", errors=errors)
            desired, skipped = desired_hosts(servers)
            self._note_skipped(skipped)
            if not has_work(diff(desired, self.lab.hosts())):
                return StepOutcome("unchanged", errors=errors)
            self.applying = True  # SIGTERM now waits for the end of the apply
            try:
                res = apply_servers(self.lab, servers)
            finally:
                self.applying = False
        for k in res.created:
            log.info("host %s created (%s)", k, self.lab.host(k).ip if _has_host(self.lab, k) else "?")
        for k in res.replaced:
            log.info("host %s replaced", k)
        for k in res.removed:
            log.info("host %s removed", k)
        return StepOutcome("applied", result=res, errors=errors)

    def _note_skipped(self, skipped: Sequence[str]) -> None:
        now = set(skipped)
        for s in sorted(now - self._skipped):
            log.info("not a host: %s", s)
        self._skipped = now

    # -- the loop

    def run(self, stop: threading.Event, *, lab_down_exit: float = 30.0) -> int:
        """Step until ``stop`` is set (or the lab has been down ``lab_down_exit`` seconds): exit code."""
        log.info("watching clouds %s every %.1fs (clouds.yaml %s)", ",".join(self.clouds), self.interval, self.clouds_yaml)
        try:
            return self._loop(stop, lab_down_exit)
        except _Stopped:
            log.info("stopped (a poll was interrupted)")
            return 0
        finally:
            for conn in self.conns.values():
                with contextlib.suppress(Exception):
                    conn.close()

    def _loop(self, stop: threading.Event, lab_down_exit: float) -> int:
        down_since: float | None = None
        while not stop.is_set():
            t0 = time.monotonic()
            _reap_children()
            try:
                out = self.step()
                failed = bool(out.errors) or out.state == "cloud-unknown"
                self.quiet.ok("apply")
            except Exception as e:  # noqa: BLE001 - never crash-loop: log, back off, retry
                out, failed = StepOutcome("failed"), True
                self.quiet.failed("apply", f"{type(e).__name__}: {e}")
            if out.state == "lab-down":
                down_since = down_since or t0
                if t0 - down_since >= lab_down_exit:
                    log.info("the lab has been down for %.0fs: watcher exits", t0 - down_since)
                    return 0
            else:
                down_since = None
            self.failures = self.failures + 1 if failed else 0
            delay = backoff_delay(self.interval, self.failures, self.max_backoff)
            stop.wait(max(0.0, delay - (time.monotonic() - t0)))
        log.info("stopped")
        return 0

    def on_signal(self, stop: threading.Event) -> None:
        """SIGTERM/SIGINT: stop after an apply in progress; anything else (a poll) ends at once."""
        stop.set()
        if not self.applying:
            raise _Stopped()


_UNSEEN = object()  # the watcher has not looked at the devcloud yet


def _devcloud_of(lab: Any, clouds_yaml: Path | None) -> Any:
    """devcloud's cloud layout when the watcher lists devcloud's own clouds.yaml (None otherwise)."""
    from devcloud.cloud.layout import CloudLayout
    from devcloud.paths import DevcloudPaths

    paths = getattr(lab, "paths", None)
    if isinstance(paths, DevcloudPaths) and (clouds_yaml is None or Path(clouds_yaml) == paths.clouds_yaml):
        return CloudLayout(paths)
    return None


def _lab_up(lab: Any) -> bool:
    """The lab's state says up and its core namespace exists (no subprocess: this runs every second)."""
    return bool(lab.state().up) and Path("/run/netns", net.CORE_NS).exists()


def _has_host(lab: Any, key: str) -> bool:
    try:
        lab.host(key)
        return True
    except net.LabError:
        return False


def _reap_children() -> None:
    """Collect exited children (sshds of removed hosts were started by this process)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def run_watch(lab: Any, *, clouds_yaml: Path | None = None, interval: float = 1.0) -> int:
    """``devcloud lab reconcile --watch``: a single watcher per lab until SIGTERM/SIGINT. Exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    logging.getLogger("openstack").setLevel(logging.ERROR)
    logging.getLogger("keystoneauth").setLevel(logging.ERROR)
    lab_dir = Path(lab.files.root)
    lab_dir.mkdir(parents=True, exist_ok=True)
    with open(watch_singleton_path(lab_dir), "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            log.error("another reconcile watcher holds %s (pid %s): not starting a second one",
                      watch_singleton_path(lab_dir), fh.read().strip() or "?")
            return 1
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        stop = threading.Event()
        w = Watcher(lab, clouds_yaml, interval=interval)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: w.on_signal(stop))
        return w.run(stop)
