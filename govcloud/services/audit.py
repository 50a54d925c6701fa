"""The audit log of the migration journal: verify its hash chain, list its records.

``verify`` raises AuditTamperedError (a runtime failure, exit 1) listing every edited, removed,
reordered or inserted record; a missing journal is invalid input (exit 2: the path is wrong).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from govcloud.adapters.journal import Journal, journal_path
from govcloud.errors import AuditTamperedError, InvalidInputError
from govcloud.migrate.auditchain import AuditRecord, ChainReport


@dataclass(frozen=True)
class AuditOptions:
    journal: Path | None = None  # default: $GOVCLOUD_JOURNAL, else <root>/.govcloud/journal.sqlite
    expect_head: str | None = None  # a head hash recorded elsewhere (catches a rewrite of the whole log)


def _open(root: Path, options: AuditOptions) -> Journal:
    path = journal_path(root, options.journal)
    if not path.is_file():
        raise InvalidInputError(f"no migration journal at {path}",
                                hint="pass --journal PATH (or set GOVCLOUD_JOURNAL), or run a migration first")
    return Journal(path, create=False)


def verify(root: Path, options: AuditOptions) -> ChainReport:
    """The chain report when intact; raises AuditTamperedError naming each broken record otherwise."""
    with _open(root, options) as journal:
        report = journal.verify_audit(options.expect_head)
        path = journal.path
    if not report.ok:
        raise AuditTamperedError(
            f"audit log of {path} is tampered: {len(report.problems)} problem(s) in {report.records} record(s)",
            hint="the journal was changed outside govcloud; keep a copy for investigation, compare with a backup",
            problems=tuple(f"{p.kind}: {p.message}" for p in report.problems))
    return report


def log(root: Path, options: AuditOptions, system: str | None = None) -> list[AuditRecord]:
    with _open(root, options) as journal:
        return journal.audit_records(system)
