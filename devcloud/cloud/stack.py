"""Orchestration of the whole cloud: up (fresh every time, or a no-op when READY), down, status."""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from devcloud import stale
from devcloud.cloud import install as installer
from devcloud.cloud import mariadb, rabbitmq, render, schema, services
from devcloud.cloud.layout import CloudLayout
from devcloud.cloud.topology import (EPMD_PORT, KEYSTONE_URL, MYSQL_PORT, RABBIT_DIST_PORT, RABBIT_PORT, REGIONS)
from devcloud.errors import DevcloudError
from devcloud.paths import DevcloudPaths
from devcloud.procs import kill_pids, wait_for

Say = Callable[[str], None]
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _pythonpath(lay: CloudLayout) -> str:
    """A directory holding only a ``devcloud`` symlink: the venv's python imports devcloud.cloud.* from it,
    and nothing else from wherever devcloud is installed (that could shadow the venv's own packages)."""
    d = lay.state / "pythonpath"
    d.mkdir(parents=True, exist_ok=True)
    link = d / "devcloud"
    if not link.is_symlink() or link.resolve() != PACKAGE_DIR:
        link.unlink(missing_ok=True)
        link.symlink_to(PACKAGE_DIR, target_is_directory=True)
    return str(d)
INFRA: tuple[tuple[str, int], ...] = (("epmd", EPMD_PORT), ("rabbitmq", RABBIT_PORT), ("mysqld", MYSQL_PORT))


# ---------------------------------------------------------------- health
def tcp_open(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def http_answers(port: int, timeout: float = 5.0) -> bool:
    """Any HTTP response (200, 300, 401 ...) means the API is serving."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def group_rss_mib() -> dict[int, float]:
    """RSS (MiB) summed per process group: each recorded process leads its own group (uwsgi workers, beam ...)."""
    out: dict[int, float] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            pgrp = int((d / "stat").read_text().rsplit(")", 1)[1].split()[2])
            rss = next(int(line.split()[1]) for line in (d / "status").read_text().splitlines() if line.startswith("VmRSS:"))
        except (OSError, ValueError, IndexError, StopIteration):
            continue  # gone, or a kernel thread (no VmRSS)
        out[pgrp] = out.get(pgrp, 0.0) + rss / 1024
    return out


@dataclass(frozen=True)
class Row:
    name: str
    pid: int | None
    port: int | None
    healthy: bool
    rss_mib: float = 0.0


@dataclass(frozen=True)
class StatusReport:
    rows: list[Row]
    ready: bool
    reason: str


def status(paths: DevcloudPaths) -> StatusReport:
    lay = CloudLayout(paths)
    reg = lay.registry()
    rows: list[Row] = []
    rss = group_rss_mib()
    for name, port in INFRA:
        pid = reg.pid(name) if reg.alive(name) else None
        rows.append(Row(name, pid, port, pid is not None and tcp_open(port), rss.get(pid or -1, 0.0)))
    for svc in services.all_services(lay):
        pid = reg.pid(svc.name) if reg.alive(svc.name) else None
        # a second try: one slow answer on a loaded 2-core box is not an outage
        healthy = pid is not None and (svc.port is None or http_answers(svc.port) or http_answers(svc.port))
        rows.append(Row(svc.name, pid, svc.port, healthy, rss.get(pid or -1, 0.0)))
    bad = [r.name for r in rows if not r.healthy]
    if len(bad) == len(rows):
        return StatusReport(rows, False, "the cloud is not running (devcloud up)")
    if bad:
        return StatusReport(rows, False, f"unhealthy: {', '.join(bad)} (logs in {lay.log})")
    if not lay.ready_marker.exists() or not paths.clouds_yaml.exists():
        return StatusReport(rows, False, "processes run but `up` did not finish (devcloud down && devcloud up)")
    return StatusReport(rows, True, "")


@contextlib.contextmanager
def _exclusive(lay: CloudLayout, say: Say) -> Iterator[None]:
    """One up/down at a time (e.g. two pytest sessions): the second waits, then finds the cloud READY."""
    lay.run.mkdir(parents=True, exist_ok=True)
    with open(lay.run / "lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("another devcloud up/down is running; waiting for it")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


# ---------------------------------------------------------------- up
class _Clock:
    def __init__(self, say: Say) -> None:
        self.t0, self.say = time.monotonic(), say

    def __call__(self, msg: str) -> None:
        self.say(f"[{time.monotonic() - self.t0:6.1f}s] {msg}")


def _ports() -> list[int]:
    ports = [p for _, p in INFRA] + [RABBIT_DIST_PORT]
    ports += [5000] + [r.port(b) for r in REGIONS for b in (8778, 9292, 9696, 8774)]
    return ports


def _check_ports_free() -> None:
    busy = [p for p in _ports() if tcp_open(p, timeout=0.3)]
    if busy:
        raise DevcloudError(f"127.0.0.1 port(s) {busy} already in use by processes devcloud did not start "
                            f"({_listeners(busy)}); stop them first (by PID)")


def _listeners(ports: list[int]) -> str:
    """``4369: epmd pid 123`` for each busy port, as ``ss`` names the listening process."""
    out = []
    for port in ports:
        r = subprocess.run(["ss", "-Htlnp", f"sport = :{port}"], capture_output=True, text=True, check=False)
        who = sorted(set(re.findall(r'\("([^"]+)",pid=(\d+)', r.stdout)))
        out.append(f"{port}: " + (", ".join(f"{name} pid {pid}" for name, pid in who) or "unknown"))
    return "; ".join(out)


def _wait_apis(lay: CloudLayout, svcs: list[services.Service], timeout: float) -> None:
    reg = lay.registry()
    pending = list(svcs)

    def ok() -> bool:
        for s in list(pending):
            if not reg.alive(s.name):
                raise DevcloudError(f"{s.name} exited during start", s.log)
            if s.port is None or http_answers(s.port, timeout=2):
                pending.remove(s)
        return not pending

    try:
        wait_for(ok, timeout=timeout, interval=0.3, what=", ".join(s.name for s in svcs))
    except TimeoutError:
        raise DevcloudError(f"{pending[0].name} did not answer within {timeout:.0f}s", pending[0].log) from None


def _venv_task(lay: CloudLayout, name: str, module: str, args: list[str], password: str) -> subprocess.Popen[bytes]:
    key, value = _marker(lay).split("=", 1)
    env = {**os.environ, "PYTHONPATH": _pythonpath(lay), "PYTHONWARNINGS": "ignore", "DEVCLOUD_PASSWORD": password,
           key: value}
    env.pop("OS_CLOUD", None)
    lay.registry().forget(name)
    return lay.registry().spawn(name, [lay.bin("python"), "-m", module, *args], log=lay.log / f"{name}.log", env=env)


def _await_tasks(lay: CloudLayout, procs: dict[str, subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for name, p in procs.items():
        try:
            rc = p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise DevcloudError(f"{name} took over {timeout:.0f}s", lay.log / f"{name}.log") from None
        lay.registry().forget(name)
        if rc != 0:
            raise DevcloudError(f"{name} failed (exit {rc})", lay.log / f"{name}.log")


def _marker(lay: CloudLayout) -> str:
    """The environment line every process this cloud starts carries: how a later ``up`` knows one
    that a kill left unrecorded (started, PID file not yet written) as this cloud's."""
    return f"DEVCLOUD_CLOUD_STATE={lay.state}"


def _start(lay: CloudLayout, svc: services.Service) -> None:
    key, value = _marker(lay).split("=", 1)
    lay.registry().start(svc.name, svc.argv, log=lay.log / f"{svc.name}.out", env={**svc.env, key: value})


def _leftovers(lay: CloudLayout) -> list[int]:
    """What a kill left of this cloud: children of dead recorded processes, and marked processes no
    PID file names."""
    reg = lay.registry()
    return sorted(set(reg.orphans(str(lay.paths.home), str(lay.state))) | set(reg.marked(_marker(lay))))


def up(paths: DevcloudPaths, say: Say, *, install: bool = True, use_cache: bool = True) -> bool:
    """Bring up a fresh cloud; False (and nothing done) if it is already READY."""
    lay = CloudLayout(paths)
    with _exclusive(lay, say):
        return _up_locked(lay, say, install, use_cache)


def survey(lay: CloudLayout, report: StatusReport) -> stale.CloudFacts:
    """What an earlier run left: recorded processes (alive = the very process, by start time), the
    READY marker, orphaned children of dead ones and unrecorded processes of this cloud."""
    reg = lay.registry()
    names = reg.names()
    return stale.CloudFacts(
        recorded=tuple(names), alive=tuple(n for n in names if reg.alive(n)), ready_marker=lay.ready_marker.exists(),
        ready=report.ready, orphans=len(_leftovers(lay)),
    )


def _up_locked(lay: CloudLayout, say: Say, install: bool, use_cache: bool) -> bool:
    paths = lay.paths
    report = status(paths)
    if report.ready:
        return False
    verdict = stale.judge_cloud(survey(lay, report))
    step = _Clock(say)
    if install:
        installer.install(paths, say)
    else:
        missing = installer.missing_apt_packages()
        if missing or not installer.venv_ready(lay.venv):
            raise DevcloudError(f"not installed (apt: {missing or 'ok'}, venv {lay.venv}): run `devcloud install`")
    if verdict.action == stale.CLEAN:  # the data (MariaDB, RabbitMQ, Glance, nova) goes with lay.reset() below
        _stop_all(lay, graceful=False)
        say(verdict.line)
    _check_ports_free()
    try:
        _bring_up(lay, step, use_cache)
    except BaseException:
        say(f"up failed: stopping what it started (logs stay in {lay.log})")
        _stop_all(lay, graceful=False)
        raise
    return True


def _bring_up(lay: CloudLayout, step: _Clock, use_cache: bool) -> None:
    paths = lay.paths
    lay.reset()
    pw = lay.password()
    mariadb.write_config(lay)
    rabbitmq.write_config(lay, pw)
    services.write_configs(lay, pw)
    key = schema.cache_key(lay, pw)
    hit = use_cache and schema.restore(lay, key)
    if hit:
        step(f"schema restored from cache {schema.snapshot_dir(lay, key).name}")
    else:
        mariadb.init_datadir(lay)
    mariadb.start(lay)
    reg = lay.registry()
    rabbitmq.start(lay)
    mariadb.wait_ready(lay)
    step("mariadb up")
    services.write_fernet_keys(lay)
    if not hit:
        step("running schema migrations (parallel; cached afterwards)")
        schema.migrate(lay, pw, step)
        step("schema migrations done")
        if use_cache:
            mariadb.stop(lay)
            snap = schema.save(lay, key)
            mariadb.start(lay)
            mariadb.wait_ready(lay)
            step(f"schema cached in {snap}")
    keystone = services.keystone(lay)
    _start(lay, keystone)
    _wait_apis(lay, [keystone], timeout=120)
    step("keystone up")
    _await_tasks(lay, {"register": _venv_task(lay, "register", "devcloud.cloud.register", [], pw)}, timeout=120)
    step("catalog registered (RegionGZ, RegionST)")
    try:
        wait_for(lambda: reg.alive("rabbitmq") and tcp_open(RABBIT_PORT), timeout=90, what="RabbitMQ")
    except TimeoutError:
        raise DevcloudError("RabbitMQ did not listen on 127.0.0.1:5672 in time", rabbitmq.log_file(lay)) from None
    apis = [svc for r in REGIONS for svc in services.regional_apis(lay, r)]
    for svc in apis:
        _start(lay, svc)
    # computes only after placement answers: their first resource-provider sync otherwise waits a period
    _wait_apis(lay, [s for s in apis if s.name.startswith("placement-")], timeout=180)
    computes = [svc for r in REGIONS for svc in services.computes(lay, r)]
    for svc in computes:
        _start(lay, svc)
    _wait_apis(lay, apis, timeout=180)
    step("all APIs answer")
    tasks = {f"day1-{r.short}": _venv_task(lay, f"day1-{r.short}", "devcloud.cloud.day1", [r.name], pw) for r in REGIONS}
    _await_tasks(lay, tasks, timeout=300)
    for name in tasks:
        step((lay.log / f"{name}.log").read_text().strip().splitlines()[-1])
    dead = [n for n in reg.names() if not reg.alive(n)]
    if dead:
        raise DevcloudError(f"processes died during start: {', '.join(dead)}", lay.log)
    render.write(paths.clouds_yaml, "clouds.yaml", keystone_url=KEYSTONE_URL, password=pw)
    lay.ready_marker.write_text(f"{time.time():.0f}\n")


# ---------------------------------------------------------------- down
def _stop_all(lay: CloudLayout, graceful: bool = True) -> list[str]:
    """OpenStack services (and any one-shot task) together, then RabbitMQ, MariaDB, epmd.

    ``graceful=False`` (a stale cloud whose state `up` wipes next): KILL after 3 s instead of waiting.
    """
    reg = lay.registry()
    names = reg.names()
    orphans = _leftovers(lay)  # what a SIGKILL left: uwsgi workers, epmd, a service started but not recorded ...
    lay.ready_marker.unlink(missing_ok=True)  # first: the lab's watcher then knows this cloud's servers are gone
    infra = [n for n, _ in INFRA]
    reg.stop_many([n for n in names if n not in infra], timeout=15 if graceful else 3)
    for n in ("rabbitmq", "mysqld", "epmd"):
        if n in names:
            reg.stop_many([n], timeout=45 if graceful else 3)
    kill_pids(orphans, timeout=5 if graceful else 2)
    return names


def down(paths: DevcloudPaths, say: Say) -> None:
    lay = CloudLayout(paths)
    t0 = time.monotonic()
    with _exclusive(lay, say):
        names = _stop_all(lay)
    left = lay.registry().names()
    if left:
        raise DevcloudError(f"still recorded after down: {', '.join(left)}", lay.run)
    say(f"stopped {len(names)} processes in {time.monotonic() - t0:.1f}s" if names else "nothing was running")
