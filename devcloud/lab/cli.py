"""``devcloud lab up|down|cut|restore|legacy|reconcile|status|exec|ssh-config`` (thin; logic in the modules)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from devcloud.errors import DevcloudError
from devcloud.lab import net
from devcloud.lab.api import Lab
from devcloud.paths import DevcloudPaths

T = TypeVar("T")


def _lab(ctx: click.Context) -> Lab:
    obj = ctx.obj if isinstance(ctx.obj, dict) else {}
    return Lab(obj.get("paths") or DevcloudPaths.from_env())


def _do(ctx: click.Context, fn: Callable[[], T]) -> T:
    """DevcloudError -> one clear line and exit 1 (traceback only with the parent's --debug)."""
    try:
        return fn()
    except DevcloudError as e:
        if isinstance(ctx.obj, dict) and ctx.obj.get("debug"):
            raise
        click.echo(f"devcloud lab: ERROR: {e}", err=True)
        sys.exit(1)


@click.group()
@click.pass_context
def lab(ctx: click.Context) -> None:
    """Network-namespace datacentres gz-a, gz-b, st-a and the legacy machine rooms, with SSH hosts."""
    ctx.ensure_object(dict)


@lab.command()
def install() -> None:
    """apt-install the lab's packages (sshd, ssh, rsync, iproute2, BIND 9, the legacy room's nginx,
    php-fpm and DokuWiki, etcd and PostgreSQL 15) and Patroni's virtualenv if missing; starts no service."""
    from devcloud.lab.install import (
        APP_PACKAGES,
        APT_PACKAGES,
        DNS_PACKAGES,
        HA_PACKAGES,
        PATRONI_VENV,
        PG_PACKAGES,
        ensure_packages,
        ensure_patroni,
    )

    installed = (ensure_packages(APT_PACKAGES + DNS_PACKAGES) + ensure_packages(APP_PACKAGES, recommends=False)
                 + ensure_packages(HA_PACKAGES + PG_PACKAGES, recommends=False))
    if ensure_patroni():
        installed.append(f"patroni ({PATRONI_VENV})")
    click.echo(f"lab: installed {' '.join(installed)}" if installed
               else "lab: sshd, rsync, iproute2, BIND 9, nginx, php-fpm, DokuWiki, etcd, PostgreSQL and Patroni present")


@lab.command()
@click.option("--hosts-per-site", default=1, show_default=True, help="Infra hosts in each of gz-a, gz-b, st-a.")
@click.option("--install/--no-install", "do_install", default=True, help="apt-install missing packages first.")
@click.option("--watch/--no-watch", default=True, show_default=True,
              help="Start (or restart) the reconcile watcher: Nova servers become hosts by themselves.")
@click.pass_context
def up(ctx: click.Context, hosts_per_site: int, do_install: bool, watch: bool) -> None:
    """Create (or complete) the lab: core, site routers, guard route, infra hosts, reconcile watcher."""
    t0 = time.monotonic()
    if do_install:
        from devcloud.lab.install import ensure_packages

        installed = ensure_packages()
        if installed:
            click.echo(f"installed: {' '.join(installed)}")
    lb = _lab(ctx)
    _do(ctx, lambda: lb.up(hosts_per_site, watch=watch, say=click.echo))
    if do_install:  # the service-name servers come with the lab (they need BIND installed)
        from devcloud.lab.dns import LabDns

        _do(ctx, lambda: LabDns(lb).up(say=click.echo))
    st = lb.status()
    click.echo(f"lab up in {time.monotonic() - t0:.2f}s: {len(st['hosts'])} hosts, known_hosts {st['known_hosts']}")
    w = st["watcher"]
    click.echo(f"reconcile watcher: pid {w['pid']}, log {w['log']}" if w["pid"] else "reconcile watcher: not running")
    for h in st["hosts"]:
        click.echo(f"  {h['site']:<7} {h['hostname']:<28} {h['ip']:<15} {h['kind']}")


@lab.command()
@click.pass_context
def down(ctx: click.Context) -> None:
    """Remove every process, namespace, link and route of the lab (idempotent, crash-safe)."""
    rep = _do(ctx, lambda: _lab(ctx).down())
    click.echo(
        f"lab down: {rep.processes} processes, {rep.namespaces} namespaces, {rep.links} root links, "
        f"{rep.routes} routes, {rep.control_masters} ssh control masters"
        + (" (guard route KEPT: sockets into the lab remain)" if rep.guard_kept else "")
    )


@lab.command()
@click.argument("site", type=click.Choice([s.name for s in net.SITES]))
@click.pass_context
def cut(ctx: click.Context, site: str) -> None:
    """Datacentre outage: SITE's uplink goes down (unreachable from other sites and the controller)."""
    _do(ctx, lambda: _lab(ctx).cut(site))
    click.echo(f"{site}: cut")


@lab.command()
@click.argument("site", type=click.Choice([s.name for s in net.SITES]))
@click.pass_context
def restore(ctx: click.Context, site: str) -> None:
    """Bring a cut SITE back."""
    _do(ctx, lambda: _lab(ctx).restore(site))
    click.echo(f"{site}: restored")


@lab.command()
@click.argument("site_a", type=click.Choice([s.name for s in net.SITES]))
@click.argument("site_b", type=click.Choice([s.name for s in net.SITES]))
@click.pass_context
def partition(ctx: click.Context, site_a: str, site_b: str) -> None:
    """Break only the path SITE_A <-> SITE_B (both still reach the third site and the controller)."""
    _do(ctx, lambda: _lab(ctx).partition(site_a, site_b))
    click.echo(f"{site_a}/{site_b}: partitioned")


@lab.command()
@click.argument("sites", nargs=-1, type=click.Choice([s.name for s in net.SITES]))
@click.pass_context
def heal(ctx: click.Context, sites: tuple[str, ...]) -> None:
    """Remove the partition between two SITES (every partition when none are given)."""
    if len(sites) not in (0, 2):
        raise click.UsageError("give two sites, or none for all partitions")
    _do(ctx, lambda: _lab(ctx).heal(*sites) if sites else _lab(ctx).heal())
    click.echo(f"{'/'.join(sites) or 'all partitions'}: healed")


@lab.command()
@click.option("--from", "inventory", required=True, type=click.Path(exists=True, path_type=Path),
              help="Inventory directory (with departments/*.yaml).")
@click.option("--systems", multiple=True, help="Only these system ids (repeatable).")
@click.option("--files", default=8, show_default=True, help="Generated files per data path.")
@click.option("--file-size", default=64 * 1024, show_default=True, help="Bytes per generated file.")
@click.pass_context
def legacy(ctx: click.Context, inventory: Path, systems: tuple[str, ...], files: int, file_size: int) -> None:
    """Legacy hosts for an inventory's systems, each with generated data and the sample app on :8080."""
    from devcloud.lab.legacy import create_legacy

    lb = _lab(ctx)
    t0 = time.monotonic()
    created = _do(ctx, lambda: create_legacy(lb, inventory, systems, files=files, size=file_size))
    from devcloud.lab.dns import LabDns

    names = LabDns(lb)
    if any(s["running"] for s in names.status()):  # fresh legacy hosts: their systems' names start over
        _do(ctx, lambda: names.forget(sorted({h.meta.get("system", "") for h in created} - {""})))
    total = len(lb.hosts(kind="legacy"))
    click.echo(f"legacy: {len(created)} hosts created ({total} in total) in {time.monotonic() - t0:.2f}s")
    for h in created:
        click.echo(f"  {h.hostname:<28} {h.ip:<15} {h.meta.get('system', '')}")


@lab.command("db-hosts")
@click.option("--from", "inventory", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Inventory directory (its topology.yaml names the database hosts under ha.postgres).")
@click.pass_context
def db_hosts_cmd(ctx: click.Context, inventory: Path) -> None:
    """The database hosts a topology's ha.postgres names, each in its site (for govcloud's HA PostgreSQL)."""
    from devcloud.lab.dbhosts import create_db_hosts

    made = _do(ctx, lambda: create_db_hosts(_lab(ctx), inventory))
    for h in made:
        click.echo(f"  {h.hostname:<20} {h.site:<6} {h.ip}")


@lab.command()
@click.option("--clouds-yaml", type=click.Path(path_type=Path), default=None, help="Default: devcloud's clouds.yaml.")
@click.option("--watch", is_flag=True, help="Keep reconciling (what `lab up` starts in the background); logs to stderr.")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(min=0.2), help="Seconds between polls (--watch).")
@click.pass_context
def reconcile(ctx: click.Context, clouds_yaml: Path | None, watch: bool, interval: float) -> None:
    """ACTIVE Nova servers (clouds gz, st) -> lab hosts; deleted servers -> hosts removed."""
    from devcloud.lab.reconcile import reconcile as do_reconcile
    from devcloud.lab.reconcile import run_watch

    lb = _lab(ctx)
    if watch:
        sys.exit(run_watch(lb, clouds_yaml=clouds_yaml, interval=interval))
    res = _do(ctx, lambda: do_reconcile(lb, clouds_yaml=clouds_yaml))
    click.echo(
        f"reconcile: {len(res.created)} created, {len(res.replaced)} replaced, {len(res.removed)} removed, "
        f"{len(res.kept)} unchanged"
    )
    for s in res.skipped:
        click.echo(f"  skipped: {s}")


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Sites (cut or not), hosts, guard route."""
    st: dict[str, Any] = _lab(ctx).status()
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    click.echo(f"lab: {'UP' if st['up'] else 'down'}  range {st['lab_range']}  guard route: {st['guard_route']}")
    w = st["watcher"]
    click.echo(f"  reconcile watcher: {'pid ' + str(w['pid']) if w['pid'] else 'NOT running'}  log {w['log']}")
    for name, s in st["sites"].items():
        state = "CUT" if s["cut"] else ("up" if s["present"] else "absent")
        click.echo(f"  site {name:<7} {s['subnet']:<16} {state}")
    for p in st["partitions"]:
        click.echo(f"  partition {p}")
    for h in st["hosts"]:
        run = "running" if h["running"] else "STOPPED"
        click.echo(f"  {h['site']:<7} {h['hostname']:<28} {h['ip']:<15} {h['kind']:<7} {run}")


@lab.command(name="add-host")
@click.argument("name")
@click.option("--site", required=True, type=click.Choice([s.name for s in net.SITES]))
@click.option("--ip", default=None, help="Default: next free address of the site subnet (from .11).")
@click.pass_context
def add_host(ctx: click.Context, name: str, site: str, ip: str | None) -> None:
    """Add an infrastructure host (e.g. a PostgreSQL or probe host) with the controller key authorised."""
    h = _do(ctx, lambda: _lab(ctx).add_host(name, site, ip=ip))
    click.echo(f"{h.hostname} {h.ip} ({h.site})")


@lab.command(name="rm-host")
@click.argument("name")
@click.pass_context
def rm_host(ctx: click.Context, name: str) -> None:
    """Remove a host: its processes, namespace, files and known_hosts line."""
    lb = _lab(ctx)
    gone = _do(ctx, lambda: lb.remove_host(lb.host(name).key))
    click.echo(f"{name}: {'removed' if gone else 'not present'}")


@lab.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("host")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx: click.Context, host: str, argv: tuple[str, ...]) -> None:
    """Run a command inside HOST (its netns, /srv, hostname) without ssh: `lab exec gz-a-h1 -- hostname`."""
    r = _do(ctx, lambda: _lab(ctx).exec(host, list(argv)))
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    sys.exit(r.returncode)


@lab.command(name="ssh-args")
@click.argument("host")
@click.pass_context
def ssh_args(ctx: click.Context, host: str) -> None:
    """Print the strict OpenSSH command line for HOST (controller key, lab known_hosts)."""
    click.echo(" ".join(_do(ctx, lambda: _lab(ctx).ssh_argv(host))))


@lab.group(name="pg")
def pg_group() -> None:
    """The lab's PostgreSQL: primary gz-a, synchronous standby gz-b, asynchronous standby st-a."""


@pg_group.command(name="up")
@click.pass_context
def pg_up(ctx: click.Context) -> None:
    """Create and start the three members (idempotent; a running cluster is left as it is)."""
    from devcloud.lab.pg import LabPostgres, describe

    t0 = time.monotonic()
    st = _do(ctx, lambda: LabPostgres(_lab(ctx)).up(say=click.echo))
    click.echo(f"lab pg up in {time.monotonic() - t0:.2f}s: {describe(st)}")
    _print_pg(st)


@pg_group.command(name="down")
@click.option("--purge", is_flag=True, help="Also delete the members' data directories.")
@click.pass_context
def pg_down(ctx: click.Context, purge: bool) -> None:
    """Stop every member (fast shutdown); idempotent."""
    from devcloud.lab.pg import LabPostgres

    stopped = _do(ctx, lambda: LabPostgres(_lab(ctx)).down(purge=purge))
    click.echo(f"lab pg down: stopped {', '.join(stopped) or 'nothing'}" + (" (data purged)" if purge else ""))


@pg_group.command(name="status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def pg_status(ctx: click.Context, as_json: bool) -> None:
    """Members (host, address, role, markers) and the primary's replication rows."""
    from devcloud.lab.pg import LabPostgres

    st = _do(ctx, lambda: LabPostgres(_lab(ctx)).status())
    if as_json:
        click.echo(json.dumps(st, indent=2))
    else:
        _print_pg(st)


def _print_pg(st: dict[str, Any]) -> None:
    for m in st["members"]:
        marks = "".join([f" epoch={m['epoch']}" if m.get("epoch") else "",
                         f" FENCED@{m['fenced_epoch']}" if m.get("fenced_epoch") is not None else ""])
        click.echo(f"  {m['site']:<6} {m['host']:<8} {m.get('ip')!s:<15} {m['role']:<8}{marks}")
    for r in st["replication"]:
        click.echo(f"    -> {r['name']:<6} {r['state']:<10} {r['sync_state']:<6} lag {r['lag_bytes']} B")


@lab.group(name="dns")
def dns_group() -> None:
    """The lab's service-name servers: one BIND 9 primary per site (ns-gza, ns-gzb, ns-sta)."""


@dns_group.command(name="up")
@click.pass_context
def dns_up(ctx: click.Context) -> None:
    """Install BIND if missing, generate the TSIG key once, start the three servers (idempotent)."""
    from devcloud.lab.dns import LabDns

    t0 = time.monotonic()
    dns = LabDns(_lab(ctx))
    st = _do(ctx, lambda: dns.up(say=click.echo))
    click.echo(f"lab dns up in {time.monotonic() - t0:.2f}s: zone svc.gdgov.internal., key {dns.key_path} (0600)")
    _print_dns(st)


@dns_group.command(name="down")
@click.option("--purge", is_flag=True, help="Also remove the server hosts and their zone data.")
@click.pass_context
def dns_down(ctx: click.Context, purge: bool) -> None:
    """Stop every server by the PID it wrote; idempotent."""
    from devcloud.lab.dns import LabDns

    stopped = _do(ctx, lambda: LabDns(_lab(ctx)).down(purge=purge))
    click.echo(f"lab dns down: stopped {', '.join(stopped) or 'nothing'}" + (" (hosts removed)" if purge else ""))


@dns_group.command(name="status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dns_status(ctx: click.Context, as_json: bool) -> None:
    """Each server: host, address, running, answering for the zone, serving clients (its guard's
    decision and why). Exit 1 unless all answer and serve."""
    from devcloud.lab.dns import LabDns

    st = _do(ctx, lambda: LabDns(_lab(ctx)).status())
    if as_json:
        click.echo(json.dumps(st, indent=2))
    else:
        _print_dns(st)
    if not all(s["answering"] and s["serving_clients"] for s in st):
        sys.exit(1)


def _print_dns(st: list[dict[str, Any]]) -> None:
    for s in st:
        state = ("serving" if s["serving_clients"] else "WITHDRAWN") if s["answering"] else (
            "running" if s["running"] else "STOPPED")
        guard = f"guard: {s['guard_reason'] or 'running'}" if s["guard"] else "guard: NOT RUNNING"
        click.echo(f"  {s['site']:<6} {s['host']:<8} {s['ip']:<15} {state:<9} {guard}")
