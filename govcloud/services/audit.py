"""The audit log of the migration journal: verify its hash chain against the journal's head file, list
its records, give its head to a store outside the state directory, and re-anchor after an investigation.

``verify`` raises AuditTamperedError (a runtime failure, exit 1) listing every edited, removed,
reordered, inserted or missing record, a lost head file, and a deleted journal whose head file remains;
JournalMissingError (exit 2, as in every command that reads the journal) when there is neither journal
nor head file: the path is wrong. Everything but ``reanchor`` opens the journal read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from govcloud.adapters.journal import Journal, journal_path
from govcloud.adapters.journal_files import head_file, missing_journal, read_head
from govcloud.errors import AuditTamperedError, JournalError, RefusedError
from govcloud.migrate.auditchain import AuditRecord, ChainReport

TAMPER_HINT = ("the journal or its head file was changed outside govcloud: keep copies of both for investigation and "
               "compare with a backup or an exported head (`govcloud audit head`, syslog)")


@dataclass(frozen=True)
class AuditOptions:
    journal: Path | None = None  # default: $GOVCLOUD_JOURNAL, else <root>/.govcloud/journal.sqlite
    expect_head: str | None = None  # a head hash recorded elsewhere (catches a rewrite of journal and head file)


@dataclass(frozen=True)
class Verified:
    """An intact log: its report (with notes, if any) and the files it was checked from."""

    report: ChainReport
    journal: Path
    head_file: Path


def verify(root: Path, options: AuditOptions) -> Verified:
    """The verified log; raises AuditTamperedError naming each broken or missing record otherwise."""
    path = journal_path(root, options.journal)
    if not path.is_file():
        _refuse_missing(path)
    with Journal(path, create=False) as journal:
        report = journal.verify_audit(options.expect_head)
    if not report.ok:
        raise AuditTamperedError(
            f"audit log of {path} is tampered: {len(report.problems)} problem(s) in {report.records} record(s)",
            hint=TAMPER_HINT, problems=tuple(f"{p.kind}: {p.message}" for p in report.problems))
    return Verified(report, path, head_file(path))


def _refuse_missing(path: Path) -> NoReturn:
    """No journal: invalid input, unless its head file shows records were written (a deleted journal)."""
    try:
        anchor = read_head(head_file(path))
    except JournalError as exc:
        raise AuditTamperedError(f"the journal {path} is missing and its head file is unreadable",
                                 hint=TAMPER_HINT, problems=(f"head-file: {exc.message}",)) from exc
    if anchor is None or anchor.seq == 0:
        raise missing_journal(path)
    raise AuditTamperedError(f"the journal {path} is missing, but its head file {head_file(path)} records "
                             f"{anchor.seq} audit record(s): it was deleted or moved", hint=TAMPER_HINT,
                             problems=(f"deleted: record 1 is missing, and every one up to record {anchor.seq} "
                                       f"(head {anchor.hash[:12]})",))


def log(root: Path, options: AuditOptions, system: str | None = None) -> tuple[list[AuditRecord], ChainReport]:
    """The records (of one system), and the whole log's report: a log that does not verify is still
    listed (it is the evidence), but not as if it were whole."""
    with Journal(journal_path(root, options.journal), create=False) as journal:
        return journal.audit_records(system), journal.verify_audit(options.expect_head)


def reanchor(root: Path, options: AuditOptions, *, confirmed: bool) -> AuditRecord:
    """Accept the journal as it is after a lost head file or a mismatch was investigated: appends an
    ``audit.reanchor`` record (what the head file held, the journal's head) and writes the head file
    from it. Refused without ``confirmed``: it makes a truncation undetectable from here on."""
    path = journal_path(root, options.journal)
    if not path.is_file():
        raise missing_journal(path)
    if not confirmed:
        raise RefusedError(f"not re-anchoring the audit log of {path}",
                           hint="this accepts the journal as it is, missing records included: check "
                                "`govcloud audit verify` first, then pass --yes")
    with Journal(path) as journal:
        return journal.reanchor()
