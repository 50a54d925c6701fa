"""`govcloud provision plan|apply`: landing zones on OpenStack, the Terraform way (review, then apply)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from govcloud.cli.context import AppContext, pass_app
from govcloud.errors import ExitCode, PlanDriftError, ProvisionError
from govcloud.provision.model import Action, Change, ProvisionPlan

SYMBOL = {Action.CREATE: "+", Action.UPDATE: "~", Action.DELETE: "-"}
COLOUR = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.DELETE: "red"}


def cloud_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by plan and apply (pip-tools style: defined once)."""
    decorators = [
        click.option("--region", "region", type=click.Choice(["gz", "st", "all"]), default="all", show_default=True,
                     help="Only this region (Keystone projects are shared and always considered)."),
        click.option("--department", "departments", multiple=True, metavar="ID",
                     help="Only these departments (repeatable). With --prune, may name one that left the inventory."),
        click.option("--image", default=None, envvar="GOVCLOUD_IMAGE", metavar="NAME",
                     help="Check this one image instead of the images the topology maps per OS in each region "
                          "(checked to exist, never created)."),
        click.option("--clouds-yaml", type=click.Path(dir_okay=False, path_type=Path), envvar="OS_CLIENT_CONFIG_FILE",
                     help="clouds.yaml holding the clouds named in topology.yaml [env OS_CLIENT_CONFIG_FILE]."),
        click.option("--timeout", type=click.FloatRange(min=1), default=30.0, show_default=True,
                     help="Seconds per API request before it is retried."),
    ]
    for d in reversed(decorators):
        fn = d(fn)
    return fn


def _options(region: str, departments: tuple[str, ...], image: str | None, clouds_yaml: Path | None, timeout: float,
             prune: bool, concurrency: int = 8) -> Any:
    from govcloud.services.provision import ProvisionOptions

    return ProvisionOptions(regions=() if region == "all" else (region,), departments=departments, prune=prune,
                            image=image, clouds_yaml=clouds_yaml, timeout=timeout, concurrency=concurrency)


def render_plan(app: AppContext, plan: ProvisionPlan, request_id: str = "") -> None:
    counts = plan.counts()
    if app.json:
        from govcloud.provision.planfile import dump_plan
        import json

        doc = json.loads(dump_plan(plan))
        doc.pop("desired", None)
        doc["request_id"] = request_id
        app.emit_json(doc)
        return
    for f in plan.findings:
        click.echo(f.render(), err=True)
    console = app.console()
    for (region, dept), changes in plan.grouped().items():
        console.print(f"[bold]{region} / {dept or '-'}[/bold]")
        for c in changes:
            console.print(f"  [{COLOUR[c.action]}]{SYMBOL[c.action]} {c.kind} {c.name}[/]{_detail(c)}", markup=True)
    summary = f"Plan: {counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete."
    if not plan.changes:
        summary = "No changes: the cloud matches the inventories."
    console.print(f"[bold]{summary}[/bold]")


def _detail(c: Change) -> str:
    if c.action is Action.UPDATE:
        before = dict(c.before or ())
        after = dict(c.after)
        parts = []
        for f in c.fields:
            if f == "rules":
                add = sorted(set(after.get(f, ())) - set(before.get(f, ()) or ()))
                rem = sorted(set(before.get(f, ()) or ()) - set(after.get(f, ())))
                parts.append("rules " + " ".join([*(f"+{r}" for r in add), *(f"-{r}" for r in rem)]))
            else:
                parts.append(f"{f}: {before.get(f)!r} -> {after.get(f)!r}")
        return " (" + "; ".join(parts) + ")"
    if c.kind == "subnet" and c.action is Action.CREATE:
        return f" ({dict(c.after).get('cidr')})"
    return ""


@click.group()
def provision() -> None:
    """Landing zones on OpenStack: `plan` what would change, `apply` it."""


@provision.command("plan")
@cloud_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Save the plan here for `apply FILE`.")
@click.option("--prune", is_flag=True, help="Plan deletions of managed objects no longer in the inventory.")
@pass_app
def plan_cmd(app: AppContext, region: str, departments: tuple[str, ...], image: str | None, clouds_yaml: Path | None,
             timeout: float, out: Path | None, prune: bool) -> int:
    """Read the cloud, diff it against the inventories, print the plan (exit 3 if changes are pending)."""
    from govcloud.services.provision import make_plan, save_plan

    plan, _inv, cloud = make_plan(app.root, _options(region, departments, image, clouds_yaml, timeout, prune))
    try:
        render_plan(app, plan, cloud.request_id)
        if out is not None:
            save_plan(plan, out)
            app.echo(f"plan saved to {out}; apply it with `govcloud provision apply {out}`", err=True)
    finally:
        cloud.close()
    return ExitCode.CHANGES_PENDING if plan.changes else ExitCode.OK


@provision.command("apply")
@click.argument("plan_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@cloud_options
@click.option("--prune", is_flag=True, help="Also delete managed objects no longer in the inventory.")
@click.option("--yes", is_flag=True, help="Do not ask before deleting.")
@click.option("--concurrency", type=click.IntRange(min=1, max=32), default=8, show_default=True,
              help="Requests in flight per region and service.")
@pass_app
def apply_cmd(app: AppContext, plan_file: Path | None, region: str, departments: tuple[str, ...], image: str | None,
              clouds_yaml: Path | None, timeout: float, prune: bool, yes: bool, concurrency: int) -> int:
    """Apply the plan: a saved FILE exactly (refused if the cloud drifted), or a fresh one."""
    from govcloud.services.provision import check_saved_plan, make_plan, read_plan

    options = _options(region, departments, image, clouds_yaml, timeout, prune, concurrency)
    if plan_file is not None:
        plan = read_plan(plan_file)
        deletes = [c for c in plan.changes if c.action is Action.DELETE]
        if deletes and not prune:
            raise PlanDriftError(f"{plan_file} deletes {len(deletes)} object(s)", hint="pass --prune to apply it")
        _inv, cloud = check_saved_plan(app.root, plan, options)
    else:
        plan, _inv, cloud = make_plan(app.root, options)
    try:
        if not app.json:
            render_plan(app, plan, cloud.request_id)
        else:
            for f in plan.findings:
                click.echo(f.render(), err=True)
        if plan.errors:
            raise PlanDriftError(f"{len(plan.errors)} blocking finding(s); nothing was changed",
                                 hint="fix what the findings above say, then plan again")
        deletes = [c for c in plan.changes if c.action is Action.DELETE]
        if deletes and prune and not yes:
            click.confirm(f"Delete {len(deletes)} object(s) listed above?", abort=True, err=True)
        if not plan.changes:
            if app.json:
                app.emit_json({"ok": True, "counts": plan.counts(), "request_id": cloud.request_id, "summary": []})
            return ExitCode.OK
        result = _run_with_progress(app, plan, cloud, options, prune)
    finally:
        cloud.close()
    _render_result(app, result)
    if not result.ok:
        failures = tuple(f"{c.action.value} {c.region}/{c.kind}/{c.name}: {e.message}" + (f"\n  hint: {e.hint}" if e.hint else "")
                         for c, e in result.failed)
        raise ProvisionError(f"{len(result.failed)} step(s) failed, {len(result.skipped)} not attempted; "
                             f"global request id {result.request_id}",
                             hint="fix the cause and run apply again: finished steps are not repeated", failures=failures)
    return ExitCode.OK


def _run_with_progress(app: AppContext, plan: ProvisionPlan, cloud: Any, options: Any, prune: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from govcloud.services import provision as svc

    if app.json or app.verbosity < 0:
        return svc.apply_plan(plan, cloud, options, prune=prune)
    console = app.console()
    console.file = sys.stderr
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("applying", total=len(plan.changes))

        def on_step(c: Change, state: str, note: str) -> None:
            progress.update(task, advance=1, description=f"{state} {c.kind} {c.name}"[:60])

        return svc.apply_plan(plan, cloud, options, prune=prune, on_step=on_step)


def _render_result(app: AppContext, result: Any) -> None:
    rows: dict[tuple[str, str], dict[str, int]] = {}
    for c, _ in result.done:
        rows.setdefault((c.region, c.kind), {"create": 0, "update": 0, "delete": 0, "failed": 0, "skipped": 0})[c.action.value] += 1
    for c, _ in result.failed:
        rows.setdefault((c.region, c.kind), {"create": 0, "update": 0, "delete": 0, "failed": 0, "skipped": 0})["failed"] += 1
    for c, _ in result.skipped:
        rows.setdefault((c.region, c.kind), {"create": 0, "update": 0, "delete": 0, "failed": 0, "skipped": 0})["skipped"] += 1
    if app.json:
        app.emit_json({"ok": result.ok, "counts": {a: sum(1 for c, _ in result.done if c.action.value == a)
                                                   for a in ("create", "update", "delete")}, "seconds": round(result.seconds, 2), "api_calls": result.calls,
                       "retries": result.retries, "recovered_creates": result.recovered, "request_id": result.request_id,
                       "summary": [{"region": r, "kind": k, **v} for (r, k), v in sorted(rows.items())],
                       "failed": [{"step": f"{c.action.value} {c.key}", "error": e.message} for c, e in result.failed]})
        return
    from rich.table import Table

    table = Table(title=f"apply: {result.seconds:.1f} s, {result.calls} API calls, {result.retries} retries "
                        f"(request id {result.request_id})")
    for col in ("region", "kind", "create", "update", "delete", "failed", "skipped"):
        table.add_column(col, justify="left" if col in ("region", "kind") else "right")
    for (r, k), v in sorted(rows.items()):
        table.add_row(r, k, *(str(v[x]) for x in ("create", "update", "delete", "failed", "skipped")))
    app.console().print(table)
