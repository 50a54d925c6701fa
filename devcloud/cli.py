"""``devcloud install|up|down|status`` (+ ``devcloud lab ...`` when the lab is present). Thin: logic lives in cloud/."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from devcloud.errors import DevcloudError
from devcloud.paths import DevcloudPaths


def _say(msg: str) -> None:
    click.echo(msg, err=False)


def _run(ctx: click.Context, fn: Callable[[], Any]) -> Any:
    """Turn DevcloudError (and, without --debug, any error) into a message and exit 1."""
    try:
        return fn()
    except DevcloudError as e:
        if ctx.obj.get("debug"):
            raise
        click.echo(f"devcloud: ERROR: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("devcloud: interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the brief: no traceback unless --debug
        if ctx.obj.get("debug"):
            raise
        click.echo(f"devcloud: ERROR: {type(e).__name__}: {e} (rerun with --debug for a traceback)", err=True)
        sys.exit(1)


@click.group()
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """devcloud: a real two-region OpenStack (and a site lab) on this machine, loopback only."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["paths"] = DevcloudPaths.from_env()


@main.command()
@click.pass_context
def install(ctx: click.Context) -> None:
    """apt-install MariaDB/RabbitMQ if missing; create the OpenStack venv if missing or outdated."""
    from devcloud.cloud.install import install as do_install

    secs = _run(ctx, lambda: do_install(ctx.obj["paths"], _say))
    _say(f"devcloud: MariaDB, RabbitMQ and the OpenStack venv ready ({secs:.1f} s)")


@main.command()
@click.option("--install/--no-install", "do_install", default=True, help="Install missing prerequisites first.")
@click.option("--no-cache", is_flag=True, help="Run all schema migrations; neither use nor write the snapshot.")
@click.pass_context
def up(ctx: click.Context, do_install: bool, no_cache: bool) -> None:
    """Start a fresh cloud (no-op if it is already up and healthy); print the time to READY."""
    from devcloud.cloud.stack import up as do_up

    t0 = time.monotonic()
    started = _run(ctx, lambda: do_up(ctx.obj["paths"], _say, install=do_install, use_cache=not no_cache))
    if started:
        _say(f"READY in {time.monotonic() - t0:.1f}s; OS_CLIENT_CONFIG_FILE={ctx.obj['paths'].clouds_yaml} (clouds gz, st, devcloud-admin)")
    else:
        _say(f"already READY; OS_CLIENT_CONFIG_FILE={ctx.obj['paths'].clouds_yaml}")


@main.command()
@click.pass_context
def down(ctx: click.Context) -> None:
    """Stop exactly the processes `up` recorded."""
    from devcloud.cloud.stack import down as do_down

    _run(ctx, lambda: do_down(ctx.obj["paths"], _say))


@main.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Show each service (pid, port, healthy); exit 1 unless the cloud is READY."""
    from devcloud.cloud.stack import status as do_status

    report = _run(ctx, lambda: do_status(ctx.obj["paths"]))
    _say(f"{'service':<26} {'pid':>7} {'port':>6} {'RSS MiB':>8}  healthy")
    for row in report.rows:
        _say(f"{row.name:<26} {row.pid or '-':>7} {row.port or '-':>6} {row.rss_mib:>8.0f}  {'yes' if row.healthy else 'NO'}")
    _say(f"{'total':<26} {'':>7} {'':>6} {sum(r.rss_mib for r in report.rows):>8.0f}")
    _say("READY" if report.ready else f"NOT READY: {report.reason}")
    if not report.ready:
        sys.exit(1)


try:  # the site lab lives in devcloud/lab (optional until it exists)
    from devcloud.lab.cli import lab as _lab

    main.add_command(_lab)
except ImportError:
    pass


@main.group()
@click.option("--instance", default="default", show_default=True,
              help="Which stack: the demo's is 'default'; another (a test's while a demo's runs) has its own "
                   "PID files, data and --*-listen addresses.")
@click.pass_context
def monitor(ctx: click.Context, instance: str) -> None:
    """The demo's monitoring: `govcloud exporter` + Prometheus on 127.0.0.1 (9477, 9090)."""
    ctx.obj["monitor_instance"] = instance


@monitor.command("up")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="The govcloud project root whose journal and failover state the exporter reads.")
@click.option("--exporter-listen", default="127.0.0.1:9477", show_default=True, help="The exporter's address.")
@click.option("--prometheus-listen", default="127.0.0.1:9090", show_default=True, help="Prometheus's address.")
@click.pass_context
def monitor_up(ctx: click.Context, root: Path, exporter_listen: str, prometheus_listen: str) -> None:
    """Start the exporter and Prometheus (idempotent); print where to look."""
    from devcloud import monitor as m

    repo = Path(__file__).resolve().parents[1]
    listen = m.Listen(exporter=exporter_listen, prometheus=prometheus_listen)
    st = _run(ctx, lambda: m.up(ctx.obj["paths"], root.resolve(), repo, say=_say,
                                instance=ctx.obj["monitor_instance"], listen=listen))
    _say(f"exporter   pid {st.exporter_pid}  {st.exporter_url}")
    _say(f"prometheus pid {st.prometheus_pid}  {st.prometheus_url}  (alerts: {st.prometheus_url}/alerts)")


@monitor.command("down")
@click.pass_context
def monitor_down(ctx: click.Context) -> None:
    """Stop exactly the processes `monitor up` recorded."""
    from devcloud import monitor as m

    stopped = _run(ctx, lambda: m.down(ctx.obj["paths"], ctx.obj["monitor_instance"]))
    _say(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@monitor.command("status")
@click.pass_context
def monitor_status(ctx: click.Context) -> None:
    """PIDs and URLs; exit 1 unless both run."""
    from devcloud import monitor as m

    st = _run(ctx, lambda: m.status(ctx.obj["paths"], ctx.obj["monitor_instance"]))
    _say(f"exporter   {st.exporter_pid or 'stopped'}  {st.exporter_url}")
    _say(f"prometheus {st.prometheus_pid or 'stopped'}  {st.prometheus_url}")
    if not (st.exporter_pid and st.prometheus_pid):
        sys.exit(1)
