"""`govcloud audit verify | log`: the hash-chained audit log of the migration journal."""

from __future__ import annotations

import json
from pathlib import Path

import click

from govcloud.cli.context import AppContext, pass_app
from govcloud.errors import ExitCode

journal_option = click.option(
    "--journal", type=click.Path(dir_okay=False, path_type=Path), default=None, envvar="GOVCLOUD_JOURNAL",
    help="Journal file [env GOVCLOUD_JOURNAL; default <root>/.govcloud/journal.sqlite].")


@click.group()
def audit() -> None:
    """Audit log: who did what, when, with what result (hash-chained)."""


@audit.command("verify")
@journal_option
@click.option("--expect-head", default=None, metavar="SHA256",
              help="A head hash printed by an earlier verify and kept elsewhere: it must still be in the log.")
@pass_app
def verify_cmd(app: AppContext, journal: Path | None, expect_head: str | None) -> int:
    """Check the chain. Exit 0 intact; 1 tampered (each broken record is named); 2 no journal."""
    from govcloud.services.audit import AuditOptions, verify

    report = verify(app.root, AuditOptions(journal=journal, expect_head=expect_head))
    if app.json:
        app.emit_json({"ok": True, "records": report.records, "head_seq": report.head_seq, "head_hash": report.head_hash})
    else:
        app.echo(f"audit log intact: {report.records} record(s), head {report.head_seq} {report.head_hash}")
    return ExitCode.OK


@audit.command("log")
@journal_option
@click.option("--system", default=None, metavar="ID", help="Only records about this system.")
@pass_app
def log_cmd(app: AppContext, journal: Path | None, system: str | None) -> int:
    """Print the audit records, oldest first."""
    from govcloud.services.audit import AuditOptions, log

    records = log(app.root, AuditOptions(journal=journal), system)
    if app.json:
        app.emit_json([{**r.body(), "seq": r.seq, "hash": r.hash, "prev_hash": r.prev_hash} for r in records])
        return ExitCode.OK
    for r in records:
        detail = json.dumps(dict(r.detail), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        app.echo(f"{r.seq:>6} {r.at} {r.actor} {r.action} {r.target} {r.result} {detail}")
    if not records:
        app.echo("no audit records" + (f" for system {system}" if system else ""))
    return ExitCode.OK
