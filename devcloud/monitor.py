"""A local monitoring stack for the demo: ``govcloud exporter`` and a Prometheus scraping it.

Both listen on 127.0.0.1 only and are started through the ProcessRegistry (stopped by PID, never by
name). Prometheus runs the shipped ``monitoring/prometheus.yml`` and alert rules, with the scrape
and evaluation interval shortened so a drill shows up within seconds; data lives under
``$DEVCLOUD_HOME/monitor``. Alertmanager is not started (the rules' state is visible in Prometheus).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devcloud import stale
from devcloud.errors import DevcloudError
from devcloud.lab.hosts import LabFiles
from devcloud.paths import DevcloudPaths
from devcloud.procs import (
    ProcessRegistry,
    _is_zombie,
    kill_pids,
    process_starttime,
    wait_for,
)

log = logging.getLogger(__name__)

EXPORTER = "monitor-exporter"
PROMETHEUS = "monitor-prometheus"
EXPORTER_ADDR = "127.0.0.1:9477"
PROMETHEUS_ADDR = "127.0.0.1:9090"
SCRAPE_INTERVAL = "2s"
DEFAULT = "default"
INSTANCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,40}")


@dataclass(frozen=True)
class MonitorStatus:
    exporter_pid: int | None
    prometheus_pid: int | None
    exporter_addr: str = EXPORTER_ADDR
    prometheus_addr: str = PROMETHEUS_ADDR

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.prometheus_addr}"

    @property
    def exporter_url(self) -> str:
        return f"http://{self.exporter_addr}/metrics"


def _home(paths: DevcloudPaths, instance: str = DEFAULT) -> Path:
    """One directory per stack: the demo's is ``monitor``; another instance (``--instance``, say a test's
    while a demo's runs) has its own PID files, data and listen addresses beside it."""
    if instance != DEFAULT and not INSTANCE_NAME.fullmatch(instance):
        raise DevcloudError(f"monitor instance {instance!r}: use letters, digits and '-' only")
    return paths.home / ("monitor" if instance == DEFAULT else f"monitor-{instance}")


def _addresses(paths: DevcloudPaths, instance: str) -> tuple[str, str]:
    """(exporter, prometheus) listen addresses this instance was started with (the defaults if none)."""
    try:
        doc = json.loads((_home(paths, instance) / "listen.json").read_text())
        return str(doc["exporter"]), str(doc["prometheus"])
    except (OSError, ValueError, KeyError):
        return EXPORTER_ADDR, PROMETHEUS_ADDR


def _registry(paths: DevcloudPaths, instance: str = DEFAULT) -> ProcessRegistry:
    return ProcessRegistry(_home(paths, instance) / "run")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def render_config(repo: Path, exporter: str = EXPORTER_ADDR, interval: str = SCRAPE_INTERVAL) -> dict[str, Any]:
    """The shipped prometheus.yml, pointed at this exporter, fast intervals, rules by absolute path."""
    cfg: dict[str, Any] = yaml.safe_load((repo / "monitoring" / "prometheus.yml").read_text())
    cfg["global"].update(scrape_interval=interval, evaluation_interval=interval)
    cfg["rule_files"] = [str(repo / "monitoring" / "rules" / "*.yml")]
    cfg.pop("alerting", None)
    cfg["scrape_configs"][0]["static_configs"][0]["targets"] = [exporter]
    return cfg


def survey(paths: DevcloudPaths, instance: str = DEFAULT) -> dict[str, str]:
    """Each process: ``alive`` (the very process recorded), ``dead`` (its PID file left: killed, or the
    PID recycled) or ``none`` (never started, or stopped by ``down``)."""
    reg = _registry(paths, instance)
    recorded = set(reg.names())
    return {n.removeprefix("monitor-"): stale.ALIVE if reg.alive(n) else stale.DEAD if n in recorded else stale.NONE
            for n in (EXPORTER, PROMETHEUS)}


def clean(paths: DevcloudPaths, instance: str = DEFAULT) -> None:
    """Take a stale stack down fully: what of it still lives (by PID), PID files, Prometheus's data
    (a killed TSDB may be mid-write; and a fresh stack must not show a killed run's series)."""
    reg = _registry(paths, instance)
    orphans = reg.orphans(str(paths.home))
    reg.stop_many([EXPORTER, PROMETHEUS], timeout=10)
    kill_pids(orphans)
    shutil.rmtree(_home(paths, instance) / "data", ignore_errors=True)


@dataclass(frozen=True)
class Listen:
    """Where an instance's two servers listen (loopback only)."""

    exporter: str = EXPORTER_ADDR
    prometheus: str = PROMETHEUS_ADDR

    def check(self) -> None:
        for addr in (self.exporter, self.prometheus):
            host, _, port = addr.rpartition(":")
            if host != "127.0.0.1" or not port.isdigit():
                raise DevcloudError(f"monitor listen address {addr!r}: use 127.0.0.1:PORT (loopback only)")


def up(paths: DevcloudPaths, root: Path, repo: Path, say: Callable[[str], None] | None = None, *,
       instance: str = DEFAULT, listen: Listen | None = None) -> MonitorStatus:
    """Start what is not running (idempotent); wait until both answer.

    A stack a killed run left (a PID file naming a dead or foreign process, or one of the two dead)
    is stale: said in one line (``say``, default: a warning in the log), cleaned, started afresh.
    ``listen`` is recorded for the instance's next ``status``; a running instance keeps its own.
    """
    want = listen or Listen()
    want.check()
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise DevcloudError("prometheus is not installed: run scripts/install-monitoring.sh")
    home, reg = _home(paths, instance), _registry(paths, instance)
    home.mkdir(parents=True, exist_ok=True)
    verdict = stale.judge_monitor(survey(paths, instance))
    if verdict.action == stale.CLEAN:
        clean(paths, instance)
        (say or log.warning)(verdict.line)
    if verdict.action != stale.ADOPT:
        (home / "listen.json").write_text(json.dumps({"exporter": want.exporter, "prometheus": want.prometheus}))
    exporter_addr, prometheus_addr = _addresses(paths, instance)
    if not reg.alive(EXPORTER):
        reg.forget(EXPORTER)
        govcloud = Path(sys.executable).parent / "govcloud"
        # the sites' probe hosts are the root's topology's; the lab's are reached with its controller key
        lab = LabFiles(paths.lab)
        ssh = (["--known-hosts", str(lab.known_hosts), "--ssh-key", str(lab.controller_key)]
               if lab.known_hosts.is_file() else ["--no-probes"])  # no lab: nothing to probe
        reg.start(EXPORTER, [str(govcloud), "--root", str(root), "exporter", "--listen", exporter_addr, *ssh],
                  log=home / "exporter.log")
    if not reg.alive(PROMETHEUS):
        reg.forget(PROMETHEUS)
        cfg_file = home / "prometheus.yml"
        cfg_file.write_text(yaml.safe_dump(render_config(repo, exporter_addr), sort_keys=False))
        reg.start(PROMETHEUS, [prometheus, f"--config.file={cfg_file}", f"--storage.tsdb.path={home / 'data'}",
                               f"--web.listen-address={prometheus_addr}"], log=home / "prometheus.log")
    st = status(paths, instance)
    wait_for(lambda: _answers(st.exporter_url), timeout=30, what=f"the exporter at {st.exporter_url}")
    wait_for(lambda: _answers(f"{st.prometheus_url}/-/ready"), timeout=60, what=f"Prometheus at {st.prometheus_url}")
    return status(paths, instance)


def status(paths: DevcloudPaths, instance: str = DEFAULT) -> MonitorStatus:
    reg = _registry(paths, instance)
    return MonitorStatus(reg.pid(EXPORTER), reg.pid(PROMETHEUS), *_addresses(paths, instance))


def down(paths: DevcloudPaths, instance: str = DEFAULT) -> list[str]:
    reg = _registry(paths, instance)
    pids = {n: reg.pid(n) for n in (PROMETHEUS, EXPORTER)}
    reg.stop_many(list(pids), timeout=20)  # TERM, then KILL after 20 s

    def gone() -> bool:  # a KILLed process lingers a moment; a zombie is gone for our purposes
        return all(p is None or process_starttime(p) is None or _is_zombie(p) for p in pids.values())

    wait_for(gone, timeout=10, what="the monitoring processes to exit")
    return [n for n, p in pids.items() if p is not None]


def query(expr: str, prometheus_url: str = f"http://{PROMETHEUS_ADDR}") -> list[dict[str, Any]]:
    """An instant query against the local Prometheus (for the demo's summary)."""
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        return list(json.loads(r.read())["data"]["result"])
