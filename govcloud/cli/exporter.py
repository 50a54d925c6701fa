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
@click.option("--no-probes", is_flag=True,
              help="Do not probe the sites (journal metrics only). Probed otherwise: every site whose probe host "
                   "the topology declares (regions.R.sites.S.probe).")
@click.option("--known-hosts", type=click.Path(dir_okay=False, path_type=Path), envvar="GOVCLOUD_KNOWN_HOSTS",
              default=None, help="known_hosts with the probe hosts' keys (strict) [env GOVCLOUD_KNOWN_HOSTS].")
@click.option("--ssh-key", type=click.Path(dir_okay=False, path_type=Path), envvar="GOVCLOUD_SSH_KEY", default=None,
              help="Private key for the probe hosts [env GOVCLOUD_SSH_KEY].")
@click.option("--failover-state", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON the failover controller writes [default <root>/.govcloud/failover.json].")
@pass_app
def exporter(app: AppContext, listen: str, journal: Path | None, probe_interval: float, probe_timeout: float,
             no_probes: bool, known_hosts: Path | None, ssh_key: Path | None, failover_state: Path | None) -> int:
    """Serve govcloud's metrics for Prometheus until SIGTERM or Ctrl-C.

    The sites, their probe hosts and ports come from the topology (<root>/inventories/topology.yaml):
    each site's probe host connects to the others' over its own network, reached by SSH."""
    from govcloud.adapters.journal import journal_path
    from govcloud.inventory import load_inventory
    from govcloud.services.exporter import ExporterOptions, serve

    topology = None
    if not no_probes:
        if (app.root / "inventories" / "topology.yaml").is_file():
            topology = load_inventory(app.root).topology  # an invalid one is an input error (exit 2)
        else:
            app.echo(f"warning: no inventories/topology.yaml under {app.root}: no site is probed "
                     "(journal metrics only)", err=True)
    opts = ExporterOptions(listen=listen, journal=journal_path(app.root, journal), probe_interval=probe_interval,
                           probe_timeout=probe_timeout, probes=not no_probes,
                           failover_state=failover_state or app.root / ".govcloud" / "failover.json",
                           topology=topology, known_hosts=known_hosts, ssh_key=ssh_key)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    serve(opts, stop, on_ready=lambda exp: app.echo(f"serving {exp.url} (journal {opts.journal})", err=True))
    return ExitCode.OK
