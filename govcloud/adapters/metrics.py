"""Prometheus metrics of govcloud: custom collectors that read the journal and the probes at scrape time.

Nothing is cached between scrapes: each scrape opens the migration journal read-only (one
connection per scrape, closed after; WAL lets a running migration keep writing), reads the newest
probe view and failover view, and builds the metric families. Every metric is declared once in
``METRICS`` (name, type, labels, help), which the collectors build from and ``monitoring/README.md``
is generated from (``python -m govcloud.adapters.metrics --markdown``; a test checks it is current).

Conventions (Prometheus "writing exporters"): ``govcloud_`` prefix, base units in names
(``_seconds``, ``_bytes``), ``_total`` counters, bounded labels (sites, regions, states, steps, waves,
replicated services: all finite sets from the inventory). The datacentre the exporter itself runs in
is a target label set in ``prometheus.yml``, never a metric label.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from govcloud.adapters.journal import Journal
from govcloud.errors import JournalError, JournalMissingError
from govcloud.migrate.state import State

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric: ``name`` as exposed (counters end in ``_total``)."""

    name: str
    type: str  # gauge | counter | histogram | info | stateset
    labels: tuple[str, ...]
    help: str
    source: str  # journal | probes | failover | exporter


STEP_BUCKETS: tuple[float, ...] = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)
DOWNTIME_BUCKETS: tuple[float, ...] = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
DNS_BUCKETS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
FACT_DNS = ("switch", "refused")  # facts of step "dns": a switch report, or a refusal
DECISIONS: tuple[str, ...] = ("hold", "failover", "refuse", "failback")
FACT_BYTES = "bytes_sent"  # fact a sync step records (bytes transferred by that sync)
FACT_DOWNTIME = "downtime_seconds"  # fact the verify step records (source stopped -> target healthy)
FACT_WINDOW_END = "window_end"  # fact the cutover step records at its intent: end of the wave's window (unix s)
ACTIVE_CUTOVER: frozenset[str] = frozenset({State.CUTOVER.value, State.VERIFIED.value})

METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("govcloud_journal_up", "gauge", (), "1 when the migration journal could be read at this scrape, 0 when not.", "journal"),
    MetricSpec("govcloud_migration_systems", "gauge", ("plan", "wave", "state"),
               "Systems of a plan's wave by migration state (every state present, 0 when none).", "journal"),
    MetricSpec("govcloud_migration_runs_active", "gauge", ("plan", "wave"),
               "Migration runs of the wave whose status is still running.", "journal"),
    MetricSpec("govcloud_migration_last_progress_timestamp_seconds", "gauge", ("plan", "wave"),
               "Unix time of the newest state transition (intent or outcome) of any system of the wave.", "journal"),
    MetricSpec("govcloud_migration_step_duration_seconds", "histogram", ("step", "result"),
               "Duration of completed migration steps, intent to outcome.", "journal"),
    MetricSpec("govcloud_migration_cutover_downtime_seconds", "histogram", (),
               "Service downtime of each completed cutover (source stopped to target serving).", "journal"),
    MetricSpec("govcloud_migration_synced_bytes_total", "counter", ("plan", "wave"),
               "Bytes transferred by sync steps (warm and final delta).", "journal"),
    MetricSpec("govcloud_migration_cutovers_active", "gauge", ("plan", "wave"),
               "Systems of the wave in cutover or verified (source stopped, not yet done).", "journal"),
    MetricSpec("govcloud_migration_window_end_timestamp_seconds", "gauge", ("plan", "wave"),
               "Unix time the wave's maintenance window ends, as recorded by its cutover.", "journal"),
    MetricSpec("govcloud_dns_updates_total", "counter", ("result",),
               "Service-name switches by result: ok, or refused (the record was changed outside govcloud).", "journal"),
    MetricSpec("govcloud_dns_switch_seconds", "histogram", (),
               "Switch latency: from the first update until every reachable server answers the new address.",
               "journal"),
    MetricSpec("govcloud_site_reachable", "gauge", ("source_site", "target_site", "target_region"),
               "1 when the last probe from source_site connected to target_site's probe host, else 0.", "probes"),
    MetricSpec("govcloud_probe_latency_seconds", "gauge", ("source_site", "target_site"),
               "TCP connect time of the last successful probe from source_site to target_site.", "probes"),
    MetricSpec("govcloud_site_up", "gauge", ("site", "region"),
               "Quorum verdict: 0 when a majority of the other sites cannot reach the site, else 1.", "probes"),
    MetricSpec("govcloud_region_up", "gauge", ("region",),
               "0 when every site of the region is down by quorum, else 1.", "probes"),
    MetricSpec("govcloud_probe_snapshot_timestamp_seconds", "gauge", (),
               "Unix time of the newest probe snapshot (staleness: time() minus this).", "probes"),
    MetricSpec("govcloud_replication_lag_seconds", "gauge", ("service", "standby_site"),
               "Replication lag of a standby behind its primary, in seconds.", "failover"),
    MetricSpec("govcloud_replication_lag_bytes", "gauge", ("service", "standby_site"),
               "Replication lag of a standby behind its primary, in WAL bytes.", "failover"),
    MetricSpec("govcloud_replication_rpo_seconds", "gauge", ("service",),
               "The service's recovery point objective (maximum tolerated data loss), in seconds.", "failover"),
    MetricSpec("govcloud_failovers_total", "counter", ("service", "result"),
               "Failovers executed (result ok or failed).", "failover"),
    MetricSpec("govcloud_failover_in_progress", "gauge", ("service",),
               "1 while a failover of the service is running.", "failover"),
    MetricSpec("govcloud_failover_last_rto_seconds", "gauge", ("service",),
               "Recovery time of the last failover: loss detected to writable again.", "failover"),
    MetricSpec("govcloud_failover_last_rpo_seconds", "gauge", ("service",),
               "Data loss window of the last failover, in seconds of commits.", "failover"),
    MetricSpec("govcloud_failover_last_lost_commits", "gauge", ("service",),
               "Acknowledged commits lost by the last failover (0 required for the sync pair).", "failover"),
    MetricSpec("govcloud_replication_primary", "gauge", ("service", "site"),
               "1 for the site holding the service's primary, 0 for its standbys' sites.", "failover"),
    MetricSpec("govcloud_replication_streaming", "gauge", ("service", "standby_site"),
               "1 when the standby was streaming from the primary at the controller's last check, else 0.",
               "failover"),
    MetricSpec("govcloud_failover_epoch", "gauge", ("service",),
               "Fencing epoch of the service's current primary (every promotion increments it).", "failover"),
    MetricSpec("govcloud_failover_view_timestamp_seconds", "gauge", (),
               "Unix time the failover controller last published its view (staleness: time() minus this).",
               "failover"),
    MetricSpec("govcloud_failover_decision", "stateset", ("govcloud_failover_decision",),
               "The decision the failover controller currently holds.", "failover"),
    MetricSpec("govcloud_failover_decision_info", "info", ("decision", "reason"),
               "The current decision with the sentence saying why (one series; changes with the decision).",
               "failover"),
    MetricSpec("govcloud_exporter_scrape_duration_seconds", "gauge", ("collector",),
               "Time each collector took at this scrape.", "exporter"),
)
SPECS: Mapping[str, MetricSpec] = {m.name: m for m in METRICS}


def _family(name: str) -> Any:
    """An empty metric family for ``name`` built from its spec (labels in the spec's order)."""
    s = SPECS[name]
    if s.type == "gauge":
        return GaugeMetricFamily(s.name, s.help, labels=s.labels)
    if s.type == "counter":
        return CounterMetricFamily(s.name.removesuffix("_total"), s.help, labels=s.labels)
    if s.type == "histogram":
        return HistogramMetricFamily(s.name, s.help, labels=s.labels)
    if s.type == "info":
        return InfoMetricFamily(s.name.removesuffix("_info"), s.help, labels=())
    if s.type == "stateset":
        return StateSetMetricFamily(s.name, s.help, labels=())
    raise ValueError(f"unknown metric type {s.type}")


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _buckets(values: Iterable[float], bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    vals = sorted(values)
    out = [(repr(float(b)), float(sum(1 for v in vals if v <= b))) for b in bounds]
    out.append(("+Inf", float(len(vals))))
    return out


# ------------------------------------------------------------------ journal


@dataclass(frozen=True)
class MigrationView:
    """What the journal says, reduced to what the metrics need (built by ``read_migration``)."""

    systems: tuple[tuple[str, int, str], ...] = ()  # (plan, wave, state) per system
    runs_active: tuple[tuple[str, int], ...] = ()  # (plan, wave) per running run
    last_progress: Mapping[tuple[str, int], float] = field(default_factory=dict)
    steps: tuple[tuple[str, str, float], ...] = ()  # (action, result, seconds)
    downtimes: tuple[float, ...] = ()
    synced_bytes: Mapping[tuple[str, int], float] = field(default_factory=dict)
    window_end: Mapping[tuple[str, int], float] = field(default_factory=dict)
    dns: tuple[tuple[str, float | None], ...] = ()  # (result, seconds) per name switch


def read_migration(journal: Journal) -> MigrationView:
    """Read everything the migration metrics need from an open journal (public API only)."""
    systems = journal.systems()
    rows: list[tuple[str, int, str]] = []
    progress: dict[tuple[str, int], float] = {}
    steps: list[tuple[str, str, float]] = []
    downtimes: list[float] = []
    synced: dict[tuple[str, int], float] = defaultdict(float)
    window_end: dict[tuple[str, int], float] = {}
    dns: list[tuple[str, float | None]] = []
    for s in systems:
        plan, system, wave = str(s["plan"]), str(s["system"]), int(s["wave"])
        rows.append((plan, wave, str(s["state"])))
        trs = journal.transitions(plan, system)
        intents = {t["id"]: t for t in trs if t["phase"] == "intent"}
        for t in trs:
            at = _ts(t["at"])
            progress[(plan, wave)] = max(progress.get((plan, wave), 0.0), at)
            it = intents.get(t.get("intent_id")) if t["phase"] == "outcome" else None
            if it is not None:
                steps.append((str(it["action"]), str(t["result"]), max(0.0, at - _ts(it["at"]))))
        for f in journal.facts(plan, system):
            key, value = f["key"], f["value"]
            if key == FACT_BYTES and isinstance(value, int | float):
                synced[(plan, wave)] += float(value)
            elif key == FACT_DOWNTIME and isinstance(value, int | float):
                downtimes.append(float(value))
            elif f.get("step") == "dns" and key in FACT_DNS:
                secs = value.get("seconds") if isinstance(value, dict) else None
                dns.append(("ok" if key == "switch" else "refused", float(secs) if isinstance(secs, int | float) else None))
            elif key == FACT_WINDOW_END and isinstance(value, int | float | str):
                end = float(value) if not isinstance(value, str) else _ts(value)
                window_end[(plan, wave)] = end
    active = tuple((str(r["plan"]), int(r["wave"])) for r in journal.runs() if r["status"] == "running")
    return MigrationView(tuple(rows), active, progress, tuple(steps), tuple(downtimes), dict(synced), window_end,
                         tuple(dns))


def migration_families(view: MigrationView) -> list[Metric]:
    """The migration metric families of one journal view (pure)."""
    waves = sorted({(p, w) for p, w, _ in view.systems} | set(view.runs_active))
    systems = _family("govcloud_migration_systems")
    counts: dict[tuple[str, int, str], int] = defaultdict(int)
    for key in view.systems:
        counts[key] += 1
    for plan, wave in waves:
        for st in State:
            systems.add_metric([plan, str(wave), st.value], counts.get((plan, wave, st.value), 0))
    runs = _family("govcloud_migration_runs_active")
    cut = _family("govcloud_migration_cutovers_active")
    progress = _family("govcloud_migration_last_progress_timestamp_seconds")
    synced = _family("govcloud_migration_synced_bytes_total")
    window = _family("govcloud_migration_window_end_timestamp_seconds")
    for plan, wave in waves:
        labels = [plan, str(wave)]
        runs.add_metric(labels, sum(1 for r in view.runs_active if r == (plan, wave)))
        cut.add_metric(labels, sum(counts.get((plan, wave, s), 0) for s in ACTIVE_CUTOVER))
        synced.add_metric(labels, view.synced_bytes.get((plan, wave), 0.0))
        if (plan, wave) in view.last_progress:
            progress.add_metric(labels, view.last_progress[(plan, wave)])
        if (plan, wave) in view.window_end:
            window.add_metric(labels, view.window_end[(plan, wave)])
    durations = _family("govcloud_migration_step_duration_seconds")
    by_step: dict[tuple[str, str], list[float]] = defaultdict(list)
    for action, result, secs in view.steps:
        by_step[(action, result)].append(secs)
    for (action, result), vals in sorted(by_step.items()):
        durations.add_metric([action, result], _buckets(vals, STEP_BUCKETS), sum(vals))
    downtime = _family("govcloud_migration_cutover_downtime_seconds")
    downtime.add_metric([], _buckets(view.downtimes, DOWNTIME_BUCKETS), sum(view.downtimes))
    updates = _family("govcloud_dns_updates_total")
    for result in ("ok", "refused"):
        updates.add_metric([result], sum(1 for r, _ in view.dns if r == result))
    switch_s = [secs for r, secs in view.dns if r == "ok" and secs is not None]
    latency = _family("govcloud_dns_switch_seconds")
    latency.add_metric([], _buckets(switch_s, DNS_BUCKETS), sum(switch_s))
    return [systems, runs, cut, progress, synced, window, durations, downtime, updates, latency]


class JournalCollector(Collector):
    """Reads the journal at every scrape; an unreadable or missing journal is ``govcloud_journal_up 0``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last_duration = 0.0

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        up = _family("govcloud_journal_up")
        try:
            with Journal(self.path, create=False) as j:
                view = read_migration(j)
        except (JournalError, JournalMissingError) as exc:  # read-only: a scrape never creates or migrates it
            log.warning("journal not readable at scrape: %s", exc.message)
            up.add_metric([], 0)
            yield up
            self.last_duration = time.monotonic() - started
            return
        up.add_metric([], 1)
        yield up
        yield from migration_families(view)
        self.last_duration = time.monotonic() - started


# ------------------------------------------------------------------ probes


@dataclass(frozen=True)
class PathSample:
    source_site: str
    target_site: str
    target_region: str
    ok: bool
    latency_seconds: float | None


@dataclass(frozen=True)
class ProbeView:
    """The newest probe snapshot and its quorum verdicts, as plain rows (the services build it)."""

    taken_at: float
    paths: tuple[PathSample, ...] = ()
    sites: tuple[tuple[str, str, bool | None], ...] = ()  # (site, region, up)
    regions: tuple[tuple[str, bool | None], ...] = ()  # (region, up)


def probe_families(view: ProbeView) -> list[Metric]:
    reach = _family("govcloud_site_reachable")
    lat = _family("govcloud_probe_latency_seconds")
    for p in view.paths:
        reach.add_metric([p.source_site, p.target_site, p.target_region], 1 if p.ok else 0)
        if p.ok and p.latency_seconds is not None:
            lat.add_metric([p.source_site, p.target_site], p.latency_seconds)
    site_up = _family("govcloud_site_up")
    for site, region, up in view.sites:
        if up is not None:
            site_up.add_metric([site, region], 1 if up else 0)
    region_up = _family("govcloud_region_up")
    for region, rup in view.regions:
        if rup is not None:
            region_up.add_metric([region], 1 if rup else 0)
    ts = _family("govcloud_probe_snapshot_timestamp_seconds")
    ts.add_metric([], view.taken_at)
    return [reach, lat, site_up, region_up, ts]


V = TypeVar("V")


class ViewCollector(Collector, Generic[V]):
    """Exports the newest view a source publishes (nothing while it has published none yet)."""

    def __init__(self, latest: Callable[[], V | None], families: Callable[[V], list[Metric]]) -> None:
        self.latest = latest
        self.families = families
        self.last_duration = 0.0

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        view = self.latest()
        if view is not None:
            yield from self.families(view)
        self.last_duration = time.monotonic() - started


def ProbeCollector(latest: Callable[[], ProbeView | None]) -> ViewCollector[ProbeView]:  # noqa: N802 - a collector factory
    """The newest probe view (nothing until the first probe round finished)."""
    return ViewCollector(latest, probe_families)


# ------------------------------------------------------------------ failover / replication


@dataclass(frozen=True)
class ReplicaSample:
    service: str
    standby_site: str
    lag_seconds: float
    lag_bytes: float


@dataclass(frozen=True)
class FailoverRecord:
    service: str
    ok: int = 0
    failed: int = 0
    in_progress: bool = False
    last_rto_seconds: float | None = None
    last_rpo_seconds: float | None = None
    last_lost_commits: int | None = None


@dataclass(frozen=True)
class MemberSample:
    """One member of a replicated service: its site, whether it is the primary, and (standbys) streaming."""

    service: str
    site: str
    primary: bool
    streaming: bool = True


@dataclass(frozen=True)
class FailoverView:
    """What the failover controller publishes: replication, failovers, and its current decision."""

    replicas: tuple[ReplicaSample, ...] = ()
    rpo_seconds: tuple[tuple[str, float], ...] = ()  # (service, RPO target)
    failovers: tuple[FailoverRecord, ...] = ()
    decision: str = "hold"
    reason: str = ""
    members: tuple[MemberSample, ...] = ()
    epochs: tuple[tuple[str, int], ...] = ()  # (service, fencing epoch)
    published_at: float | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FailoverView:
        """From the JSON the failover controller writes: the field names, plus its ``service``, ``primary``,
        ``epoch``, ``standbys`` (site, streaming) and ``published_at`` (one service per file)."""
        service = d.get("service")
        members: list[MemberSample] = []
        epochs: list[tuple[str, int]] = []
        if isinstance(service, str):
            if isinstance(d.get("primary"), str):
                members.append(MemberSample(service, d["primary"], True))
            members += [MemberSample(service, str(s["site"]), False, bool(s.get("streaming", False)))
                        for s in d.get("standbys", ()) if isinstance(s, Mapping) and "site" in s]
            if isinstance(d.get("epoch"), int):
                epochs.append((service, int(d["epoch"])))
        published = d.get("published_at")
        return cls(
            replicas=tuple(ReplicaSample(str(r["service"]), str(r["standby_site"]), float(r.get("lag_seconds", 0)),
                                         float(r.get("lag_bytes", 0))) for r in d.get("replicas", ())),
            rpo_seconds=tuple((str(k), float(v)) for k, v in sorted(dict(d.get("rpo_seconds", {})).items())),
            failovers=tuple(FailoverRecord(**f) for f in d.get("failovers", ())),
            decision=str(d.get("decision", "hold")),
            reason=str(d.get("reason", "")),
            members=tuple(members),
            epochs=tuple(epochs),
            published_at=float(published) if isinstance(published, int | float) else None,
        )


def failover_families(view: FailoverView) -> list[Metric]:
    lag_s = _family("govcloud_replication_lag_seconds")
    lag_b = _family("govcloud_replication_lag_bytes")
    for r in view.replicas:
        lag_s.add_metric([r.service, r.standby_site], r.lag_seconds)
        lag_b.add_metric([r.service, r.standby_site], r.lag_bytes)
    rpo = _family("govcloud_replication_rpo_seconds")
    for service, secs in view.rpo_seconds:
        rpo.add_metric([service], secs)
    total = _family("govcloud_failovers_total")
    running = _family("govcloud_failover_in_progress")
    rto = _family("govcloud_failover_last_rto_seconds")
    rpo_last = _family("govcloud_failover_last_rpo_seconds")
    lost = _family("govcloud_failover_last_lost_commits")
    for f in view.failovers:
        total.add_metric([f.service, "ok"], f.ok)
        total.add_metric([f.service, "failed"], f.failed)
        running.add_metric([f.service], 1 if f.in_progress else 0)
        if f.last_rto_seconds is not None:
            rto.add_metric([f.service], f.last_rto_seconds)
        if f.last_rpo_seconds is not None:
            rpo_last.add_metric([f.service], f.last_rpo_seconds)
        if f.last_lost_commits is not None:
            lost.add_metric([f.service], f.last_lost_commits)
    primary = _family("govcloud_replication_primary")
    streaming = _family("govcloud_replication_streaming")
    for m in view.members:
        primary.add_metric([m.service, m.site], 1 if m.primary else 0)
        if not m.primary:
            streaming.add_metric([m.service, m.site], 1 if m.streaming else 0)
    epoch = _family("govcloud_failover_epoch")
    for service, e in view.epochs:
        epoch.add_metric([service], e)
    published = _family("govcloud_failover_view_timestamp_seconds")
    if view.published_at is not None:
        published.add_metric([], view.published_at)
    decision = _family("govcloud_failover_decision")
    decision.add_metric([], {d: d == view.decision for d in DECISIONS})
    info = _family("govcloud_failover_decision_info")
    info.add_metric([], {"decision": view.decision, "reason": view.reason})
    return [lag_s, lag_b, rpo, total, running, rto, rpo_last, lost, primary, streaming, epoch, published, decision,
            info]


def FailoverCollector(latest: Callable[[], FailoverView | None]) -> ViewCollector[FailoverView]:  # noqa: N802
    """The failover controller's view when it publishes one (nothing otherwise)."""
    return ViewCollector(latest, failover_families)


class SelfCollector(Collector):
    """How long each collector took (its previous run: the exporter's own cost per scrape)."""

    def __init__(self, collectors: Mapping[str, JournalCollector | ViewCollector[Any]]) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        fam = _family("govcloud_exporter_scrape_duration_seconds")
        for name, c in sorted(self.collectors.items()):
            fam.add_metric([name], c.last_duration if math.isfinite(c.last_duration) else 0.0)
        yield fam


def build_registry(journal: Path, probes: Callable[[], ProbeView | None],
                   failover: Callable[[], FailoverView | None]) -> CollectorRegistry:
    """A registry holding only govcloud's collectors (no process/platform defaults)."""
    reg = CollectorRegistry(auto_describe=False)
    collectors: dict[str, JournalCollector | ViewCollector[Any]] = {
        "journal": JournalCollector(journal), "probes": ProbeCollector(probes),
                  "failover": FailoverCollector(failover)}
    for c in collectors.values():
        reg.register(c)
    reg.register(SelfCollector(collectors))
    return reg


# ------------------------------------------------------------------ documentation


def render_markdown() -> str:
    """``monitoring/README.md``'s metric table, generated from ``METRICS``."""
    lines = [
        "<!-- generated by `python -m govcloud.adapters.metrics --markdown > monitoring/README.md`; "
        "do not edit (tests/unit/test_metrics_docs.py checks it) -->",
        "# govcloud metrics",
        "",
        "Exported by `govcloud exporter --listen 127.0.0.1:9477` (see `prometheus.yml`, `rules/`, `tests/`,",
        "`alertmanager.yml`, `grafana/govcloud.json` in this directory). The datacentre the exporter runs in",
        "is the `datacentre` target label set in `prometheus.yml`, not a metric label. Run the rule tests with",
        "`promtool test rules monitoring/tests/*.yml`.",
        "",
        "```",
        "scripts/install-monitoring.sh          # Debian prometheus + alertmanager, no system service started",
        "govcloud exporter --listen 127.0.0.1:9477 --known-hosts ~/.ssh/known_hosts --ssh-key ~/.ssh/id_ed25519 &",
        "prometheus --config.file=monitoring/prometheus.yml --web.listen-address=127.0.0.1:9090 \\",
        "    --storage.tsdb.path=/var/tmp/govcloud-prometheus &",
        "prometheus-alertmanager --config.file=monitoring/alertmanager.yml --web.listen-address=127.0.0.1:9093 \\",
        "    --cluster.listen-address= --storage.path=/var/tmp/govcloud-alertmanager &",
        "```",
        "",
        "Site probes: the sites, their probe hosts and ports come from the topology",
        "(`regions.<r>.sites.<s>.probe: {host, address, port=22, user=root}`, docs/inventory.md). Each round,",
        "the exporter reaches every site's probe host by SSH (strict host keys: `--known-hosts`) and connects",
        "from there to the other sites' probe hosts, and from itself to all of them (the witness). A site",
        "without a probe host is not probed (a validation warning); a topology without any, or",
        "`--no-probes`, exports the journal metrics only.",
        "",
        "Site verdicts: a datacentre is down when a strict majority of its credible observers (the other",
        "datacentres, plus the controller as witness) cannot reach it; an observer that reached nobody (or",
        "could not be reached to ask) is isolated itself and not counted. `govcloud_site_reachable` keeps",
        "every raw path.",
        "",
        "| metric | type | labels | source | meaning |",
        "|---|---|---|---|---|",
    ]
    for m in METRICS:
        labels = ", ".join(f"`{lb}`" for lb in m.labels) or "-"
        lines.append(f"| `{m.name}` | {m.type} | {labels} | {m.source} | {m.help} |")
    lines += [
        "",
        "Histograms expose `_bucket`, `_sum` and `_count`. Facts read from the journal: "
        f"`{FACT_BYTES}` (sync steps), `{FACT_DOWNTIME}` (verify: source stopped to target healthy), "
        f"`{FACT_WINDOW_END}` (cutover: unix time "
        "or ISO timestamp the wave's window ends). Failover metrics come from the JSON the failover controller "
        "writes (`--failover-state`, default `<root>/.govcloud/failover.json`: `FailoverView`'s fields plus "
        "`service`, `primary`, `epoch`, `standbys`, `published_at`; `govcloud failover status|drill|execute|failback` "
        "publish it); they are absent until it writes one.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m govcloud.adapters.metrics", description=__doc__)
    ap.add_argument("--markdown", action="store_true", help="print monitoring/README.md")
    args = ap.parse_args(argv)
    if args.markdown:
        sys.stdout.write(render_markdown())
        return 0
    ap.print_help()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
