"""The metrics exporter: an HTTP endpoint on loopback serving govcloud's collectors, and the probe loop.

Collectors read at scrape time (``govcloud.adapters.metrics``); the probes run on their own interval
in the background (a probe round takes longer than a scrape may), the collector exports the newest
snapshot with its quorum verdicts and its timestamp (so staleness is visible).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from govcloud.adapters.metrics import FailoverView, PathSample, ProbeView, build_registry
from govcloud.errors import InvalidInputError, RuntimeFailure
from govcloud.adapters.probe_connect import SshConnector
from govcloud.model import Topology
from govcloud.services.probes import (
    ProbeLoop,
    ProbeSnapshot,
    TopologyProber,
    aggregate,
    observers_of,
    topology_round,
    topology_targets,
)

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9477"


class ListenAddressError(InvalidInputError):
    """The --listen address is malformed or would expose the exporter beyond what was asked."""


@dataclass(frozen=True)
class ExporterOptions:
    listen: str = DEFAULT_LISTEN
    journal: Path = Path(".govcloud/journal.sqlite")
    probe_interval: float = 2.0
    probe_timeout: float = 1.0
    probes: bool = True  # probe the sites whose probe host the topology declares
    failover_state: Path | None = None  # JSON the failover controller writes (FailoverView fields)
    topology: Topology | None = None  # where the sites and their probe hosts come from
    known_hosts: Path | None = None  # the probe hosts' keys (strict)
    ssh_key: Path | None = None


def site_probe_round(opts: ExporterOptions) -> Callable[[], ProbeSnapshot] | None:
    """The probe round over the topology's probe hosts, or None when nothing is to be probed (``--no-probes``,
    or no site declares a probe host: said once in the log). Probes need the hosts' keys: without
    ``known_hosts`` it is an input error, before anything listens."""
    targets = topology_targets(opts.topology) if opts.probes and opts.topology is not None else []
    if not targets:
        if opts.probes:
            log.info("no site of the topology declares a probe host: site probes are off")
        return None
    if opts.known_hosts is None or not opts.known_hosts.is_file():
        raise InvalidInputError(f"site probes need the probe hosts' keys: known_hosts {opts.known_hosts or '(none given)'} "
                                "is not a file", hint="pass --known-hosts (or GOVCLOUD_KNOWN_HOSTS), or --no-probes")
    assert opts.topology is not None
    observers = observers_of(opts.topology, known_hosts=opts.known_hosts, key_file=opts.ssh_key)
    return topology_round(TopologyProber(observers, SshConnector()), targets, timeout=opts.probe_timeout)


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port). Only IP literals; ``0.0.0.0``/``::`` only when written out."""
    host, sep, port_s = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_s.isdigit() or not 0 <= int(port_s) < 65536:
        raise ListenAddressError(f"--listen {listen!r} is not HOST:PORT",
                                 hint=f"for example --listen {DEFAULT_LISTEN}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ListenAddressError(f"--listen {listen!r}: {host!r} is not an IP address",
                                 hint="give an address, e.g. 127.0.0.1 (loopback) or an interface's IP") from None
    return host, int(port_s)


def view_of(snapshot: ProbeSnapshot | None) -> ProbeView | None:
    """The probe snapshot and its quorum verdicts as the rows the metrics export."""
    if snapshot is None:
        return None
    health = aggregate(snapshot)
    return ProbeView(
        taken_at=snapshot.taken_at,
        paths=tuple(PathSample(r.source, r.target, snapshot.region_of(r.target), r.ok, r.latency_seconds)
                    for r in snapshot.results),
        sites=tuple((v.site, v.region, v.up) for v in health.sites),
        regions=tuple((v.region, v.up) for v in health.regions),
    )


def read_failover_state(path: Path | None) -> Callable[[], FailoverView | None]:
    """A reader of the failover controller's JSON, re-read at every scrape (absent file: no metrics)."""

    def latest() -> FailoverView | None:
        if path is None:
            return None
        try:
            data: Any = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("failover state %s unreadable: %s", path, exc)
            return None
        return FailoverView.from_dict(data) if isinstance(data, dict) else None

    return latest


class Exporter:
    """A running exporter: ``url``, ``probes`` (the loop), ``stop()``."""

    def __init__(self, opts: ExporterOptions, *, probe_round: Callable[[], ProbeSnapshot] | None = None) -> None:
        from prometheus_client import start_http_server

        host, port = parse_listen(opts.listen)
        self.options = opts
        self.probes: ProbeLoop | None = None
        round_ = probe_round or site_probe_round(opts)
        if round_ is not None:
            self.probes = ProbeLoop(round_, opts.probe_interval)
        loop = self.probes
        registry = build_registry(opts.journal, (lambda: view_of(loop.latest())) if loop else (lambda: None),
                                  read_failover_state(opts.failover_state))
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise RuntimeFailure(f"cannot listen on {opts.listen}: {exc}",
                                 hint="choose another port with --listen 127.0.0.1:PORT") from exc
        self.host, self.port = host, int(self._server.server_address[1])
        if self.probes is not None:
            self.probes.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        if self.probes is not None:
            self.probes.stop()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def serve(opts: ExporterOptions, stop: threading.Event, on_ready: Callable[[Exporter], None] | None = None) -> None:
    """Run the exporter until ``stop`` is set (the CLI sets it on SIGTERM / Ctrl-C)."""
    exp = Exporter(opts)
    try:
        if on_ready is not None:
            on_ready(exp)
        stop.wait()
    finally:
        exp.stop()
