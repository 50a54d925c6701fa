"""The metrics collectors on a real journal (SQLite file) and the exposition a scrape returns."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from govcloud.adapters.journal import Journal
from govcloud.adapters.metrics import (
    METRICS,
    FailoverView,
    PathSample,
    ProbeView,
    build_registry,
    migration_families,
    read_migration,
)
from govcloud.migrate.state import Action, Event, State


def fill_journal(path: Path) -> None:
    """Two systems of wave 1 through a migration as the executor records it (one cut over, one syncing)."""
    with Journal(path, actor="test@host") as j:
        run = j.start_run("p1", 1)
        for system in ("hrss-web", "hrss-db"):
            j.ensure_system("p1", system, 1)
        for action, event in ((Action.PREFLIGHT, Event.PREFLIGHT_PASSED), (Action.PROVISION, Event.PROVISIONED),
                              (Action.WARM_SYNC, Event.SYNCED), (Action.CUTOVER, Event.CUT_OVER)):
            j.outcome(j.intent(run, "p1", "hrss-web", action), event)
        j.record_fact(run, "p1", "hrss-web", "warm_sync", "bytes_sent", 1000)
        j.record_fact(run, "p1", "hrss-web", "cutover", "bytes_sent", 24)
        j.record_fact(run, "p1", "hrss-web", "cutover", "downtime_seconds", 7.5)
        j.record_fact(run, "p1", "hrss-web", "cutover", "window_end", 1_900_000_000)
        j.outcome(j.intent(run, "p1", "hrss-db", Action.PREFLIGHT), Event.FAILED, {"error": "disk"})
        j.ensure_system("p1", "later", 2)


def scrape(registry: CollectorRegistry) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The exposition as {sample name: {sorted labels: value}} (through prometheus_client's own parser)."""
    from prometheus_client import generate_latest

    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_migration_metrics_from_a_real_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    fill_journal(path)
    got = scrape(build_registry(path, lambda: None, lambda: None))
    assert got["govcloud_journal_up"] == {(): 1.0}
    systems = got["govcloud_migration_systems"]
    assert systems[(("plan", "p1"), ("state", "cutover"), ("wave", "1"))] == 1
    assert systems[(("plan", "p1"), ("state", "failed"), ("wave", "1"))] == 1
    assert systems[(("plan", "p1"), ("state", "pending"), ("wave", "2"))] == 1
    assert systems[(("plan", "p1"), ("state", "done"), ("wave", "1"))] == 0  # every state present
    assert len(systems) == 2 * len(State)
    assert got["govcloud_migration_synced_bytes_total"][(("plan", "p1"), ("wave", "1"))] == 1024
    assert got["govcloud_migration_runs_active"][(("plan", "p1"), ("wave", "1"))] == 1
    assert got["govcloud_migration_cutovers_active"][(("plan", "p1"), ("wave", "1"))] == 1
    assert got["govcloud_migration_window_end_timestamp_seconds"][(("plan", "p1"), ("wave", "1"))] == 1.9e9
    assert got["govcloud_migration_cutover_downtime_seconds_count"] == {(): 1}
    assert got["govcloud_migration_cutover_downtime_seconds_sum"] == {(): 7.5}
    assert got["govcloud_migration_cutover_downtime_seconds_bucket"][(("le", "5.0"),)] == 0
    assert got["govcloud_migration_cutover_downtime_seconds_bucket"][(("le", "10.0"),)] == 1
    counts = got["govcloud_migration_step_duration_seconds_count"]
    assert counts[(("result", "ok"), ("step", "warm_sync"))] == 1
    assert counts[(("result", "failed"), ("step", "preflight"))] == 1
    assert counts[(("result", "ok"), ("step", "preflight"))] == 1
    assert "govcloud_site_up" not in got and "govcloud_failovers_total" not in got  # nothing to say yet


def test_scrape_reads_the_journal_at_scrape_time(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    reg = build_registry(path, lambda: None, lambda: None)
    assert scrape(reg)["govcloud_journal_up"] == {(): 0.0}  # no journal yet: said, not raised
    fill_journal(path)
    assert scrape(reg)["govcloud_journal_up"] == {(): 1.0}
    with Journal(path) as j:
        run = j.start_run("p1", 1)
        j.outcome(j.intent(run, "p1", "hrss-web", Action.VERIFY), Event.VERIFIED)
    systems = scrape(reg)["govcloud_migration_systems"]
    assert systems[(("plan", "p1"), ("state", "verified"), ("wave", "1"))] == 1
    assert scrape(reg)["govcloud_migration_runs_active"][(("plan", "p1"), ("wave", "1"))] == 2


def test_garbage_journal_is_journal_up_0(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    path.write_bytes(b"not sqlite at all" * 100)
    assert scrape(build_registry(path, lambda: None, lambda: None))["govcloud_journal_up"] == {(): 0.0}


def test_empty_journal_still_exports_histograms(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    Journal(path).close()
    with Journal(path) as j:
        fams = {f.name: f for f in migration_families(read_migration(j))}
    assert [s.value for s in fams["govcloud_migration_cutover_downtime_seconds"].samples
            if s.name.endswith("_count")] == [0.0]


def test_probe_and_failover_views_are_exported() -> None:
    probes = ProbeView(
        taken_at=1_800_000_000.0,
        paths=(PathSample("gz-b", "gz-a", "gz", False, None), PathSample("st-a", "gz-a", "gz", False, None),
               PathSample("gz-a", "st-a", "st", True, 0.0012)),
        sites=(("gz-a", "gz", False), ("st-a", "st", True), ("gz-b", "gz", None)),
        regions=(("gz", True), ("st", True)),
    )
    failover = FailoverView.from_dict({
        "replicas": [{"service": "pg-shared", "standby_site": "st-a", "lag_seconds": 2.5, "lag_bytes": 4096}],
        "rpo_seconds": {"pg-shared": 30},
        "failovers": [{"service": "pg-shared", "ok": 2, "failed": 1, "in_progress": True, "last_rto_seconds": 9.1,
                       "last_rpo_seconds": 0.0, "last_lost_commits": 0}],
        "decision": "hold", "reason": "gz-a is up: reachable from all 2 other sites",
    })
    got = scrape(build_registry(Path("/nonexistent/j.sqlite"), lambda: probes, lambda: failover))
    assert got["govcloud_site_reachable"][(("source_site", "gz-b"), ("target_region", "gz"), ("target_site", "gz-a"))] == 0
    assert got["govcloud_probe_latency_seconds"] == {(("source_site", "gz-a"), ("target_site", "st-a")): 0.0012}
    assert got["govcloud_site_up"] == {(("region", "gz"), ("site", "gz-a")): 0, (("region", "st"), ("site", "st-a")): 1}
    assert got["govcloud_region_up"][(("region", "gz"),)] == 1
    assert got["govcloud_probe_snapshot_timestamp_seconds"] == {(): 1.8e9}
    assert got["govcloud_replication_lag_bytes"] == {(("service", "pg-shared"), ("standby_site", "st-a")): 4096}
    assert got["govcloud_replication_rpo_seconds"] == {(("service", "pg-shared"),): 30}
    assert got["govcloud_failovers_total"][(("result", "failed"), ("service", "pg-shared"))] == 1
    assert got["govcloud_failover_in_progress"] == {(("service", "pg-shared"),): 1}
    assert got["govcloud_failover_last_lost_commits"] == {(("service", "pg-shared"),): 0}
    assert got["govcloud_failover_decision"][(("govcloud_failover_decision", "hold"),)] == 1
    assert got["govcloud_failover_decision"][(("govcloud_failover_decision", "failover"),)] == 0
    info = got["govcloud_failover_decision_info"]
    assert list(info) == [(("decision", "hold"), ("reason", "gz-a is up: reachable from all 2 other sites"))]


def test_the_failover_controllers_published_view_is_exported() -> None:
    """The shape `Controller.payload` publishes to failover.json (after a failover: gz-a fenced, not streaming)."""
    view = FailoverView.from_dict({
        "replicas": [{"service": "pg", "standby_site": "st-a", "lag_seconds": 0.0, "lag_bytes": 0}],
        "rpo_seconds": {"pg": 30.0},
        "failovers": [{"service": "pg", "ok": 1, "failed": 0, "in_progress": False, "last_rto_seconds": 6.2,
                       "last_rpo_seconds": 0.0, "last_lost_commits": 0}],
        "decision": "failover", "reason": "gz-a unreachable from gz-b and st-a for 4 s: quorum 2/2; promote gz-b",
        "service": "pg", "primary": "gz-b", "epoch": 8, "fenced": ["gz-a"], "published_at": 1_800_000_000.5,
        "standbys": [{"site": "gz-a", "mode": "sync", "streaming": False, "lag_bytes": None, "lag_seconds": None},
                     {"site": "st-a", "mode": "async", "streaming": True, "lag_bytes": 0, "lag_seconds": 0.0}],
        "evidence": ["gz-b -> gz-a: down for 4 s"], "decision_log": [],
    })
    got = scrape(build_registry(Path("/nonexistent/j.sqlite"), lambda: None, lambda: view))
    assert got["govcloud_replication_primary"] == {(("service", "pg"), ("site", "gz-b")): 1,
                                                   (("service", "pg"), ("site", "gz-a")): 0,
                                                   (("service", "pg"), ("site", "st-a")): 0}
    assert got["govcloud_replication_streaming"] == {(("service", "pg"), ("standby_site", "gz-a")): 0,
                                                     (("service", "pg"), ("standby_site", "st-a")): 1}
    assert got["govcloud_failover_epoch"] == {(("service", "pg"),): 8}
    assert got["govcloud_failover_view_timestamp_seconds"] == {(): 1_800_000_000.5}
    assert got["govcloud_failovers_total"][(("result", "ok"), ("service", "pg"))] == 1
    assert got["govcloud_failover_last_rto_seconds"] == {(("service", "pg"),): 6.2}
    assert got["govcloud_failover_decision"][(("govcloud_failover_decision", "failover"),)] == 1


def test_every_exposed_metric_is_declared_and_follows_the_conventions(tmp_path: Path) -> None:
    """Every family a scrape returns is in METRICS with its labels, and every name follows the conventions."""
    path = tmp_path / "journal.sqlite"
    fill_journal(path)
    view = ProbeView(1.0, (PathSample("gz-a", "st-a", "st", True, 0.001),), (("st-a", "st", True),), (("st", True),))
    fo = FailoverView.from_dict({"replicas": [{"service": "s", "standby_site": "st-a"}], "rpo_seconds": {"s": 1},
                                 "failovers": [{"service": "s", "last_rto_seconds": 1, "last_rpo_seconds": 0,
                                                "last_lost_commits": 0}],
                                 "service": "s", "primary": "gz-a", "epoch": 1, "published_at": 2.0,
                                 "standbys": [{"site": "st-a", "mode": "async", "streaming": True}]})
    from prometheus_client import generate_latest

    text = generate_latest(build_registry(path, lambda: view, lambda: fo)).decode()
    specs = {m.name: m for m in METRICS}
    seen = set()
    for fam in text_string_to_metric_families(text):
        exposed = fam.name + ("_total" if fam.type == "counter" else "_info" if fam.type == "info" else "")
        assert exposed in specs, f"{exposed} is exported but not declared in METRICS"
        spec = specs[exposed]
        seen.add(exposed)
        # the text format has no info/stateset: they travel as gauges
        assert fam.type == {"info": "gauge", "stateset": "gauge"}.get(spec.type, spec.type)
        for s in fam.samples:
            assert set(s.labels) - {"le"} == set(spec.labels), (s.name, s.labels)
    assert seen == set(specs), f"declared but never exported: {set(specs) - seen}"
    for m in METRICS:
        assert re.fullmatch(r"govcloud_[a-z0-9_]+", m.name)
        assert m.name.endswith("_total") == (m.type == "counter"), m.name
        assert not re.search(r"_(ms|milliseconds|minutes|hours|kb|mb|gb|kilobytes|megabytes)(_|$)", m.name), m.name
        for label in m.labels:  # bounded: no per-request, per-host or free-text identifiers
            assert label not in {"host", "ip", "run_id", "system", "error", "instance"}, (m.name, label)


@pytest.mark.parametrize("listen", ["0.0.0.0:9477", "127.0.0.1:9477", "[::1]:9477"])
def test_listen_parses_explicit_ip_literals(listen: str) -> None:
    from govcloud.services.exporter import parse_listen

    host, port = parse_listen(listen)
    assert port == 9477 and host in {"0.0.0.0", "127.0.0.1", "::1"}


@pytest.mark.parametrize("listen", [":9477", "9477", "localhost:9477", "127.0.0.1:0x1", "127.0.0.1:70000", ""])
def test_listen_refuses_implicit_or_malformed_addresses(listen: str) -> None:
    from govcloud.errors import ExitCode, InvalidInputError
    from govcloud.services.exporter import parse_listen

    with pytest.raises(InvalidInputError) as err:
        parse_listen(listen)
    assert err.value.exit_code == ExitCode.INVALID_INPUT and err.value.hint


def test_exporter_serves_on_loopback_and_reads_failover_state(tmp_path: Path) -> None:
    """A real HTTP exporter (port 0: the kernel picks a free one); probes off, failover JSON on disk."""
    from govcloud.services.exporter import Exporter, ExporterOptions

    journal = tmp_path / "journal.sqlite"
    fill_journal(journal)
    state = tmp_path / "failover.json"
    exp = Exporter(ExporterOptions(listen="127.0.0.1:0", journal=journal, probes=False, failover_state=state))
    try:
        assert exp.url.startswith("http://127.0.0.1:")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        body = opener.open(exp.url, timeout=5).read().decode()
        assert "govcloud_journal_up 1.0" in body and "govcloud_failover_decision" not in body
        state.write_text(json.dumps({"decision": "refuse", "reason": "quorum not met"}))
        body = opener.open(exp.url, timeout=5).read().decode()
        assert 'govcloud_failover_decision{govcloud_failover_decision="refuse"} 1.0' in body
        assert 'govcloud_exporter_scrape_duration_seconds{collector="journal"}' in body
    finally:
        exp.stop()


def test_cli_refuses_a_hostname_listen(run_cli) -> None:  # type: ignore[no-untyped-def]
    r = run_cli("exporter", "--listen", "localhost:9477", "--no-probes")
    assert r.exit_code == 2 and "is not an IP address" in r.stderr


def test_cli_exporter_serves_then_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """`govcloud exporter` as a real process: announces its URL, serves, exits 0 on SIGTERM."""
    import signal
    import subprocess
    import sys

    journal = tmp_path / "journal.sqlite"
    fill_journal(journal)
    exe = Path(sys.executable).parent / "govcloud"
    p = subprocess.Popen([str(exe), "exporter", "--listen", "127.0.0.1:0", "--journal", str(journal), "--no-probes"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert p.stderr is not None
        line = p.stderr.readline()  # blocks until the server listens (or the process died: empty line)
        m = re.search(r"serving (http://127\.0\.0\.1:\d+/metrics)", line)
        assert m, line + (p.stderr.read() if p.poll() is not None else "")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        body = opener.open(m.group(1), timeout=5).read().decode()
        assert 'govcloud_migration_systems{plan="p1",state="cutover",wave="1"} 1.0' in body
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=15) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def test_name_switches_and_refusals_are_counted_with_their_latency(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    with Journal(path, actor="test@host") as j:
        run = j.start_run("p1", 1)
        j.ensure_system("p1", "hrss-web", 1)
        for secs in (0.004, 0.03):
            j.record_fact(run, "p1", "hrss-web", "dns", "switch", {"name": "hrss-web.svc.", "seconds": secs})
        j.record_fact(run, "p1", "hrss-web", "dns", "refused", {"error": "changed outside govcloud"})
        j.record_fact(run, "p1", "hrss-web", "other", "switch", {"seconds": 99})  # not a dns fact
    got = scrape(build_registry(path, lambda: None, lambda: None))
    assert got["govcloud_dns_updates_total"] == {(("result", "ok"),): 2, (("result", "refused"),): 1}
    assert got["govcloud_dns_switch_seconds_count"] == {(): 2}
    assert got["govcloud_dns_switch_seconds_bucket"][(("le", "0.01"),)] == 1
    assert got["govcloud_dns_switch_seconds_bucket"][(("le", "0.05"),)] == 2
