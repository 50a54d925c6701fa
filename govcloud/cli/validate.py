"""`govcloud validate`: check the inventories offline and list every problem."""

from __future__ import annotations

import click

from govcloud.cli.context import AppContext, pass_app
from govcloud.errors import ExitCode


@click.command()
@pass_app
def validate(app: AppContext) -> int:
    """Check inventories/ offline: every error at once, as file:line:col (exit 2 on errors)."""
    from govcloud.inventory import validate_inventory

    report = validate_inventory(app.root)
    if app.json:
        app.emit_json({"ok": not report.errors, "files": report.files,
                       "systems": len(report.inventory.systems) if report.inventory else None,
                       "diagnostics": [d.as_dict() for d in report.diagnostics]})
    else:
        app.diagnostics(report.diagnostics)
    if report.errors:
        if not app.json:
            n = len(report.errors)
            click.echo(f"{n} error{'s' if n != 1 else ''}, {len(report.warnings)} warning(s) in {report.files} file(s)", err=True)
        return ExitCode.INVALID_INPUT
    inv = report.inventory
    assert inv is not None
    if not app.json:
        app.echo(f"ok: {report.files} files, {len(inv.departments)} departments, {len(inv.systems)} systems, "
                 f"{len(report.warnings)} warning(s)")
    return ExitCode.OK
