"""`govcloud plan`: make migration waves; `plan check` and `plan diff` for hand-edited plans."""

from __future__ import annotations

from pathlib import Path

import click

from govcloud.cli.context import AppContext, pass_app
from govcloud.errors import ExitCode


@click.group(invoke_without_command=True)
@click.option("--name", default="wave-plan", show_default=True, help="Plan name; file migration_plans/<name>.yaml.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the plan here instead.")
@click.option("--max-per-wave", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many systems per wave (a larger dependency cycle gets a wave of its own).")
@click.option("--min-window-minutes", type=click.IntRange(min=15), default=60, show_default=True,
              help="A wave's shared maintenance window must be at least this long.")
@click.option("--dry-run", is_flag=True, help="Plan and print, but write no file.")
@click.pass_context
def plan(ctx: click.Context, name: str, out: Path | None, max_per_wave: int, min_window_minutes: int, dry_run: bool) -> int:
    """Plan migration waves from the inventories and write the plan file."""
    if ctx.invoked_subcommand is not None:
        return ExitCode.OK
    app: AppContext = ctx.obj
    from govcloud.cli.render import render_plan_summary
    from govcloud.planning.waves import PlanOptions
    from govcloud.services.planning import make_plan

    made = make_plan(app.root, PlanOptions(name, max_per_wave, min_window_minutes), out, write=not dry_run)
    app.diagnostics(made.inventory.warnings)  # type: ignore[arg-type]
    render_plan_summary(app, made)
    return ExitCode.OK


@plan.command("check")
@click.argument("plan_file", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def check(app: AppContext, plan_file: Path) -> int:
    """Check a plan file against the inventories: every violation listed (exit 2 if any)."""
    from govcloud.services.planning import check_plan_file

    result = check_plan_file(app.root, plan_file)
    if app.json:
        app.emit_json({"ok": not result.errors, "diagnostics": [d.as_dict() for d in (*result.errors, *result.warnings)]})
    else:
        app.diagnostics([*result.errors, *result.warnings])
        if result.errors:
            click.echo(f"{len(result.errors)} violation(s) in {plan_file}", err=True)
        else:
            app.echo(f"ok: {plan_file} satisfies every constraint")
    return ExitCode.INVALID_INPUT if result.errors else ExitCode.OK


@plan.command("diff")
@click.argument("old", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def diff(app: AppContext, old: Path, new: Path) -> int:
    """Show systems that moved between two plans (exit 3 if any differ)."""
    from govcloud.cli.render import render_plan_diff
    from govcloud.services.planning import diff_plan_files

    changes = diff_plan_files(old, new)
    render_plan_diff(app, changes)
    return ExitCode.CHANGES_PENDING if changes else ExitCode.OK
