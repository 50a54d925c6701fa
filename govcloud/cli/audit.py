"""`govcloud audit verify | log | head | reanchor`: the hash-chained audit log of the migration journal."""

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
    """Audit log: who did what, when, with what result (hash-chained, anchored by a head file)."""


@audit.command("verify")
@journal_option
@click.option("--expect-head", default=None, metavar="SHA256",
              help="A head hash kept outside the state directory (`audit head`, syslog): it must still be in the log.")
@pass_app
def verify_cmd(app: AppContext, journal: Path | None, expect_head: str | None) -> int:
    """Check the chain and that it still reaches the journal's head file. Exit 0 intact; 1 tampered
    (each missing or broken record is named; also a lost head file, a deleted journal); 2 no journal."""
    from govcloud.services.audit import AuditOptions, verify

    checked = verify(app.root, AuditOptions(journal=journal, expect_head=expect_head))
    report = checked.report
    if app.json:
        app.emit_json({"ok": True, "records": report.records, "head_seq": report.head_seq, "head_hash": report.head_hash,
                       "journal": str(checked.journal), "head_file": str(checked.head_file), "notes": list(report.notes)})
        return ExitCode.OK
    app.echo(f"audit log intact: {report.records} record(s), head {report.head_seq} {report.head_hash}")
    app.echo(f"checked against its head file {checked.head_file}")
    for note in report.notes:
        app.echo(f"note: {note}")
    return ExitCode.OK


@audit.command("head")
@journal_option
@pass_app
def head_cmd(app: AppContext, journal: Path | None) -> int:
    """Print the head of a log that verifies, to keep outside the state directory (the same line
    GOVCLOUD_AUDIT_SYSLOG sends); later `audit verify --expect-head HASH` checks the log still holds it.
    Exits as `audit verify` does: a tampered log has no head worth keeping."""
    from govcloud.adapters.journal_files import head_message
    from govcloud.migrate.auditchain import Anchor
    from govcloud.services.audit import AuditOptions, verify

    checked = verify(app.root, AuditOptions(journal=journal))
    report = checked.report
    if app.json:
        app.emit_json({"journal": str(checked.journal.resolve()), "seq": report.head_seq, "hash": report.head_hash})
    else:
        app.echo(head_message(checked.journal.resolve(), Anchor(report.head_seq, report.head_hash)))
    return ExitCode.OK


@audit.command("reanchor")
@journal_option
@click.option("--yes", is_flag=True, help="Confirm: the journal as it is becomes the reference, missing records included.")
@pass_app
def reanchor_cmd(app: AppContext, journal: Path | None, yes: bool) -> int:
    """After investigating a lost head file or a journal that no longer reaches it: accept the journal as
    it is (an audited `audit.reanchor` record) and write its head file again. Exit 4 without --yes."""
    from govcloud.services.audit import AuditOptions, reanchor

    record = reanchor(app.root, AuditOptions(journal=journal), confirmed=yes)
    if app.json:
        app.emit_json({"seq": record.seq, "hash": record.hash, "detail": dict(record.detail)})
    else:
        app.echo(f"re-anchored: record {record.seq} ({record.action}) is the head file's head, {record.hash}")
    return ExitCode.OK


@audit.command("log")
@journal_option
@click.option("--system", default=None, metavar="ID", help="Only records about this system.")
@pass_app
def log_cmd(app: AppContext, journal: Path | None, system: str | None) -> int:
    """Print the audit records, oldest first (read-only); a warning on stderr when the log does not verify."""
    from govcloud.services.audit import AuditOptions, log

    records, report = log(app.root, AuditOptions(journal=journal), system)
    if not report.ok:
        app.echo(f"warning: this audit log does not verify ({len(report.problems)} problem(s), the first: "
                 f"{report.problems[0].kind} at record {report.problems[0].seq}): `govcloud audit verify` lists them",
                 err=True)
    if app.json:
        app.emit_json([{**r.body(), "seq": r.seq, "hash": r.hash, "prev_hash": r.prev_hash} for r in records])
        return ExitCode.OK
    for r in records:
        detail = json.dumps(dict(r.detail), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        app.echo(f"{r.seq:>6} {r.at} {r.actor} {r.action} {r.target} {r.result} {detail}")
    if not records:
        app.echo("no audit records" + (f" for system {system}" if system else ""))
    return ExitCode.OK
