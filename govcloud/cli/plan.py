"""`govcloud plan`: make migration waves; `plan check` and `plan diff` for hand-edited plans."""

from __future__ import annotations

from pathlib import Path

import click

from govcloud.cli.context import AppContext, pass_app
from govcloud.errors import ExitCode, InvalidInputError


@click.group(invoke_without_command=True)
@click.option("--name", default="wave-plan", show_default=True,
              help="Plan name, a plain file name (no '/', no '..', no leading dot); file migration_plans/<name>.yaml.")
@click.option("--out", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="Write the plan to this file instead ('-': standard output; the summary goes to stderr).")
@click.option("--max-per-wave", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many systems per wave (a larger dependency cycle gets a wave of its own).")
@click.option("--min-window-minutes", type=click.IntRange(min=15), default=60, show_default=True,
              help="A wave's shared maintenance window must be at least this long.")
@click.option("--force", is_flag=True,
              help="Replace a plan file that was edited since govcloud wrote it (the old one is kept as NAME.yaml.~N~).")
@click.option("--dry-run", is_flag=True, help="Plan and print, but write no file.")
@click.pass_context
def plan(ctx: click.Context, name: str, out: Path | None, max_per_wave: int, min_window_minutes: int, force: bool,
         dry_run: bool) -> int:
    """Plan migration waves from the inventories and write the plan file.

    An existing plan file is replaced only while it is what govcloud last wrote: a hand-edited one is
    refused (exit 4) unless --force is given. Either way the systems that moved are listed.
    """
    if ctx.invoked_subcommand is not None:
        return ExitCode.OK
    app: AppContext = ctx.obj
    from govcloud.cli.render import render_plan_summary
    from govcloud.planning.waves import PlanOptions
    from govcloud.services.planning import make_plan

    to_stdout = out is not None and str(out) == "-"
    if to_stdout and app.json:
        raise InvalidInputError("--out - and --output json would both write to standard output",
                                hint="drop one: the JSON summary holds the waves, --out - the plan file")
    made = make_plan(app.root, PlanOptions(name, max_per_wave, min_window_minutes), None if to_stdout else out,
                     write=not (dry_run or to_stdout), force=force)
    app.diagnostics(made.inventory.warnings)  # type: ignore[arg-type]
    if to_stdout and not dry_run:
        click.echo(made.text, nl=False)
    render_plan_summary(app, made, to_stderr=to_stdout, stdout_plan=to_stdout and not dry_run)
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
