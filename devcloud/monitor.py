"""A local monitoring stack for the demo: ``govcloud exporter`` and a Prometheus scraping it.

Both listen on 127.0.0.1 only and are started through the ProcessRegistry (stopped by PID, never by
name). Prometheus runs the shipped ``monitoring/prometheus.yml`` and alert rules, with the scrape
and evaluation interval shortened so a drill shows up within seconds; data lives under
``$DEVCLOUD_HOME/monitor``. Alertmanager is not started (the rules' state is visible in Prometheus).
"""

from __future__ import annotations

import json
import shutil
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devcloud.errors import DevcloudError
from devcloud.paths import DevcloudPaths
from devcloud.procs import ProcessRegistry, _is_zombie, process_starttime, wait_for

EXPORTER = "monitor-exporter"
PROMETHEUS = "monitor-prometheus"
EXPORTER_ADDR = "127.0.0.1:9477"
PROMETHEUS_ADDR = "127.0.0.1:9090"
SCRAPE_INTERVAL = "2s"


@dataclass(frozen=True)
class MonitorStatus:
    exporter_pid: int | None
    prometheus_pid: int | None

    @property
    def prometheus_url(self) -> str:
        return f"http://{PROMETHEUS_ADDR}"

    @property
    def exporter_url(self) -> str:
        return f"http://{EXPORTER_ADDR}/metrics"


def _home(paths: DevcloudPaths) -> Path:
    return paths.home / "monitor"


def _registry(paths: DevcloudPaths) -> ProcessRegistry:
    return ProcessRegistry(_home(paths) / "run")


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


def up(paths: DevcloudPaths, root: Path, repo: Path) -> MonitorStatus:
    """Start what is not running (idempotent); wait until both answer."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise DevcloudError("prometheus is not installed: run scripts/install-monitoring.sh")
    home, reg = _home(paths), _registry(paths)
    home.mkdir(parents=True, exist_ok=True)
    if not reg.alive(EXPORTER):
        reg.forget(EXPORTER)
        govcloud = Path(sys.executable).parent / "govcloud"
        reg.start(EXPORTER, [str(govcloud), "--root", str(root), "exporter", "--listen", EXPORTER_ADDR],
                  log=home / "exporter.log")
    if not reg.alive(PROMETHEUS):
        reg.forget(PROMETHEUS)
        cfg_file = home / "prometheus.yml"
        cfg_file.write_text(yaml.safe_dump(render_config(repo), sort_keys=False))
        reg.start(PROMETHEUS, [prometheus, f"--config.file={cfg_file}", f"--storage.tsdb.path={home / 'data'}",
                               f"--web.listen-address={PROMETHEUS_ADDR}"], log=home / "prometheus.log")
    st = status(paths)
    wait_for(lambda: _answers(st.exporter_url), timeout=30, what=f"the exporter at {st.exporter_url}")
    wait_for(lambda: _answers(f"{st.prometheus_url}/-/ready"), timeout=60, what=f"Prometheus at {st.prometheus_url}")
    return status(paths)


def status(paths: DevcloudPaths) -> MonitorStatus:
    reg = _registry(paths)
    return MonitorStatus(reg.pid(EXPORTER), reg.pid(PROMETHEUS))


def down(paths: DevcloudPaths) -> list[str]:
    reg = _registry(paths)
    pids = {n: reg.pid(n) for n in (PROMETHEUS, EXPORTER)}
    reg.stop_many(list(pids), timeout=20)  # TERM, then KILL after 20 s

    def gone() -> bool:  # a KILLed process lingers a moment; a zombie is gone for our purposes
        return all(p is None or process_starttime(p) is None or _is_zombie(p) for p in pids.values())

    wait_for(gone, timeout=10, what="the monitoring processes to exit")
    return [n for n, p in pids.items() if p is not None]


def query(expr: str) -> list[dict[str, Any]]:
    """An instant query against the local Prometheus (for the demo's summary)."""
    url = f"http://{PROMETHEUS_ADDR}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        return list(json.loads(r.read())["data"]["result"])

