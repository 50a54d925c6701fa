"""Site reachability probes: from each datacentre to each other one, a TCP connect to a host's sshd.

Split in three so the failover controller can reuse it: a ``Prober`` does the I/O for one source's
paths (``TopologyProber`` runs them on the site's probe host named in the topology, reached by SSH,
so the observation is really made *from* that site); ``probe_all`` takes one immutable
``ProbeSnapshot`` of every path; ``aggregate`` is pure and turns a snapshot into per-site verdicts by quorum of the other
sites' observations (a site is lost only when a majority of its observers cannot reach it, so a
partition that breaks one path never declares a site down). An observer that reached nobody at all is
isolated itself, so its "cannot reach" says nothing about the others and is not counted. With three
sites, losing two would leave the third unable to tell its own isolation from their loss; a
*witness* (an observer that is not a site: the controller running the exporter) breaks that tie.
``ProbeLoop`` keeps the latest snapshot fresh in a background thread for the exporter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from govcloud.adapters.ports import ConnectPort, Endpoint
from govcloud.model import Topology

log = logging.getLogger(__name__)

#: the observer name of probes made from the controller itself (the exporter's own network namespace)
WITNESS = "controller"


@dataclass(frozen=True)
class ProbeTarget:
    """What a site is probed at: one host of it (its sshd by default)."""

    site: str
    region: str
    host: str
    ip: str
    port: int = 22
    service: str | None = None  # a replicated service's endpoint on that site (e.g. PostgreSQL), not the site


@dataclass(frozen=True)
class ProbeResult:
    """One observation of ``target`` made from ``source`` (a site name). ``latency_seconds`` only when ok."""

    source: str
    target: str
    ok: bool
    latency_seconds: float | None
    at: float  # unix time the probe finished
    error: str = ""
    service: str | None = None  # set when the probe hit a service endpoint rather than the site


@dataclass(frozen=True)
class ProbeSnapshot:
    """Every path probed in one round; immutable, so a decision made from it can be explained later."""

    taken_at: float
    regions: tuple[tuple[str, str], ...]  # (site, region), sorted
    results: tuple[ProbeResult, ...]

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(s for s, _ in self.regions)

    def region_of(self, site: str) -> str:
        return dict(self.regions).get(site, "")

    def result(self, source: str, target: str) -> ProbeResult | None:
        for r in self.results:
            if r.source == source and r.target == target and r.service is None:
                return r
        return None

    def site_results(self) -> tuple[ProbeResult, ...]:
        """Site-level results only (service probes left out)."""
        return tuple(r for r in self.results if r.service is None)


@dataclass(frozen=True)
class SiteVerdict:
    """What the other sites say about one site, and the sentence saying why."""

    site: str
    region: str
    observers: tuple[str, ...]  # credible observers (isolated ones left out)
    reachable_from: tuple[str, ...]
    unreachable_from: tuple[str, ...]
    up: bool | None  # None: no credible observer
    reason: str
    discounted: tuple[str, ...] = ()  # observers that reached nobody: isolated themselves


@dataclass(frozen=True)
class RegionVerdict:
    region: str
    sites: tuple[str, ...]
    up: bool | None
    reason: str


@dataclass(frozen=True)
class Health:
    """The pure result of ``aggregate``: per-site and per-region verdicts of one snapshot."""

    sites: tuple[SiteVerdict, ...] = ()
    regions: tuple[RegionVerdict, ...] = field(default=())

    def site(self, name: str) -> SiteVerdict | None:
        return next((v for v in self.sites if v.site == name), None)

    def region(self, name: str) -> RegionVerdict | None:
        return next((v for v in self.regions if v.region == name), None)


def quorum(observers: int) -> int:
    """Observations needed to declare a site lost: a strict majority of its observers."""
    return observers // 2 + 1


def isolated(snapshot: ProbeSnapshot) -> frozenset[str]:
    """Observers whose every probe failed: cut off themselves, so their failures are not evidence."""
    results = snapshot.site_results()
    sources = {r.source for r in results}
    return frozenset(s for s in sources if not any(r.ok for r in results if r.source == s))


def aggregate(snapshot: ProbeSnapshot) -> Health:
    """Per-site verdicts by quorum of the *other* credible observers, then per-region (pure)."""
    alone = isolated(snapshot)
    verdicts: list[SiteVerdict] = []
    for site in snapshot.sites:
        seen = [r for r in snapshot.site_results() if r.target == site and r.source != site]
        discounted = tuple(sorted(r.source for r in seen if r.source in alone))
        seen = [r for r in seen if r.source not in alone]
        observers = tuple(sorted(r.source for r in seen))
        ok = tuple(sorted(r.source for r in seen if r.ok))
        bad = tuple(sorted(r.source for r in seen if not r.ok))
        region = snapshot.region_of(site)
        note = f" (not counted, isolated themselves: {', '.join(discounted)})" if discounted else ""
        if not observers:
            verdicts.append(SiteVerdict(site, region, (), (), (), None,
                                        f"{site}: no credible observer{note}", discounted))
            continue
        need = quorum(len(observers))
        if len(bad) >= need:
            up, why = False, (f"{site} is down: {len(bad)} of {len(observers)} observers cannot reach it "
                              f"({', '.join(bad)}), quorum {need}{note}")
        elif bad:
            up, why = True, (f"{site} is up: reachable from {', '.join(ok)}; only {', '.join(bad)} cannot reach it "
                             f"({len(bad)} of {len(observers)}, below quorum {need}: a path, not the site){note}")
        else:
            up, why = True, f"{site} is up: reachable from all {len(observers)} observers{note}"
        verdicts.append(SiteVerdict(site, region, observers, ok, bad, up, why, discounted))
    regions: list[RegionVerdict] = []
    for region in sorted({r for _, r in snapshot.regions}):
        members = [v for v in verdicts if v.region == region]
        known = [v for v in members if v.up is not None]
        names = tuple(v.site for v in members)
        if not known:
            regions.append(RegionVerdict(region, names, None, f"region {region}: no observations"))
        elif all(v.up is False for v in known):
            regions.append(RegionVerdict(region, names, False, f"region {region} is down: every site "
                                         f"({', '.join(names)}) is down"))
        else:
            alive = ", ".join(v.site for v in known if v.up)
            regions.append(RegionVerdict(region, names, True, f"region {region} is up: {alive} up"))
    return Health(tuple(verdicts), tuple(regions))


class Prober(Protocol):
    """The I/O of a probe round from one source: connect from ``source`` (a site, or the witness) to each
    of ``targets``; one result per target, in order; never raises."""

    def batch(self, source: str, targets: Sequence[ProbeTarget], timeout: float) -> list[ProbeResult]: ...


def probe_all(prober: Prober, targets: Sequence[ProbeTarget], *, timeout: float = 1.0,
              witnesses: Sequence[str] = (), clock: Callable[[], float] = time.time) -> ProbeSnapshot:
    """Probe every site from every other site and from each witness, in parallel; one immutable snapshot."""
    return probe_sites_and_services(prober, targets, (), timeout=timeout, witnesses=witnesses, clock=clock)


def probe_sites_and_services(prober: Prober, sites: Sequence[ProbeTarget], services: Sequence[ProbeTarget], *,
                             timeout: float = 0.5, witnesses: Sequence[str] = (WITNESS,),
                             site_extra: Sequence[ProbeTarget] = (),
                             clock: Callable[[], float] = time.time) -> ProbeSnapshot:
    """One round: every site probes every other site and every service endpoint (its own included).

    ``site_extra`` are probed from the sites only (the witness's own endpoint, so a primary knows
    whether it still reaches the witness). One batch per source, all sources in parallel, keeps a round
    within about one ``timeout``.
    """
    sources = [t.site for t in sites] + list(witnesses)

    def from_source(src: str) -> list[ProbeResult]:
        extra = list(site_extra) if src not in witnesses else []
        return prober.batch(src, [t for t in sites if t.site != src] + list(services) + extra, timeout)

    results: list[ProbeResult] = []
    if sources:
        with ThreadPoolExecutor(max_workers=len(sources), thread_name_prefix="probe") as pool:
            results = [r for rs in pool.map(from_source, sources) for r in rs]
    return ProbeSnapshot(taken_at=clock(), regions=tuple(sorted((t.site, t.region) for t in sites)),
                         results=tuple(sorted(results, key=lambda r: (r.source, r.target, r.service or ""))))


def topology_targets(topology: Topology) -> list[ProbeTarget]:
    """One target per site that declares a probe host (``sites: {gz-a: {probe: ...}}``), by site name."""
    return [ProbeTarget(site=s.name, region=s.region, host=s.probe.host, ip=s.probe.address, port=s.probe.port)
            for s in sorted(topology.sites, key=lambda x: x.name) if s.probe is not None]


class TopologyProber:
    """``Prober`` over the estate's own probe hosts: a site's batch runs on its probe host (``observers``,
    reached through ``connect``); the witness's from here."""

    def __init__(self, observers: Mapping[str, Endpoint], connect: ConnectPort) -> None:
        self.observers = dict(observers)
        self.connect = connect

    def batch(self, source: str, targets: Sequence[ProbeTarget], timeout: float) -> list[ProbeResult]:
        observer = None if source == WITNESS else self.observers.get(source)
        if observer is None and source != WITNESS:
            return [ProbeResult(source, t.site, False, None, time.time(), f"no probe host in {source}", t.service)
                    for t in targets]
        outcomes = self.connect.connect_from(observer, [(t.ip, t.port) for t in targets], timeout)
        now = time.time()
        return [ProbeResult(source, t.site, o.ok, o.latency_seconds if o.ok else None, now, o.error, t.service)
                for t, o in zip(targets, outcomes)]


def observers_of(topology: Topology, *, known_hosts: Path, key_file: Path | None) -> dict[str, Endpoint]:
    """Each probed site's probe host as an SSH endpoint (strict host keys from ``known_hosts``)."""
    return {s.name: Endpoint(s.probe.address, known_hosts, key_file, s.probe.user, s.probe.port, s.probe.host)
            for s in topology.sites if s.probe is not None}


def topology_round(prober: Prober, targets: Sequence[ProbeTarget], timeout: float = 1.0) -> Callable[[], ProbeSnapshot]:
    """A probe round over the topology's sites, the controller as the witness."""
    return lambda: probe_all(prober, targets, timeout=timeout, witnesses=(WITNESS,))


class ProbeLoop:
    """Re-probes every ``interval`` seconds in a daemon thread; ``latest()`` is the newest snapshot."""

    def __init__(self, round_: Callable[[], ProbeSnapshot], interval: float = 2.0) -> None:
        self._round = round_
        self.interval = interval
        self._latest: ProbeSnapshot | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0
        self.failed_rounds = 0

    def latest(self) -> ProbeSnapshot | None:
        with self._lock:
            return self._latest

    def run_once(self) -> ProbeSnapshot | None:
        try:
            snap = self._round()
        except Exception:  # keep probing: a failed round leaves the last snapshot to age (exported)
            log.exception("probe round failed")
            self.failed_rounds += 1
            return None
        with self._lock:
            self._latest = snap
        self.rounds += 1
        return snap

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.run_once()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="govcloud-probes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
