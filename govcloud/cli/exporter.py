"""`govcloud exporter`: serve the Prometheus metrics (journal, site probes, failover) until stopped."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from govcloud.cli.context import AppContext, pass_app
from govcloud.errors import ExitCode


@click.command("exporter")
@click.option("--listen", default="127.0.0.1:9477", show_default=True, metavar="IP:PORT",
              help="Address to serve /metrics on. Loopback by default; 0.0.0.0 only when written here.")
@click.option("--journal", type=click.Path(dir_okay=False, path_type=Path), default=None, envvar="GOVCLOUD_JOURNAL",
              help="Journal file [env GOVCLOUD_JOURNAL; default <root>/.govcloud/journal.sqlite].")
@click.option("--probe-interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              help="Seconds between probe rounds (site to site reachability).")
@click.option("--probe-timeout", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              help="TCP connect timeout of one probe, seconds.")
@click.option("--no-probes", is_flag=True, help="Do not probe the lab's datacentres (journal metrics only).")
@click.option("--failover-state", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON the failover controller writes [default <root>/.govcloud/failover.json].")
@pass_app
def exporter(app: AppContext, listen: str, journal: Path | None, probe_interval: float, probe_timeout: float,
             no_probes: bool, failover_state: Path | None) -> int:
    """Serve govcloud's metrics for Prometheus until SIGTERM or Ctrl-C."""
    from govcloud.adapters.journal import journal_path
    from govcloud.services.exporter import ExporterOptions, serve

    opts = ExporterOptions(listen=listen, journal=journal_path(app.root, journal), probe_interval=probe_interval,
                           probe_timeout=probe_timeout, probes=not no_probes,
                           failover_state=failover_state or app.root / ".govcloud" / "failover.json")
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    serve(opts, stop, on_ready=lambda exp: app.echo(f"serving {exp.url} (journal {opts.journal})", err=True))
    return ExitCode.OK
