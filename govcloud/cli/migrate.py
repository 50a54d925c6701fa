"""`govcloud migrate`: run a wave, watch it, resume it, cut over, roll back, read a system's log.

Thin commands over ``govcloud.services.migration``; exit codes: 0 every system done (or waiting for its
manual cutover), 1 a system failed or was rolled back (each named), 2 invalid input, 4 cutover
refused outside the window (or decommission not confirmed), 130 interrupted.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from govcloud.cli.context import AppContext, pass_app
from govcloud.errors import ExitCode, InvalidInputError, RefusedError

# ------------------------------------------------------------------ progress

class PlainReporter:
    """One line per event (stdout is not a terminal: logs, CI)."""

    def __init__(self, app: AppContext) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._last: dict[str, str] = {}
        self.t0 = time.monotonic()

    def _line(self, text: str) -> None:
        with self._lock:  # with --output json, stdout is the result document: progress goes to stderr
            self.app.echo(f"[{time.monotonic() - self.t0:7.1f}s] {text}", err=self.app.json)

    def phase(self, text: str) -> None:
        self._line(f"== {text}")

    def step(self, system: str, step: str, *, total: int | None = None, done: int | None = None) -> None:
        if total is None and self._last.get(system) != step:
            self._last[system] = step
            self._line(f"{system}: {step}")

    def finished(self, system: str, state: str, note: str = "") -> None:
        self._line(f"{system}: {state}" + (f" ({note})" if note else ""))

    def stop(self) -> None:
        return None


class RichReporter:
    """Live progress: a row per system (step, bytes, rate, ETA) and one for the wave (done/failed)."""

    def __init__(self, app: AppContext, wave: int, systems: int) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 TimeRemainingColumn(), TimeElapsedColumn(), console=app.console(), transient=False)
        self.wave = wave
        self.total = systems
        self.done = self.failed = 0
        self.tasks: dict[str, Any] = {}
        self.steps: dict[str, str] = {}
        self._lock = threading.Lock()
        self.wave_task = self.progress.add_task(self._wave_text(""), total=systems)
        self.progress.start()

    def _wave_text(self, phase: str) -> str:
        return f"[bold]wave {self.wave}[/]: {self.done} done, {self.failed} failed of {self.total} {phase}"

    def _task(self, system: str) -> Any:
        with self._lock:
            if system not in self.tasks:
                self.tasks[system] = self.progress.add_task(system, total=None)
            return self.tasks[system]

    def phase(self, text: str) -> None:
        self.progress.update(self.wave_task, description=self._wave_text(f"- {text}"))

    def step(self, system: str, step: str, *, total: int | None = None, done: int | None = None) -> None:
        t = self._task(system)
        if total is None or self.steps.get(system) != step:
            self.steps[system] = step
            self.progress.reset(t, total=total, completed=done or 0, description=f"{system}: {step}")
        else:
            self.progress.update(t, total=total, completed=done or 0)

    def finished(self, system: str, state: str, note: str = "") -> None:
        t = self._task(system)
        with self._lock:
            if state == "done" or (state == "synced" and note.startswith("manual")):
                self.done += 1
            else:
                self.failed += 1
        colour = "green" if state == "done" else "yellow" if state == "synced" else "red"
        self.progress.update(t, description=f"{system}: [{colour}]{state}[/]" + (f" ({note[:80]})" if note else ""))
        self.progress.update(self.wave_task, completed=self.done + self.failed, description=self._wave_text(""))

    def stop(self) -> None:
        self.progress.stop()


def console(app: AppContext) -> Any:
    """The app's console; wide enough for the tables when stdout is a file or a pipe."""
    from rich.console import Console

    if sys.stdout.isatty():
        return app.console()
    return Console(highlight=False, soft_wrap=True, file=sys.stdout, width=200)


def reporter_for(app: AppContext, wave: int, systems: int) -> PlainReporter | RichReporter:
    if app.json or app.verbosity < 0 or not sys.stdout.isatty():
        return PlainReporter(app)
    return RichReporter(app, wave, systems)


# ------------------------------------------------------------------ helpers

def plan_path(app: AppContext, plan: str) -> Path:
    """PLAN is a plan file, or a plan name under migration_plans/ (``services.planning.resolve_plan``)."""
    from govcloud.services.planning import resolve_plan

    return resolve_plan(app.root, plan)


def _plan_warnings(app: AppContext, summary: Any) -> None:
    """What the plan check warned about (a stale plan run by --allow-stale-plan), on stderr."""
    app.diagnostics(list(summary.plan_warnings))


def _common(f: Any) -> Any:
    opts = [
        click.option("--journal", type=click.Path(dir_okay=False, path_type=Path), envvar="GOVCLOUD_JOURNAL", default=None,
                     help="Journal file [env GOVCLOUD_JOURNAL; default <root>/.govcloud/journal.sqlite]."),
        click.option("--dns-key", type=click.Path(dir_okay=False, path_type=Path), envvar="GOVCLOUD_DNS_KEY",
                     default=None, help="TSIG key file for the zone's servers, 0600 [env GOVCLOUD_DNS_KEY; default "
                                        "<state dir>/dns/tsig.key]."),
        click.option("--clouds-yaml", type=click.Path(dir_okay=False, path_type=Path), envvar="OS_CLIENT_CONFIG_FILE",
                     default=None, help="clouds.yaml [env OS_CLIENT_CONFIG_FILE]."),
        click.option("--outside-window", is_flag=True, help="Allow a cutover outside the wave's window (audited)."),
        click.option("--control-path-dir", type=click.Path(file_okay=False, path_type=Path),
                     envvar="GOVCLOUD_SSH_CONTROL_PATH_DIR", default=None, help="Ansible's ssh ControlPath directory."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


_stale_option = click.option(
    "--allow-stale-plan", is_flag=True,
    help="Run a plan made from other inventories (its inventory_digest differs; audited). A plan that breaks a "
         "constraint is never run.")


def _keys(f: Any) -> Any:
    opts = [
        click.option("--known-hosts", type=click.Path(dir_okay=False, path_type=Path), envvar="GOVCLOUD_KNOWN_HOSTS",
                     default=None, help="known_hosts with the legacy hosts' and servers' keys (strict) [env GOVCLOUD_KNOWN_HOSTS]."),
        click.option("--ssh-key", type=click.Path(dir_okay=False, path_type=Path), envvar="GOVCLOUD_SSH_KEY", default=None,
                     help="Private key for the legacy hosts (default: the operator key)."),
        click.option("--target-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Private key for the new servers (default: the operator key in the department keypairs)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def render_summary(app: AppContext, summary: Any) -> int:
    if app.json:
        app.emit_json({"run_id": summary.run_id, "plan": summary.plan, "wave": summary.wave, "seconds": round(summary.seconds, 1),
                       "ok": summary.ok, "refused": summary.refused,
                       "systems": [r.__dict__ for r in summary.results]})
    else:
        from rich.table import Table

        table = Table(title=f"migrate {summary.plan} wave {summary.wave} ({summary.run_id}): {summary.seconds:.1f}s")
        for col in ("system", "state", "downtime", "bytes sent", "note"):
            table.add_column(col)
        for r in summary.results:
            table.add_row(r.system, r.state, f"{r.downtime:.2f}s" if r.downtime is not None else "-", f"{r.bytes_sent:,}",
                          r.note[:100])
        console(app).print(table)
    if summary.ok:
        return ExitCode.OK
    failed = [r.system for r in summary.results if r.system not in summary.refused and r.state != "done"
              and not r.note.startswith("manual")]
    if summary.refused and not failed:
        notes = {r.system: r.note for r in summary.results}
        raise RefusedError("; ".join(notes.get(s) or f"{s}: cutover refused outside the window" for s in summary.refused),
                           hint="run inside the window, or add --outside-window (audited)")
    for r in summary.results:
        if r.system in failed:
            click.echo(f"error: {r.system}: {r.state}: {r.note}", err=True)
    return ExitCode.FAILURE


def _run_with_progress(app: AppContext, fn: Any, options: Any, systems: int) -> Any:
    rep = reporter_for(app, options.wave, systems)
    try:
        return fn(app.root, options, rep)
    finally:
        rep.stop()


# ------------------------------------------------------------------ commands

@click.group()
def migrate() -> None:
    """Migrate legacy systems wave by wave (journalled, resumable, audited)."""


@migrate.command("run")
@click.argument("plan")
@click.option("--wave", type=click.IntRange(min=1), required=True)
@click.option("--systems", multiple=True, metavar="ID[,ID...]", help="Only these systems of the wave (repeatable).")
@click.option("--concurrency", type=click.IntRange(min=1, max=64), default=4, show_default=True,
              help="At most this many systems syncing / cutting over at a time.")
@click.option("--dry-run", is_flag=True, help="Print each system's step plan; touch nothing.")
@click.option("--manual-cutover", is_flag=True, help="Stop after the warm sync; `migrate cutover SYSTEM` continues.")
@click.option("--image", default=None, envvar="GOVCLOUD_IMAGE", metavar="NAME",
              help="Boot every target from this Glance image instead of its region's image for its host's OS "
                   "(the topology's images).")
@click.option("--timezone", default="Asia/Shanghai", show_default=True, help="The time zone windows are written in.")
@_stale_option
@_keys
@_common
@pass_app
def run_cmd(app: AppContext, plan: str, wave: int, systems: tuple[str, ...], concurrency: int, dry_run: bool,
            manual_cutover: bool, image: str | None, timezone: str, allow_stale_plan: bool, known_hosts: Path | None,
            ssh_key: Path | None, target_key: Path | None, journal: Path | None, dns_key: Path | None,
            clouds_yaml: Path | None, outside_window: bool, control_path_dir: Path | None) -> int:
    """Migrate wave N of PLAN (a plan file or a name under migration_plans/).

    The plan is checked first, as `govcloud plan check` does (dry run included): a plan that breaks a
    constraint is refused (exit 2), one made from other inventories too (exit 4) unless
    --allow-stale-plan is given.
    """
    from govcloud.services.migration import MigrateOptions, run
    from govcloud.services.migration import dry_run as step_plans

    ids = tuple(x for s in systems for x in s.split(",") if x)
    if known_hosts is None and not dry_run:
        raise InvalidInputError("--known-hosts (or GOVCLOUD_KNOWN_HOSTS) is required",
                                hint="pass the known_hosts holding the legacy hosts' and servers' keys")
    options = MigrateOptions(plan_file=plan_path(app, plan), wave=wave, systems=ids, concurrency=concurrency,
                             dry_run=dry_run, manual_cutover=manual_cutover, outside_window=outside_window,
                             known_hosts=known_hosts or Path("/nonexistent"), ssh_key=ssh_key, target_key=target_key,
                             journal=journal, dns_key=dns_key, clouds_yaml=clouds_yaml, image=image,
                             timezone=timezone, control_path_dir=control_path_dir, allow_stale_plan=allow_stale_plan)
    if dry_run:
        summary = step_plans(app.root, options)
        _plan_warnings(app, summary)
        if app.json:
            app.emit_json([{"system": p.system, "state": p.state.value, "steps": [s.value for s in p.steps],
                            "note": p.note, "servers": [{"name": t.name, "site": t.site, "vcpus": t.vcpus,
                                                         "ram_mb": t.ram_mb} for t in summary.targets[p.system]]}
                           for p in summary.dry_run])
            return ExitCode.OK
        for p in summary.dry_run:
            servers = ", ".join(f"{t.name}@{t.site}" for t in summary.targets[p.system])
            app.echo(f"{p.system} [{p.state.value}]: {' -> '.join(s.value for s in p.steps) or 'nothing to do'}"
                     + (f"  ({p.note})" if p.note else ""))
            app.echo(f"    servers: {servers}")
        return ExitCode.OK
    summary = _run_with_progress(app, run, options, len(options.systems) or 50)
    _plan_warnings(app, summary)
    return render_summary(app, summary)


@migrate.command("resume")
@click.argument("plan", required=False)
@_stale_option
@_keys
@_common
@pass_app
def resume_cmd(app: AppContext, plan: str | None, allow_stale_plan: bool, known_hosts: Path | None,
               ssh_key: Path | None, target_key: Path | None, journal: Path | None, dns_key: Path | None,
               clouds_yaml: Path | None, outside_window: bool, control_path_dir: Path | None) -> int:
    """Continue the newest unfinished run (after a crash, kill or failure) from where its journal says.

    Its plan is checked again, as `migrate run` checks it (--allow-stale-plan as there; a run that
    was given it passes it on)."""
    from govcloud.services.migration import resume_options, run

    options = resume_options(app.root, journal, plan, known_hosts=known_hosts, ssh_key=ssh_key, target_key=target_key,
                             dns_key=dns_key, clouds_yaml=clouds_yaml, outside_window=outside_window or None,
                             control_path_dir=control_path_dir, allow_stale_plan=allow_stale_plan or None)
    summary = _run_with_progress(app, run, options, len(options.systems) or 50)
    _plan_warnings(app, summary)
    return render_summary(app, summary)


@migrate.command("cutover")
@click.argument("system")
@_keys
@_common
@pass_app
def cutover_cmd(app: AppContext, system: str, known_hosts: Path | None, ssh_key: Path | None, target_key: Path | None,
                journal: Path | None, dns_key: Path | None, clouds_yaml: Path | None, outside_window: bool,
                control_path_dir: Path | None) -> int:
    """Cut SYSTEM over (it waits at synced after a --manual-cutover run): stop, final delta, switch, verify."""
    from govcloud.services.migration import cutover_one, system_options

    options = system_options(app.root, journal, system, "cutover", known_hosts=known_hosts, ssh_key=ssh_key,
                             target_key=target_key, dns_key=dns_key, clouds_yaml=clouds_yaml,
                             outside_window=outside_window or None, control_path_dir=control_path_dir)
    return render_summary(app, _run_with_progress(app, cutover_one, options, 1))


@migrate.command("rollback")
@click.argument("system")
@_keys
@_common
@pass_app
def rollback_cmd(app: AppContext, system: str, known_hosts: Path | None, ssh_key: Path | None, target_key: Path | None,
                 journal: Path | None, dns_key: Path | None, clouds_yaml: Path | None, outside_window: bool,
                 control_path_dir: Path | None) -> int:
    """Put SYSTEM back on its legacy hosts: legacy app started, endpoint back, target kept for inspection."""
    from govcloud.services.migration import rollback_one, system_options

    options = system_options(app.root, journal, system, "rollback", known_hosts=known_hosts, ssh_key=ssh_key,
                             target_key=target_key, dns_key=dns_key, clouds_yaml=clouds_yaml)
    summary = _run_with_progress(app, rollback_one, options, 1)
    render_summary(app, summary)
    return ExitCode.OK if summary.results and summary.results[0].state == "rolled_back" else ExitCode.FAILURE


@migrate.command("decommission")
@click.argument("system")
@click.option("--yes", is_flag=True, help="Do not ask (the legacy data and app are deleted).")
@_keys
@click.option("--journal", type=click.Path(dir_okay=False, path_type=Path), envvar="GOVCLOUD_JOURNAL", default=None)
@pass_app
def decommission_cmd(app: AppContext, system: str, yes: bool, known_hosts: Path | None, ssh_key: Path | None,
                     target_key: Path | None, journal: Path | None) -> int:
    """Delete the legacy copy of a migrated (done) SYSTEM: its data paths and app directory on the legacy hosts."""
    from govcloud.services.migration import decommission, system_options

    if not yes and (not sys.stdin.isatty()
                    or not click.confirm(f"Delete {system}'s data and application on its legacy hosts?", default=False)):
        raise RefusedError(f"decommission of {system} not confirmed", hint="pass --yes to skip the question")
    options = system_options(app.root, journal, system, "decommission", known_hosts=known_hosts, ssh_key=ssh_key,
                             target_key=target_key)
    removed = decommission(app.root, options)
    if app.json:
        app.emit_json({"system": system, "removed": removed})
    else:
        for r in removed:
            app.echo(f"removed {r}")
    return ExitCode.OK


@migrate.command("status")
@click.argument("plan", required=False)
@click.option("--journal", type=click.Path(dir_okay=False, path_type=Path), envvar="GOVCLOUD_JOURNAL", default=None)
@pass_app
def status_cmd(app: AppContext, plan: str | None, journal: Path | None) -> int:
    """Each system's state, bytes sent and measured downtime (table, or --output json). Read-only.
    Exit 2: no journal, or PLAN is not in it."""
    from govcloud.services.migration import status_rows

    rows = status_rows(app.root, journal, plan)
    if app.json:
        app.emit_json(rows)
        return ExitCode.OK
    from rich.table import Table

    table = Table(title="migration status")
    for col in ("plan", "wave", "system", "state", "servers", "bytes sent", "downtime", "updated", "error"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["plan"], str(r["wave"]), r["system"], r["state"], str(r["servers"]), f"{r['bytes_sent']:,}",
                      f"{r['downtime_seconds']:.2f}s" if r["downtime_seconds"] is not None else "-", r["updated_at"][:19],
                      (r["error"] or "")[:80])
    console(app).print(table)
    return ExitCode.OK


@migrate.command("log")
@click.argument("system")
@click.option("--journal", type=click.Path(dir_okay=False, path_type=Path), envvar="GOVCLOUD_JOURNAL", default=None)
@pass_app
def log_cmd(app: AppContext, system: str, journal: Path | None) -> int:
    """SYSTEM's journal: every intent and outcome, and the facts each step measured. Read-only.
    Exit 2: no journal, or SYSTEM is not in it."""
    from govcloud.services.migration import system_log

    doc = system_log(app.root, journal, system)
    if app.json:
        app.emit_json(doc)
        return ExitCode.OK
    for t in doc["transitions"]:
        arrow = f"{t['from_state']} -> {t['to_state']}" if t["phase"] == "outcome" else f"{t['from_state']}"
        app.echo(f"{t['at']} {t['run_id']} {t['phase']:7} {t['action']:10} {arrow} {t['result']} "
                 f"{json.dumps(t['detail'], ensure_ascii=False, sort_keys=True)[:200]}")
    for f in doc["facts"]:
        app.echo(f"{f['at']} {f['run_id']} fact {f['step']}.{f['key']} = {json.dumps(f['value'], ensure_ascii=False)[:200]}")
    return ExitCode.OK
