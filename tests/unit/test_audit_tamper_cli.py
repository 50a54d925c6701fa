"""Issue 29, item 2: a plain `govcloud audit verify` (no flags) catches a journal truncated by one
record, emptied, truncated to 0 bytes, deleted, or swapped for an older copy, and a lost head file;
a head file behind the journal by an interrupted append is not tampering; the commands that only read
(`audit verify | log | head`, `migrate status | log`) change no file (hashes before and after).

Each scenario is set up the way it happens: records appended by a real journal, then the journal
changed with plain SQLite or plain file operations, as an intruder or a failing disk would."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from govcloud.adapters.journal import Journal
from govcloud.migrate.state import Action, Event

Run = Callable[..., Any]


def _project(root: Path, notes: int = 3) -> Path:
    """A project whose journal has one system in plan wave-plan and 3 + ``notes`` audit records."""
    path = root / ".govcloud" / "journal.sqlite"
    with Journal(path, actor="ops@ctl") as j:
        run = j.start_run("wave-plan", 1)
        j.ensure_system("wave-plan", "pop-db", 1)
        j.outcome(j.intent(run, "wave-plan", "pop-db", Action.PREFLIGHT), Event.PREFLIGHT_PASSED)
        for i in range(notes):
            j.audit("note", "pop-db", "ok", {"i": i})
    return path


def _sql(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    with db:
        for s in statements:
            db.execute(s)
    db.close()


def _verify(run_cli: Run, root: Path, *extra: str) -> Any:
    return run_cli("--root", str(root), "audit", "verify", *extra)


def _files(root: Path) -> dict[str, str]:
    """Every file in the state directory (journal, SQLite's side files, head file) by content hash."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / ".govcloud").iterdir())}


def test_an_intact_journal_verifies_against_its_head_file(tmp_path: Path, run_cli: Run) -> None:
    _project(tmp_path)
    r = _verify(run_cli, tmp_path)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("audit log intact: 6 record(s), head 6 ")
    assert f"checked against its head file {tmp_path / '.govcloud' / 'journal.sqlite.head'}" in r.stdout


def test_truncated_by_one_record_is_caught_without_flags(tmp_path: Path, run_cli: Run) -> None:
    """The last record deleted and the journal's own head moved back with it: a self-consistent log."""
    path = _project(tmp_path)
    _sql(path, "DELETE FROM audit WHERE seq = 6",
         "UPDATE audit_head SET seq = 5, hash = (SELECT hash FROM audit WHERE seq = 5)")
    r = _verify(run_cli, tmp_path)
    assert r.exit_code == 1, r.stdout
    assert "error: truncated: record 6 is missing: the head file records 6 record(s)" in r.stderr
    assert "but the log ends at record 5" in r.stderr and "is tampered: 1 problem(s) in 5 record(s)" in r.stderr
    log = run_cli("--root", str(tmp_path), "audit", "log")  # still listed (the evidence), but not as whole
    assert log.exit_code == 0 and len(log.stdout.splitlines()) == 5
    assert "warning: this audit log does not verify (1 problem(s), the first: truncated at record 6)" in log.stderr


def test_every_record_removed_is_caught_without_flags(tmp_path: Path, run_cli: Run) -> None:
    path = _project(tmp_path)
    _sql(path, "DELETE FROM audit", "DELETE FROM audit_head")
    r = _verify(run_cli, tmp_path)
    assert r.exit_code == 1, r.stdout
    assert "error: truncated: record 1 is missing: the head file records 6 record(s)" in r.stderr
    assert "but the log is empty" in r.stderr


def test_a_journal_truncated_to_0_bytes_is_caught_and_stays_0_bytes(tmp_path: Path, run_cli: Run) -> None:
    path = _project(tmp_path)
    path.write_bytes(b"")
    before = _files(tmp_path)
    r = _verify(run_cli, tmp_path)
    assert r.exit_code == 1, r.stdout
    assert "error: truncated: record 1 is missing: the head file records 6 record(s)" in r.stderr
    assert path.stat().st_size == 0 and _files(tmp_path) == before


def test_a_deleted_journal_is_caught_by_its_head_file(tmp_path: Path, run_cli: Run) -> None:
    path = _project(tmp_path)
    path.unlink()
    r = _verify(run_cli, tmp_path)
    assert r.exit_code == 1, r.stdout
    assert f"the journal {path} is missing, but its head file {path}.head records 6 audit record(s)" in r.stderr
    assert not path.exists()


def test_a_journal_replaced_by_an_older_copy_is_caught(tmp_path: Path, run_cli: Run) -> None:
    path = _project(tmp_path, notes=0)
    shutil.copy2(path, tmp_path / "older.sqlite")
    with Journal(path) as j:
        j.audit("migrate.cutover", "pop-db", "ok")
    shutil.copy2(tmp_path / "older.sqlite", path)
    r = _verify(run_cli, tmp_path)
    assert r.exit_code == 1, r.stdout
    assert "error: truncated: record 4 is missing: the head file records 4 record(s)" in r.stderr


def test_an_older_copy_that_went_on_elsewhere_is_caught(tmp_path: Path, run_cli: Run) -> None:
    """As long as the real one, but another history: the record at the head file's seq differs."""
    path = _project(tmp_path, notes=0)
    elsewhere = tmp_path / "elsewhere" / "journal.sqlite"
    shutil.copytree(path.parent, elsewhere.parent)
    with Journal(path) as j:
        j.audit("migrate.cutover", "pop-db", "ok")
    with Journal(elsewhere) as j:
        j.audit("migrate.rollback", "pop-db", "ok")
    shutil.copy2(elsewhere, path)
    r = _verify(run_cli, tmp_path)
    assert r.exit_code == 1, r.stdout
    assert "error: replaced: record 4 is not the one the head file records" in r.stderr


def test_a_lost_head_file_is_reported(tmp_path: Path, run_cli: Run) -> None:
    path = _project(tmp_path)
    head = path.with_name("journal.sqlite.head")
    assert head.is_file()
    head.unlink()
    r = _verify(run_cli, tmp_path)
    assert r.exit_code == 1, r.stdout
    assert "error: head-file: the head file is missing" in r.stderr


def test_a_head_file_one_interrupted_append_behind_is_not_tampering(tmp_path: Path, run_cli: Run) -> None:
    """The state a crash between an append's commit and its head write leaves (kill -9 in
    test_journal_head.py): the journal's extra record chains from the head file's."""
    path = _project(tmp_path)
    head = path.with_name("journal.sqlite.head")
    kept = head.read_bytes()
    with Journal(path) as j:
        j.audit("migrate.cutover", "pop-db", "ok")
    head.write_bytes(kept)
    r = _verify(run_cli, tmp_path)
    assert r.exit_code == 0, r.stderr
    assert "audit log intact: 7 record(s)" in r.stdout
    assert "note: the head file is 1 record(s) behind the log (at record 6)" in r.stdout


def test_audit_head_prints_what_expect_head_checks(tmp_path: Path, run_cli: Run) -> None:
    path = _project(tmp_path)
    r = run_cli("--root", str(tmp_path), "--output", "json", "audit", "head")
    assert r.exit_code == 0, r.stderr
    head = json.loads(r.stdout)
    assert head["seq"] == 6 and head["journal"] == str(path.resolve())
    text = run_cli("--root", str(tmp_path), "audit", "head")
    assert text.stdout.strip() == f"audit head journal={path.resolve()} seq=6 hash={head['hash']}"
    assert _verify(run_cli, tmp_path, "--expect-head", head["hash"]).exit_code == 0
    _sql(path, "DELETE FROM audit")
    assert run_cli("--root", str(tmp_path), "audit", "head").exit_code == 1  # no head worth keeping


@pytest.mark.parametrize("emptied", [False, True], ids=["intact", "0-bytes"])
def test_reading_commands_change_no_file(tmp_path: Path, run_cli: Run, emptied: bool) -> None:
    path = _project(tmp_path)
    if emptied:
        path.write_bytes(b"")
    before = _files(tmp_path)
    for args in (["audit", "verify"], ["audit", "log"], ["audit", "log", "--system", "pop-db"], ["audit", "head"],
                 ["migrate", "status"], ["--output", "json", "migrate", "status"], ["migrate", "status", "wave-plan"],
                 ["migrate", "log", "pop-db"]):
        run_cli("--root", str(tmp_path), *args)
        assert _files(tmp_path) == before, args
    assert not emptied or path.stat().st_size == 0
