"""The audit log's hash chain: appended through a real journal, tampered with through plain SQLite,
and checked by `verify` and by `govcloud audit verify` (exit 0 intact, 1 tampered, 2 no journal)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from govcloud.adapters.journal import Journal
from govcloud.adapters.journal_files import head_file, write_head
from govcloud.migrate.auditchain import (
    GENESIS,
    GENESIS_ANCHOR,
    Anchor,
    AuditRecord,
    canonical,
    check_anchor,
    record_hash,
    verify_chain,
)


def _journal(tmp_path: Path, n: int = 6) -> Path:
    path = tmp_path / "journal.sqlite"
    with Journal(path, actor="ops@ctl") as j:
        for i in range(1, n + 1):
            j.audit(f"step{i}", f"sys-{i % 2}", "ok", {"i": i, "名": "广东"})
    return path


def _sql(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    with db:
        for s in statements:
            db.execute(s)
    db.close()


def _problems(path: Path) -> list[tuple[str, int]]:
    with Journal(path) as j:
        return [(p.kind, p.seq) for p in j.verify_audit().problems]


def test_canonical_json_is_order_independent_and_utf8() -> None:
    assert canonical({"b": 1, "a": "广"}) == canonical({"a": "广", "b": 1}) == '{"a":"广","b":1}'.encode()
    assert record_hash(GENESIS, {"a": 1}) != record_hash(GENESIS, {"a": 2})


def test_intact_chain_verifies_and_links_each_record_to_the_previous(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    with Journal(path) as j:
        recs = j.audit_records()
        report = j.verify_audit()
    assert report.ok and report.records == 6 and report.head_hash == recs[-1].hash
    assert recs[0].prev_hash == GENESIS and all(b.prev_hash == a.hash for a, b in zip(recs, recs[1:]))
    assert recs[0].actor == "ops@ctl" and recs[0].at.endswith("+00:00") and recs[0].detail == {"i": 1, "名": "广东"}


def test_edited_record_is_named(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    _sql(path, "UPDATE audit SET result = 'failed' WHERE seq = 3")
    assert _problems(path) == [("edited", 3)]


def test_edited_record_with_recomputed_hash_breaks_the_next_link(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    with Journal(path) as j:
        r = j.audit_records()[2]
    body = {**r.body(), "result": "failed"}
    _sql(path, f"UPDATE audit SET result = 'failed', hash = '{record_hash(r.prev_hash, body)}' WHERE seq = 3")
    assert _problems(path) == [("removed", 4)]  # record 4 links to a record that no longer exists


def test_removed_record_is_named(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    _sql(path, "DELETE FROM audit WHERE seq = 4")
    with Journal(path) as j:
        problems = j.verify_audit().problems
    assert [(p.kind, p.seq) for p in problems] == [("removed", 5)]
    assert "seq 4..4 missing" in problems[0].message


def test_removed_last_records_are_caught_by_the_head(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    _sql(path, "DELETE FROM audit WHERE seq >= 5")
    assert _problems(path) == [("truncated", 6), ("truncated", 5)]  # the journal's own head, then the head file


def test_reordered_records_are_named(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    cols = "at, actor, action, target, result, detail, prev_hash, hash"
    _sql(path, "CREATE TABLE t AS SELECT * FROM audit WHERE seq IN (3, 4)",
         "DELETE FROM audit WHERE seq IN (3, 4)",
         f"INSERT INTO audit (seq, {cols}) SELECT 7 - seq, {cols} FROM t")  # swap 3 and 4
    problems = _problems(path)
    assert problems[0] == ("reordered", 3) and {k for k, _ in problems} == {"reordered"}


def test_inserted_record_is_named(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    with Journal(path) as j:
        recs = j.audit_records()
    forged = AuditRecord(seq=0, at=recs[1].at, actor="intruder@x", action="migrate.cutover", target="sys-1", result="ok",
                         prev_hash=recs[1].hash)
    h = record_hash(forged.prev_hash, forged.body())  # a perfectly self-consistent forged record
    _sql(path, "UPDATE audit SET seq = seq + 100 WHERE seq >= 3", "UPDATE audit SET seq = seq - 99 WHERE seq >= 100",
         f"INSERT INTO audit VALUES (3, '{forged.at}', 'intruder@x', 'migrate.cutover', 'sys-1', 'ok', '{{}}', "
         f"'{forged.prev_hash}', '{h}')")
    assert _problems(path)[0] == ("inserted", 3)


def test_expected_head_catches_a_rewritten_log(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    with Journal(path) as j:
        head = j.verify_audit().head_hash
        assert j.verify_audit(expect_head=head).ok
    _sql(path, "DELETE FROM audit", "DELETE FROM audit_head")  # an empty log is self-consistent...
    assert _problems(path) == [("truncated", 1)]  # ...but no longer reaches its head file
    write_head(head_file(path), GENESIS_ANCHOR, "then")  # who rewrites the head file as well
    with Journal(path, create=False) as j:
        assert j.verify_audit().ok  # is caught only by a head kept elsewhere
        assert [p.kind for p in j.verify_audit(expect_head=head).problems] == ["head"]


def test_verify_chain_pure_lists_every_problem() -> None:
    recs: list[AuditRecord] = []
    prev = GENESIS
    for i in range(1, 4):
        r = AuditRecord(seq=i, at=f"t{i}", actor="a", action="x", target="s", result="ok", prev_hash=prev)
        r = AuditRecord(**{**r.__dict__, "hash": record_hash(prev, r.body())})
        recs.append(r)
        prev = r.hash
    assert verify_chain(recs, (3, prev)).ok
    bad = [recs[0], AuditRecord(**{**recs[1].__dict__, "result": "failed"}), recs[2]]
    assert [(p.kind, p.seq) for p in verify_chain(bad, (3, prev)).problems] == [("edited", 2)]


def test_cli_audit_verify_and_log(tmp_path: Path, run_cli: Callable[..., object]) -> None:
    path = _journal(tmp_path)
    ok = run_cli("--root", str(tmp_path), "audit", "verify", "--journal", str(path))
    assert ok.exit_code == 0, ok.stderr  # type: ignore[attr-defined]
    assert "audit log intact: 6 record(s), head 6 " in ok.stdout  # type: ignore[attr-defined]
    logged = run_cli("--root", str(tmp_path), "--output", "json", "audit", "log", "--journal", str(path), "--system", "sys-1")
    rows = json.loads(logged.stdout)  # type: ignore[attr-defined]
    assert [r["action"] for r in rows] == ["step1", "step3", "step5"] and rows[0]["actor"] == "ops@ctl"
    _sql(path, "UPDATE audit SET detail = '{\"i\": 99}' WHERE seq = 2")
    bad = run_cli("--root", str(tmp_path), "audit", "verify", "--journal", str(path))
    assert bad.exit_code == 1  # type: ignore[attr-defined]
    assert "error: edited: record 2 (step2 sys-0) does not match its hash" in bad.stderr  # type: ignore[attr-defined]
    assert "audit log of" in bad.stderr and "is tampered: 1 problem(s) in 6 record(s)" in bad.stderr  # type: ignore[attr-defined]


def test_cli_audit_without_a_journal_is_invalid_input(tmp_path: Path, run_cli: Callable[..., object]) -> None:
    r = run_cli("--root", str(tmp_path), "audit", "verify")
    assert r.exit_code == 2  # type: ignore[attr-defined]
    assert f"no migration journal at {tmp_path / '.govcloud' / 'journal.sqlite'}" in r.stderr  # type: ignore[attr-defined]
    assert not (tmp_path / ".govcloud").exists()  # verify never creates a journal


@pytest.mark.parametrize("env", [True, False])
def test_journal_path_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: bool,
                                   run_cli: Callable[..., object]) -> None:
    path = _journal(tmp_path / "elsewhere", 2)
    if env:
        monkeypatch.setenv("GOVCLOUD_JOURNAL", str(path))
        r = run_cli("--root", str(tmp_path), "audit", "verify")
    else:
        r = run_cli("--root", str(tmp_path), "audit", "verify", "--journal", str(path))
    assert r.exit_code == 0 and "2 record(s)" in r.stdout  # type: ignore[attr-defined]


def test_check_anchor_pure_behind_is_a_note_short_or_other_is_a_problem() -> None:
    recs: list[AuditRecord] = []
    prev = GENESIS
    for i in range(1, 4):
        r = AuditRecord(seq=i, at=f"t{i}", actor="a", action="x", target="s", result="ok", prev_hash=prev)
        recs.append(r := AuditRecord(**{**r.__dict__, "hash": record_hash(prev, r.body())}))
        prev = r.hash
    at = {r.seq: Anchor(r.seq, r.hash) for r in recs}
    assert check_anchor(recs, at[3], expected=True) == ([], [])
    problems, notes = check_anchor(recs, at[2], expected=True)  # an append between commit and head write
    assert problems == [] and notes[0].startswith("the head file is 1 record(s) behind the log (at record 2)")
    assert check_anchor(recs, GENESIS_ANCHOR, expected=True)[0] == []
    assert [(p.kind, p.seq) for p in check_anchor(recs[:2], at[3], expected=True)[0]] == [("truncated", 3)]
    assert [(p.kind, p.seq) for p in check_anchor([], at[3], expected=True)[0]] == [("truncated", 1)]
    assert [(p.kind, p.seq) for p in check_anchor(recs, Anchor(2, "f" * 64), expected=True)[0]] == [("replaced", 2)]
    assert [(p.kind, p.seq) for p in check_anchor(recs, None, expected=True)[0]] == [("head-file", 3)]
    assert check_anchor(recs, None, expected=False)[0] == []  # a journal from before head files: a note only
    report = verify_chain(recs[:2], None, None, at[3], anchor_expected=True)
    assert not report.ok and report.problems[0].message.startswith("record 3 is missing: the head file records 3")
