"""Real Prometheus scraping a real `govcloud exporter` while a real migration and a real failover drill run.

One project root, one exporter (``govcloud --root ROOT exporter``: the root's migration journal, the
root's ``failover.json``, and the lab's probes), one Prometheus from ``monitoring/prometheus.yml``
(scrape and evaluation made fast for a test), everything on loopback. Then, in order:

1. a real migration: ``govcloud migrate run`` (the engine, as a subprocess) moves one tiny system
   (``tmon-web``, derived from tests/data/mig) from a legacy lab host to a Nova server on the devcloud;
   Prometheus sees the run active, the system's state move to ``done`` and the bytes-synced counter grow;
2. a real failover drill: ``govcloud failover drill --scenario site-loss:gz-a`` on the lab's PostgreSQL
   (``devcloud lab pg up``); Prometheus sees the controller's failover decision, the failover counter
   go up, the last RTO/RPO and the new primary and epoch; then ``failback --switch-back`` takes the
   shared cluster home;
3. ``lab cut gz-a`` makes GovcloudSiteDown fire and ``restore`` clears it; both gz sites cut make
   GovcloudRegionDown fire;
4. every panel query of the Grafana dashboard returns data (from what 1-3 left behind).

Nothing is faked. The drill and the cuts break lab links: in dev run the module under the lab-cut lock,
``flock -x /var/tmp/govcloud-labcut.lock .venv/bin/pytest tests/integration/test_monitoring.py``.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcloud.lab.api import Lab
from devcloud.lab.testing import http_get, lab_session, require_watcher
from devcloud.procs import wait_for
from devcloud.testing import CloudSession, discard_zones, require

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MON = REPO / "monitoring"
MIG = REPO / "tests" / "data" / "mig"
BIN = Path(sys.executable).parent
GOVCLOUD = BIN / "govcloud"
PG_BIN = Path("/usr/lib/postgresql/15/bin")

# the migrated system: tests/data/mig's single-placement tmig-web, renamed so that it never meets
# test_migrate.py's systems (own department, legacy address, servers and landing zone prefix)
SOURCE_SYSTEM = "tmig-web"
PREFIX = "tmon"
DEPARTMENT = "tmon-dept"
SYSTEM = "tmon-web"
LEGACY_HOST, LEGACY_IP = "tmon-web-01", "10.240.30.10"
PLAN = "tmon"
FILES, SIZE = 6, 32 * 1024

#: which real sources ran in this module (the dashboard test needs all of them)
RAN: set[str] = set()


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


class Proc:
    """A process this test started; stopped by its PID only."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self.p = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
                                  env=env)

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

    def value(self, expr: str) -> float | None:
        """The single sample's value of ``expr`` now (None when it returns nothing)."""
        r = self.query(expr)
        assert len(r) <= 1, (expr, r)
        return float(r[0]["value"][1]) if r else None

    def firing(self, alertname: str, **labels: str) -> bool:
        return any(a["labels"].get("alertname") == alertname and a["state"] == "firing"
                   and all(a["labels"].get(k) == v for k, v in labels.items())
                   for a in self.get("/api/v1/alerts")["alerts"])


@dataclass
class Project:
    """The govcloud project every command of this module runs in (its journal is what the exporter reads)."""

    root: Path
    env: dict[str, str]

    def govcloud(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(GOVCLOUD), "--root", str(self.root), *args], env=self.env, cwd=self.root,
                              text=True, capture_output=True, timeout=timeout, check=False)


def write_project(root: Path) -> None:
    """govcloud.yaml, and the tiny inventory and plan of one system, derived from tests/data/mig's."""
    (root / "govcloud.yaml").write_text("version: 1\n")
    inv = root / "inventories"
    (inv / "departments").mkdir(parents=True)
    shutil.copy(MIG / "inventories" / "topology.yaml", inv / "topology.yaml")
    dept = yaml.safe_load((MIG / "inventories" / "departments" / "tmig.yaml").read_text())
    system = next(s for s in dept["systems"] if s["id"] == SOURCE_SYSTEM)
    system.pop("depends_on", None)
    system["id"] = SYSTEM
    system["hosts"] = [{**system["hosts"][0], "name": LEGACY_HOST, "address": LEGACY_IP,
                        "data": [f"/srv/{SYSTEM}", f"/srv/{SYSTEM}-static"]}]
    doc = {"version": 1, "department": {"id": DEPARTMENT, "name": "Monitoring test department"}, "systems": [system]}
    (inv / "departments" / f"{PREFIX}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    plan = yaml.safe_load((MIG / "plan.yaml").read_text())
    wave = next(w for w in plan["waves"] if w["number"] == 1)
    placement = next(s["placement"] for s in wave["systems"] if s["id"] == SOURCE_SYSTEM)
    from govcloud.inventory import load_inventory

    plan.update(name=PLAN, inventory_digest=load_inventory(root).digest,  # `migrate run` refuses a stale plan
                waves=[{**wave, "systems": [{"id": SYSTEM, "placement": placement}]}])
    (root / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    from devcloud.lab.dns import LabDns

    with lab_session(hosts_per_site=1) as lb:
        dns = LabDns(lb)
        dns.up()  # the migration switches the system's name, the drill pg's
        dns.forget([SYSTEM])  # a name an earlier run left pointing at its target
        yield lb


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("monitoring")
    write_project(root)
    from devcloud.lab.dns import default_key_path

    env = {k: v for k, v in os.environ.items() if k != "GOVCLOUD_JOURNAL"}
    # a state directory of its own, and the lab zone's key from the usual one
    env.update(GOVCLOUD_STATE_DIR=str(root / "state"), GOVCLOUD_DNS_KEY=str(default_key_path()), PYTHONPATH=str(REPO))
    return Project(root, env)


@pytest.fixture(scope="module")
def stack(lab: Lab, project: Project) -> Iterator[Prom]:
    prometheus = shutil.which("prometheus")
    require(prometheus is not None, "prometheus not installed (run scripts/install-monitoring.sh)")
    assert prometheus is not None
    work = project.root / "monitoring"
    work.mkdir()
    exp_port, prom_port = free_port(), free_port()
    # the exporter's defaults: <root>/.govcloud/journal.sqlite and <root>/.govcloud/failover.json
    # the sites' probe hosts are the topology's (tests/data/mig: the lab's first infra host of each site),
    # reached by SSH with the lab's controller key, strict host keys
    for site, address in (("gz-a", "10.240.1.11"), ("gz-b", "10.240.2.11"), ("st-a", "10.240.3.11")):
        assert lab.host(f"{site}-h1").ip == address, f"the lab's {site}-h1 is not at the topology's {address}"
    exporter = Proc([str(GOVCLOUD), "--root", str(project.root), "exporter", "--listen", f"127.0.0.1:{exp_port}",
                     "--probe-interval", "1", "--known-hosts", str(lab.known_hosts),
                     "--ssh-key", str(lab.files.controller_key)], work / "exporter.log", env=project.env)
    prom: Proc | None = None
    try:
        wait_for(answers(lambda: http_get(f"http://127.0.0.1:{exp_port}/metrics", timeout=2)[0] == 200), timeout=30,
                 what="the exporter's /metrics")
        # the shipped prometheus.yml, made fast for a test: scrape and evaluate every 0.5 s (the controller
        # holds a failover decision for a second or two), this exporter, no Alertmanager
        cfg = yaml.safe_load((MON / "prometheus.yml").read_text())
        cfg["global"].update(scrape_interval="500ms", evaluation_interval="500ms")
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


# ------------------------------------------------------------------ 1. a real migration


def _servers(session: CloudSession) -> list[tuple[str, Any]]:
    out = []
    for cloud in ("gz", "st"):
        c = session.connect(cloud)
        out += [(cloud, s) for s in c.compute.servers(all_projects=True, tags=f"govcloud:system={SYSTEM}")]
    return out


def _delete_servers(session: CloudSession) -> None:
    found = _servers(session)
    for cloud, s in found:
        session.connect(cloud).compute.delete_server(s, force=True)
    if found:
        wait_for(lambda: not _servers(session), timeout=120, interval=1, what=f"{SYSTEM}'s servers deleted")


@pytest.fixture(scope="module")
def migration(devcloud_cloud: CloudSession, lab: Lab, project: Project) -> Iterator[Project]:
    """The project's landing zone provisioned and its legacy host running; all of it removed afterwards."""
    from devcloud.lab.legacy import create_legacy
    from devcloud.lab.reconcile import reconcile

    project.env["OS_CLIENT_CONFIG_FILE"] = str(devcloud_cloud.clouds_yaml)
    require_watcher(lab)
    _delete_servers(devcloud_cloud)  # leftovers of an interrupted earlier run
    try:
        r = project.govcloud("provision", "apply", "--department", DEPARTMENT, "--yes")
        assert r.returncode == 0, r.stdout + r.stderr
        create_legacy(lab, project.root / "inventories", [SYSTEM], files=FILES, size=SIZE)
        yield project
    finally:
        _delete_servers(devcloud_cloud)
        lab.remove_host(LEGACY_HOST)
        reconcile(lab, clouds_yaml=devcloud_cloud.clouds_yaml)
        discard_zones(devcloud_cloud, PREFIX)
        from devcloud.lab.dns import LabDns

        LabDns(lab).forget([SYSTEM])  # no record left pointing at a deleted server


def test_prometheus_follows_a_real_migration(lab: Lab, stack: Prom, migration: Project) -> None:
    labels = f'plan="{PLAN}", wave="1"'
    started = time.monotonic()
    run = subprocess.Popen(
        [str(GOVCLOUD), "--root", str(migration.root), "migrate", "run", str(migration.root / "plan.yaml"),
         "--wave", "1", "--outside-window", "--known-hosts", str(lab.known_hosts), "--ssh-key",
         str(lab.controller_key), "--control-path-dir", str(lab.paths.lab / "cp")],
        env=migration.env, cwd=migration.root, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Prometheus sees the run while it runs (the exporter reads the journal the engine writes)
        wait_for(lambda: run.poll() is not None or bool(stack.query(f"govcloud_migration_runs_active{{{labels}}} == 1")),
                 timeout=120, what="the running migration in Prometheus")
        out, err = run.communicate(timeout=420)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(timeout=10)
    took = time.monotonic() - started
    assert run.returncode == 0, out + err
    state = f'govcloud_migration_systems{{{labels}, state="done"}}'
    wait_for(lambda: stack.value(state) == 1, timeout=30, what=f"{SYSTEM} done in Prometheus")
    window = f"[{int(took) + 60}s]"
    assert stack.value(f"max_over_time(govcloud_migration_runs_active{{{labels}}}{window})") == 1
    assert stack.value(f"min_over_time({state}{window})") == 0, "the done series moved from 0 to 1"
    seen = {r["metric"]["state"] for r in stack.query(
        f"max_over_time(govcloud_migration_systems{{{labels}}}{window}) > 0")}
    assert "done" in seen and len(seen - {"done"}) >= 2, f"states Prometheus saw {SYSTEM} in: {seen}"
    # the counter Prometheus holds is the sum of the journal's bytes_sent facts, and it grew during the run
    from govcloud.adapters.journal import Journal

    with Journal(migration.root / ".govcloud" / "journal.sqlite", create=False) as j:
        sent = sum(float(f["value"]) for f in j.facts(PLAN, SYSTEM, "bytes_sent"))
        downtime = [float(f["value"]) for f in j.facts(PLAN, SYSTEM, "downtime_seconds")]
    synced = f"govcloud_migration_synced_bytes_total{{{labels}}}"
    assert sent > FILES * SIZE
    wait_for(lambda: stack.value(synced) == sent, timeout=10, what="bytes synced in Prometheus")
    assert stack.value(f"min_over_time({synced}{window})") == 0
    assert (stack.value(f"increase({synced}{window})") or 0.0) > 0
    steps = {r["metric"]["step"]: float(r["value"][1])
             for r in stack.query('sum by (step) (govcloud_migration_step_duration_seconds_count{result="ok"})')}
    assert {"preflight", "provision", "cutover"} <= set(steps), steps
    assert downtime and stack.value("govcloud_migration_cutover_downtime_seconds_count") == len(downtime)
    assert stack.value("govcloud_migration_cutover_downtime_seconds_sum") == pytest.approx(sum(downtime))
    RAN.add("migration")
    print(f"\nmigration of {SYSTEM}: {took:.1f} s, {sent:.0f} B synced, downtime {downtime[-1]:.2f} s, steps {steps}")


# ------------------------------------------------------------------ 2. a real failover drill


@pytest.fixture(scope="module")
def pg_lab(lab: Lab, project: Project) -> Project:
    """The lab's PostgreSQL cluster up (`devcloud lab pg up`, idempotent; shared, so it is left running)."""
    require((PG_BIN / "postgres").exists(), "postgresql-15 is not installed (apt-get install postgresql-15)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        require(False, "psycopg is not installed (pip install 'psycopg[binary]')")
    r = subprocess.run([str(BIN / "devcloud"), "lab", "pg", "up"], text=True, capture_output=True, timeout=600,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return project


def test_prometheus_sees_a_real_failover_drill(stack: Prom, pg_lab: Project) -> None:
    p = pg_lab
    r = p.govcloud("failover", "status")  # publishes the controller's view: Prometheus sees "no failover yet"
    assert r.returncode == 0, r.stdout + r.stderr
    ok = 'govcloud_failovers_total{service="pg", result="ok"}'
    wait_for(lambda: stack.value(ok) is not None, timeout=20, what="the failover view in Prometheus")
    before = stack.value(ok)
    epoch_before = stack.value('govcloud_failover_epoch{service="pg"}')
    started = time.monotonic()
    drill = p.govcloud("--output", "json", "failover", "drill", "--scenario", "site-loss:gz-a", timeout=240)
    if drill.returncode == 4:  # another user left the shared cluster away from home: take it home, then drill
        back = p.govcloud("failover", "failback", "--switch-back", timeout=240)
        assert back.returncode == 0, back.stdout + back.stderr
        epoch_before = stack.value('govcloud_failover_epoch{service="pg"}')
        drill = p.govcloud("--output", "json", "failover", "drill", "--scenario", "site-loss:gz-a", timeout=240)
    try:
        assert drill.returncode == 0, drill.stdout + drill.stderr
        report = json.loads(drill.stdout)
        assert report["failover"] and report["exactly_one_primary"] and report["primary_after"] == "gz-b", report
        window = f"[{int(time.monotonic() - started) + 30}s]"
        # the counter went up by one, and Prometheus saw it before and after
        wait_for(lambda: stack.value(ok) == (before or 0) + 1, timeout=20, what="govcloud_failovers_total +1")
        assert stack.value(f"min_over_time({ok}{window})") == before
        # the controller's state while it failed over: its failover decision (or the runbook in progress)
        seen = stack.query(f'max_over_time(govcloud_failover_decision{{govcloud_failover_decision="failover"}}{window})'
                           f' == 1 or max_over_time(govcloud_failover_in_progress{window}) == 1')
        assert seen, "Prometheus never saw the controller fail over (decision or in progress)"
        alert = stack.query(f'max_over_time(ALERTS{{alertname="GovcloudFailoverInProgress"}}{window})')
        reasons = {r["metric"]["reason"] for r in stack.query(
            f'max_over_time(govcloud_failover_decision_info{{decision="failover"}}{window})')}
        assert any("gz-a" in why for why in reasons), reasons
        # the last failover's RTO / RPO as the drill measured them, the new primary at the next epoch
        rto = stack.value('govcloud_failover_last_rto_seconds{service="pg"}')
        assert rto is not None and rto == pytest.approx(report["rto_s"]) and rto <= 15.0
        assert stack.value('govcloud_failover_last_lost_commits{service="pg"}') == 0
        assert stack.value('govcloud_failover_last_rpo_seconds{service="pg"}') is not None
        assert stack.value('govcloud_replication_primary{service="pg", site="gz-b"}') == 1
        assert stack.value('govcloud_failover_epoch{service="pg"}') == (epoch_before or 0) + 1
        assert stack.query(f'max_over_time(govcloud_replication_lag_bytes{{service="pg"}}{window})')
        RAN.add("failover")
        print(f"\ndrill site-loss:gz-a: RTO {rto:.2f} s, detection {report['detection_s']:.2f} s, lost "
              f"{report['lost_commits']}; GovcloudFailoverInProgress seen by Prometheus: {bool(alert)}")
    finally:
        back = p.govcloud("failover", "failback", "--switch-back", timeout=240)  # the shared cluster goes home
    assert back.returncode == 0, back.stdout + back.stderr
    wait_for(lambda: stack.value('govcloud_replication_primary{service="pg", site="gz-a"}') == 1, timeout=20,
             what="the primary back in gz-a in Prometheus")


# ------------------------------------------------------------------ 3. site and region down


def test_site_down_fires_after_cut_and_clears_after_restore(lab: Lab, stack: Prom) -> None:
    assert stack.query('up{job="govcloud", datacentre="gz-a"} == 1'), "the target labels name the datacentre"
    wait_for(lambda: not stack.firing("GovcloudSiteDown"), timeout=30, what="no site down before the cut")
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
    print(f"\nsite-down alert firing {fired_after:.1f} s after the cut (for: 10s, scrape/eval 0.5 s)")
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


# ------------------------------------------------------------------ 4. the dashboard


def test_every_dashboard_panel_query_returns_data(stack: Prom) -> None:
    """From the real migration and drill above (no stand-in data): run the module as a whole."""
    require(RAN == {"migration", "failover"},
            f"the dashboard needs the migration and the drill of this module to have run (ran: {sorted(RAN) or 'none'})")
    dash = json.loads((MON / "grafana" / "govcloud.json").read_text())
    empty = []
    checked = 0
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            checked += 1
            if not stack.query(target["expr"]):  # Prometheus errors fail inside query()
                empty.append(f"{panel['title']}: {target['expr']}")
    assert checked >= 20
    assert empty == [], f"panel queries without data: {empty}"
