"""`govcloud failover status|execute|drill|failback`: three-site quorum failover of the replicated services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from govcloud.cli.context import AppContext, pass_app
from govcloud.errors import ExitCode


def _policy_options(f: Any) -> Any:
    f = click.option("--interval", type=click.FloatRange(min=0.1), default=0.5, show_default=True,
                     help="Seconds between controller cycles (probe round + decision).")(f)
    f = click.option("--max-gap", type=click.FloatRange(min=0.1), default=1.5, show_default=True,
                     help="Failing probes further apart than this do not make one outage.")(f)
    f = click.option("--lease", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
                     help="Seconds an isolated primary keeps accepting writes.")(f)
    f = click.option("--grace", type=click.FloatRange(min=0.1), default=4.0, show_default=True,
                     help="Seconds a quorum must see the primary's site down before a failover.")(f)
    return f


def _policy(grace: float, lease: float, max_gap: float) -> Any:
    from govcloud.failover.model import Policy

    return Policy(grace_s=grace, lease_s=lease, max_gap_s=max_gap, max_age_s=max(max_gap + 1.0, 2.5),
                  witness="controller")


def _parts(app: AppContext, grace: float, lease: float, max_gap: float, *, enforce_lease: bool = False) -> Any:
    from govcloud.services.failover import Controller, Journal
    from govcloud.services.failover_lab import LabBackend, lab_names

    gc = app.root / ".govcloud"
    names = lab_names()
    journal = Journal(gc / "failover.db")
    ctl = Controller(LabBackend(), journal, _policy(grace, lease, max_gap), publish_path=gc / "failover.json",
                     enforce_lease=enforce_lease, endpoints=names)
    return ctl, journal, names


@click.group("failover")
def failover() -> None:
    """Quorum failover of the lab's PostgreSQL (primary gz-a, sync standby gz-b, async standby st-a)."""


@failover.command("status")
@click.option("--sample", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds of probe rounds to decide from (a loss needs the grace period to be declared).")
@_policy_options
@pass_app
def status(app: AppContext, sample: float, grace: float, lease: float, max_gap: float, interval: float) -> int:
    """Members, roles, lag, the endpoint, and the current decision with its reason (also published)."""
    from govcloud.services.failover import observe, status_payload

    ctl, journal, smap = _parts(app, grace, lease, max_gap)
    try:
        observe(ctl, sample, interval)
        payload = status_payload(ctl, smap)
    finally:
        journal.close()
    if app.json:
        app.emit_json(payload)
        return ExitCode.OK
    app.echo(f"{payload['service']}: primary {payload['primary']} at epoch {payload['epoch']}"
             + f" (next promotion at epoch {payload['next_epoch']})"
             + (f", fenced {', '.join(payload['fenced'])}" if payload["fenced"] else "")
             + ("" if payload["healthy"] else "  (DEGRADED: not every member streams)"))
    app.echo(f"  {'site':<6} {'role':<8} {'state':<10} {'sync':<9} {'lag':>10}")
    for m in payload["members"]:
        lag = "-" if m["lag_bytes"] is None else f"{m['lag_bytes']} B"
        app.echo(f"  {m['site']:<6} {m['role']:<8} {m['state']!s:<10} {m['sync_state'] or '-'!s:<9} {lag:>10}")
    ep = payload["endpoint"]
    where = "(none)" if ep is None else f"{ep['address']}:{ep['port']} ({ep['site']}), generation {ep['generation']}"
    app.echo(f"name {payload['service']}: {where}")
    src = payload["source"]
    for line in src["adopted"] or [f"{src['outcome']}: {src['reason']}"]:
        app.echo(f"source of truth: {line}")
    d = payload["decision"]
    if d is not None:
        app.echo(f"decision: {d['action']}: {d['reason']}")
        for line in d["evidence"]:
            app.echo(f"  {line}")
    return ExitCode.OK


@failover.command("execute")
@click.option("--yes", is_flag=True, help="Do not ask for the typed confirmation.")
@click.option("--observe", "observe_s", type=click.FloatRange(min=0), default=None,
              help="Seconds of probe rounds to decide from [default: grace + 2].")
@_policy_options
@pass_app
def execute(app: AppContext, yes: bool, observe_s: float | None, grace: float, lease: float, max_gap: float,
            interval: float) -> int:
    """Fail over now if (and only if) the quorum rules say so; refused (exit code 4) with the reason otherwise.

    Resumes an interrupted failover from its journal instead of deciding again.
    """
    from govcloud.failover.model import Action, FailoverRefused
    from govcloud.services.failover import Executor, observe

    ctl, journal, smap = _parts(app, grace, lease, max_gap)
    try:
        executor = Executor(ctl.backend, journal, smap, reachable=ctl.backend.reachable)
        pending = journal.open_run(ctl.service)
        d = observe(ctl, grace + 2.0 if observe_s is None else observe_s, interval,
                    until=lambda x: x.action is Action.FAILOVER or pending is not None)
        if d.action is not Action.FAILOVER and pending is None:
            raise FailoverRefused(f"{d.service}: {d.action.value}: {d.reason}",
                                  hint="nothing to do while the primary's site is not lost by quorum; "
                                       "`govcloud failover status` shows the evidence")
        target = pending.new_primary if pending is not None else d.target
        app.echo(f"resuming run {pending.id}: {pending.reason}" if pending is not None else f"decision: {d.reason}",
                 err=True)
        if not yes:
            want = f"{d.service} {target}"
            got = click.prompt(f"type '{want}' to fail over", err=True, default="", show_default=False)
            if got.strip() != want:
                raise FailoverRefused(f"{d.service}: failover not confirmed (typed {got.strip()!r}, expected {want!r})",
                                      hint="type it exactly, or pass --yes")
        res = executor.execute(d, ctl.loss_started(d))
        ctl.publish()
    finally:
        journal.close()
    if app.json:
        app.emit_json({"run": res.run.__dict__, "steps": res.steps, "resumed": res.resumed})
    else:
        for n, kind, site, st, detail in res.steps:
            app.echo(f"{n}. {kind} {site}: {st}: {detail}")
    return ExitCode.OK


@failover.command("drill")
@click.option("--scenario", required=True, metavar="SCENARIO",
              help="site-loss:gz-a | region-loss:gz | partition:gz-a/st-a | flap:gz-b")
@click.option("--times", type=click.IntRange(min=1), default=1, show_default=True,
              help="Repeat; a failover scenario is failed back (--switch-back) between runs.")
@click.option("--observe", "observe_s", type=click.FloatRange(min=1), default=12.0, show_default=True,
              help="Seconds a no-failover scenario is watched.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for the JSON reports [default <root>/.govcloud/drills].")
@_policy_options
@pass_app
def drill(app: AppContext, scenario: str, times: int, observe_s: float, report_dir: Path | None, grace: float,
          lease: float, max_gap: float, interval: float) -> int:
    """Break the lab's links, keep writing, let the controller act; report detection, RTO, RPO, decisions."""
    from govcloud.services.failover_drill import DrillOptions, run_drill

    opts = DrillOptions(interval_s=interval, observe_s=observe_s, policy=_policy(grace, lease, max_gap))
    reports = []
    for i in range(times):
        if i:
            _failback(app, switch_back=True, quiet=True)
        r = run_drill(app.root, scenario, opts, report_dir=report_dir)
        reports.append(r)
        if not app.json:
            _print_report(app, r)
    if app.json:
        app.emit_json(reports if times > 1 else reports[0])
    bad = [r for r in reports if r["failover"] != r["expected_failover"] or not r["exactly_one_primary"]]
    return ExitCode.FAILURE if bad else ExitCode.OK


def _print_report(app: AppContext, r: dict[str, Any]) -> None:
    def s(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f} s"

    app.echo(f"drill {r['scenario']} ({r['run']}): failover {'yes' if r['failover'] else 'no'} "
             f"(expected {'yes' if r['expected_failover'] else 'no'}); primary {r['primary_after']} at epoch "
             f"{r['epoch_after']}; writable members {', '.join(r['writable_members_after']) or 'none'}")
    app.echo(f"  detection {s(r['detection_s'])}  RTO {s(r['rto_s'])} (client {s(r['client_rto_s'])})  "
             f"RPO {r['lost_commits']} of {r['acknowledged_commits']} acknowledged commits lost ({s(r['rpo_s'])})")
    for d in r["decision_log"]:
        app.echo(f"  {d['at'] - r['loss_at']:+7.2f} s  {d['action']:<8} {d['reason']}")
    app.echo(f"  report: {r['report_path']}")


def _failback(app: AppContext, *, switch_back: bool, quiet: bool = False) -> Any:
    from govcloud.services.failover import failback as do_failback

    ctl, journal, smap = _parts(app, 4.0, 2.0, 1.5)
    try:
        res = do_failback(ctl.backend, journal, smap, switch_back=switch_back)
        ctl.publish()
    finally:
        journal.close()
    if not quiet and not app.json:
        for site, method in res.rejoined:
            app.echo(f"{site}: rejoined as a standby ({method})")
        if res.switched:
            app.echo(f"switched back to {res.switched}")
        app.echo(f"pg: primary {res.primary} at epoch {res.epoch} ({res.seconds:.1f} s)")
    return res


@failover.command("failback")
@click.option("--switch-back", is_flag=True, help="Then switch the primary back to its home site (gz-a), no loss.")
@pass_app
def failback(app: AppContext, switch_back: bool) -> int:
    """Rejoin the old primary (and any detached member) as a standby: pg_rewind, else a fresh base backup."""
    res = _failback(app, switch_back=switch_back)
    if app.json:
        app.emit_json({"rejoined": res.rejoined, "switched": res.switched, "primary": res.primary,
                       "epoch": res.epoch, "seconds": res.seconds})
    return ExitCode.OK


__all__ = ["failover"]
