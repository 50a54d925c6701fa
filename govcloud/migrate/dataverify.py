"""After a database cutover: is the new primary's data the legacy's, row for row? (pure, issue 13)

The adapters read, per table, a row count and an ordered content hash on each side (the legacy
database is read-only by then); this module compares them, and checks the application's ledger of
acknowledged commits against what the target holds. The result names every table that differs, so
a failed verify says what to look at before it rolls back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class TableDigest:
    rows: int
    checksum: str  # the engine's ordered hash of the table's content


@dataclass(frozen=True)
class DataVerdict:
    ok: bool
    problems: tuple[str, ...]
    tables: int
    rows: int

    def summary(self) -> str:
        if self.ok:
            return f"{self.tables} table(s), {self.rows} row(s) equal"
        return "; ".join(self.problems[:5]) + (f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else "")


def compare_tables(database: str, source: Mapping[str, TableDigest], target: Mapping[str, TableDigest]) -> DataVerdict:
    """Row count and checksum per table; a table on one side only is a difference too."""
    problems: list[str] = []
    for table in sorted(set(source) | set(target)):
        s, t = source.get(table), target.get(table)
        if t is None:
            problems.append(f"{database}.{table}: missing on the target")
        elif s is None:
            problems.append(f"{database}.{table}: on the target only")
        elif s.rows != t.rows:
            problems.append(f"{database}.{table}: {s.rows} row(s) on the source, {t.rows} on the target")
        elif s.checksum != t.checksum:
            problems.append(f"{database}.{table}: same row count ({s.rows}), different content")
    return DataVerdict(not problems, tuple(problems), len(source), sum(d.rows for d in source.values()))


def missing_commits(acknowledged: Iterable[int], present: Iterable[int]) -> list[int]:
    """Ledger ids the application saw acknowledged that the target does not hold (sorted)."""
    have = set(present)
    return sorted(i for i in set(acknowledged) if i not in have)
