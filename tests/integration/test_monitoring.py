"""Real Prometheus scraping a real `govcloud exporter` probing the real site lab.

The site-down alert fires in Prometheus after `lab cut gz-a` and clears after `restore`; every panel
query of the Grafana dashboard returns data without error. The journal is written through the
Journal API exactly as a migration writes it. The failover state file stands in for the failover
controller, which has not landed yet (replace it with a drill once `govcloud failover` exists).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcloud.lab.api import Lab
from devcloud.lab.testing import http_get, lab_session, require
from devcloud.procs import wait_for
from govcloud.adapters.journal import Journal
from govcloud.migrate.state import Action, Event

REPO = Path(__file__).resolve().parents[2]
MON = REPO / "monitoring"
GOVCLOUD = Path(sys.executable).parent / "govcloud"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(check: Any) -> Any:
    """A poll predicate that treats "not listening yet" as not yet."""

    def predicate() -> bool:
        try:
            return bool(check())
        except OSError:  # urllib's URLError is an OSError
            return False

    return predicate


def fill_journal(path: Path) -> None:
    """A wave mid-migration: one system cut over (bytes, downtime, window recorded), one failed."""
    with Journal(path, actor="test@host") as j:
        run = j.start_run("p1", 1)
        for system in ("hrss-web", "hrss-db"):
            j.ensure_system("p1", system, 1)
        for action, event in ((Action.PREFLIGHT, Event.PREFLIGHT_PASSED), (Action.PROVISION, Event.PROVISIONED),
                              (Action.WARM_SYNC, Event.SYNCED), (Action.CUTOVER, Event.CUT_OVER)):
            j.outcome(j.intent(run, "p1", "hrss-web", action), event)
        j.record_fact(run, "p1", "hrss-web", "warm_sync", "bytes_sent", 1 << 20)
        j.record_fact(run, "p1", "hrss-web", "cutover", "downtime_seconds", 4.2)
        j.record_fact(run, "p1", "hrss-web", "cutover", "window_end", time.time() + 3600)
        j.outcome(j.intent(run, "p1", "hrss-db", Action.PREFLIGHT), Event.FAILED, {"error": "disk"})


FAILOVER_STATE = {  # what the failover controller will publish (see module docstring)
    "replicas": [{"service": "pg-shared", "standby_site": "gz-b", "lag_seconds": 0, "lag_bytes": 0},
                 {"service": "pg-shared", "standby_site": "st-a", "lag_seconds": 1.5, "lag_bytes": 8192}],
    "rpo_seconds": {"pg-shared": 30},
    "failovers": [{"service": "pg-shared", "ok": 1, "failed": 0, "in_progress": False, "last_rto_seconds": 8.0,
                   "last_rpo_seconds": 0.0, "last_lost_commits": 0}],
    "decision": "hold", "reason": "every site is up by quorum",
}


class Proc:
    """A process this test started; stopped by its PID only."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        self.p = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=10)


class Prom:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        status, body = http_get(f"{self.url}{path}?{urllib.parse.urlencode(params)}", timeout=10)
        data = json.loads(body)
        assert status == 200 and data["status"] == "success", (path, params, status, body[:500])
        return data["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/query", query=expr)["result"])

    def firing(self, alertname: str, **labels: str) -> bool:
        return any(a["labels"].get("alertname") == alertname and a["state"] == "firing"
                   and all(a["labels"].get(k) == v for k, v in labels.items())
                   for a in self.get("/api/v1/alerts")["alerts"])


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with lab_session(hosts_per_site=1) as lb:
        yield lb


@pytest.fixture(scope="module")
def stack(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prom]:
    prometheus = shutil.which("prometheus")
    require(prometheus is not None, "prometheus not installed (run scripts/install-monitoring.sh)")
    assert prometheus is not None
    work = tmp_path_factory.mktemp("monitoring")
    journal, state = work / "journal.sqlite", work / "failover.json"
    fill_journal(journal)
    state.write_text(json.dumps(FAILOVER_STATE))
    exp_port, prom_port = free_port(), free_port()
    exporter = Proc([str(GOVCLOUD), "exporter", "--listen", f"127.0.0.1:{exp_port}", "--journal", str(journal),
                     "--failover-state", str(state), "--probe-interval", "1"], work / "exporter.log")
    prom: Proc | None = None
    try:
        wait_for(answers(lambda: http_get(f"http://127.0.0.1:{exp_port}/metrics", timeout=2)[0] == 200), timeout=30,
                 what="the exporter's /metrics")
        # the shipped prometheus.yml, made fast for a test: 1 s scrape/evaluation, this exporter, no Alertmanager
        cfg = yaml.safe_load((MON / "prometheus.yml").read_text())
        cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
        cfg["rule_files"] = [str(MON / "rules" / "*.yml")]
        cfg.pop("alerting", None)
        cfg["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{exp_port}"]
        (work / "prometheus.yml").write_text(yaml.safe_dump(cfg))
        prom = Proc([prometheus, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
                     f"--web.listen-address=127.0.0.1:{prom_port}"], work / "prometheus.log")
        api = Prom(f"http://127.0.0.1:{prom_port}")
        # first samples arrive about 5 s after start (target discovery is throttled)
        wait_for(answers(lambda: len(api.query("govcloud_site_up == 1")) == 3), timeout=60,
                 what="three datacentres up in Prometheus")
        yield api
    finally:
        if prom is not None:
            prom.stop()
        exporter.stop()
        for name in ("exporter.log", "prometheus.log"):
            if (work / name).exists() and os.environ.get("GOVCLOUD_TEST_LOGS"):
                print((work / name).read_text()[-3000:])


def test_site_down_fires_after_cut_and_clears_after_restore(lab: Lab, stack: Prom) -> None:
    assert stack.query('up{job="govcloud", datacentre="gz-a"} == 1'), "the target labels name the datacentre"
    assert not stack.firing("GovcloudSiteDown")
    clashes = {k for r in stack.query('{__name__=~"govcloud_.+"}') for k in r["metric"] if k.startswith("exported_")}
    assert clashes == set(), "a target label in prometheus.yml collides with a metric label"
    cut_at = time.monotonic()
    lab.cut("gz-a")
    try:
        wait_for(lambda: stack.firing("GovcloudSiteDown", site="gz-a", region="gz"), timeout=90,
                 what="GovcloudSiteDown{site=gz-a} firing")
        fired_after = time.monotonic() - cut_at
        assert not stack.firing("GovcloudSiteDown", site="gz-b")
        assert not stack.firing("GovcloudSiteDown", site="st-a")
        assert not stack.firing("GovcloudRegionDown")
        reach = {(r["metric"]["source_site"], r["metric"]["target_site"]): r["value"][1]
                 for r in stack.query("govcloud_site_reachable")}
        assert reach[("st-a", "gz-a")] == "0" and reach[("st-a", "gz-b")] == "1"
    finally:
        lab.restore("gz-a")
    wait_for(lambda: not stack.firing("GovcloudSiteDown"), timeout=60, what="GovcloudSiteDown cleared")
    print(f"site-down alert firing {fired_after:.1f} s after the cut (for: 10s, scrape/eval 1 s)")
    assert stack.firing("Watchdog")


def test_region_down_fires_when_both_gz_sites_are_cut(lab: Lab, stack: Prom) -> None:
    """Two of three datacentres lost: the controller's witness probes keep st-a's verdict "up"."""
    lab.cut("gz-a")
    try:
        lab.cut("gz-b")
        try:
            wait_for(lambda: stack.firing("GovcloudRegionDown", region="gz"), timeout=90,
                     what="GovcloudRegionDown{region=gz} firing")
            assert not stack.firing("GovcloudSiteDown", site="st-a")
            assert stack.query('govcloud_site_up{site="st-a"} == 1') and stack.query('govcloud_region_up{region="st"} == 1')
        finally:
            lab.restore("gz-b")
    finally:
        lab.restore("gz-a")
    wait_for(lambda: not stack.firing("GovcloudRegionDown") and not stack.firing("GovcloudSiteDown"), timeout=60,
             what="region and site alerts cleared")


def test_every_dashboard_panel_query_returns_data(stack: Prom) -> None:
    dash = json.loads((MON / "grafana" / "govcloud.json").read_text())
    # rate() over the sync counter needs two samples in its range: wait for a few scrapes
    wait_for(lambda: bool(stack.query("rate(govcloud_migration_synced_bytes_total[5m])")), timeout=30,
             what="two samples of the sync counter")
    empty = []
    checked = 0
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            checked += 1
            if not stack.query(target["expr"]):  # Prometheus errors fail inside query()
                empty.append(f"{panel['title']}: {target['expr']}")
    assert checked >= 20
    assert empty == [], f"panel queries without data: {empty}"
