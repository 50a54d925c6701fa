"""`govcloud dns status`: the names govcloud manages, as every server answers them."""

from __future__ import annotations

import os
from pathlib import Path

import click

from govcloud.cli.context import AppContext, pass_app
from govcloud.errors import ExitCode

key_option = click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                          envvar="GOVCLOUD_DNS_KEY",
                          help="TSIG key [env GOVCLOUD_DNS_KEY; default <state dir>/dns/tsig.key].")


@click.group()
def dns() -> None:
    """Service names in the zone: what each site's server answers."""


@dns.command("status")
@key_option
@pass_app
def status_cmd(app: AppContext, key_file: Path | None) -> int:
    """Each managed record (address, TTL, whether all servers agree) and each server's generation.

    Exit 0 when every server answers and agrees; 1 otherwise (a server down, stale or disagreeing).
    """
    from govcloud.inventory import load_inventory
    from govcloud.services.names import records_status
    from govcloud.services.names_app import managed_services, name_service

    inventory = load_inventory(app.root)
    names = name_service(inventory, key_file=key_file)
    servers = names.status()
    records = records_status(names, managed_services(inventory))
    healthy = all(s.freshness.value == "current" for s in servers) and all(r.agree for r in records)
    if app.json:
        app.emit_json({"zone": names.config.zone, "ok": healthy,
                       "servers": [{"site": s.site, "address": s.address, "generation": s.generation,
                                    "freshness": s.freshness.value, "error": s.error} for s in servers],
                       "records": [r.as_dict() for r in records]})
    else:
        app.echo(f"zone {names.config.zone}")
        for s in servers:
            gen = "-" if s.generation is None else str(s.generation)
            app.echo(f"  server {s.site:<6} {s.address:<15} generation {gen:<5} {s.freshness.value}"
                     + (f" ({s.error})" if s.error else ""))
        for r in records:
            where = "" if r.agree else "  DISAGREE: " + ", ".join(
                f"{site}={'/'.join(a) if a else ('-' if a is None else 'absent')}" for site, a in r.answers.items())
            app.echo(f"  {r.name:<44} {r.address or '?':<15} ttl {r.ttl:<5}{'all agree' if r.agree else ''}{where}")
        if not records:
            app.echo("  no names published yet")
    return ExitCode.OK if healthy else ExitCode.FAILURE


@dns.command("guard")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True,
              help="The guard's JSON configuration (devcloud lab dns up writes one per server).")
@click.option("--pid-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write this process's PID here (the lab stops the guard by it).")
@pass_app
def guard_cmd(app: AppContext, config_file: Path, pid_file: Path | None) -> int:
    """Run next to one site's server: withdraw it from clients while it may be stale, repair it, serve again.

    Runs until SIGTERM. Property (c) of docs/dns.md: a site that comes back never hands out an old address.
    """
    import signal
    import threading

    from govcloud.adapters.dns import DnsClient, load_key
    from govcloud.services.dns_guard import AclFileAccess, Guard, load_guard_config, tcp_reachable

    config = load_guard_config(config_file)
    client = DnsClient(load_key(config.key_file), query_timeout=config.probe_timeout_s)
    witness = config.witness

    def witness_ok() -> bool:
        return witness is not None and tcp_reachable(witness[0], witness[1], config.probe_timeout_s)

    guard = Guard(config, client, AclFileAccess(config.acl_file, config.named_pid_file), witness_ok)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if pid_file is not None:
        pid_file.write_text(f"{os.getpid()}\n")
    app.echo(f"guard of {config.site}: watching {', '.join(s.site for s in config.peers)}"
             + (f" and the witness {witness[0]}:{witness[1]}" if witness else ""), err=True)
    try:
        guard.run(stop)
    finally:
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
    return ExitCode.OK
