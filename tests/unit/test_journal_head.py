"""The journal's head file (``<journal>.head``) on real files and processes: written with every append,
never ahead of the journal (a kill -9 between commit and head write leaves it behind, which verifies),
kept in step by threads and processes appending together, exported to syslog when asked; appends to a
journal that no longer reaches it are refused until `audit reanchor --yes`; reading opens nothing for
writing and leaves no file behind."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from govcloud.adapters import journal_files
from govcloud.adapters.journal import Journal
from govcloud.adapters.journal_files import (
    HEAD_FORMAT,
    head_file,
    lock_file,
    parse_head,
    read_head,
    wal_file,
)
from govcloud.errors import AuditTamperedError, InvalidInputError, JournalError
from govcloud.migrate.auditchain import GENESIS, GENESIS_ANCHOR, Anchor

REPO = Path(__file__).resolve().parents[2]
Run = Callable[..., Any]


def _journal(path: Path, n: int = 3) -> Path:
    with Journal(path, actor="ops@ctl") as j:
        for i in range(n):
            j.audit("note", "sys", "ok", {"i": i})
    return path


def _db_head(path: Path) -> Anchor:
    db = sqlite3.connect(path)
    seq, digest = db.execute("SELECT seq, hash FROM audit_head").fetchone()
    db.close()
    return Anchor(seq, digest)


def _verify(path: Path) -> Any:
    with Journal(path, create=False) as j:
        return j.verify_audit()


def test_a_new_journal_has_its_head_file_before_its_first_record_and_after_every_append(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        assert read_head(head_file(path)) == GENESIS_ANCHOR
        for i in range(3):
            rec = j.audit("note", "sys", "ok", {"i": i})
            assert read_head(head_file(path)) == Anchor(rec.seq, rec.hash) == _db_head(path)
    text = head_file(path).read_text()
    assert parse_head(text) == _db_head(path) and f'"format": "{HEAD_FORMAT}"' in text and '"journal": "j.sqlite"' in text
    assert head_file(path).stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.sqlite", "j.sqlite.head", "j.sqlite.lock"]  # no temp file


def test_a_kill_between_commit_and_head_write_leaves_a_head_behind_that_verifies(tmp_path: Path) -> None:
    path = _journal(tmp_path / "j.sqlite", 2)
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        import govcloud.adapters.journal as journal
        journal.write_head = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # dies right after the COMMIT
        journal.Journal(Path({str(path)!r})).audit("migrate.cutover", "sys", "ok")
        """)], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert read_head(head_file(path)) == Anchor(2, _journal_hash(path, 2)) and _db_head(path).seq == 3
    report = _verify(path)
    assert report.ok and report.records == 3
    assert report.notes == (("the head file is 1 record(s) behind the log (at record 2): an append was between its "
                             "commit and its head write (under way, or interrupted by a crash); the records after it "
                             "chain from it, and the next append brings the head file up to date"),)
    with Journal(path) as j:  # the next append is not refused, and catches the head file up
        j.audit("migrate.verify", "sys", "ok")
    assert read_head(head_file(path)) == _db_head(path) and _verify(path).notes == ()


def _journal_hash(path: Path, seq: int) -> str:
    db = sqlite3.connect(path)
    digest = str(db.execute("SELECT hash FROM audit WHERE seq = ?", (seq,)).fetchone()[0])
    db.close()
    return digest


def test_threads_and_a_process_appending_together_keep_the_head_file_in_step(tmp_path: Path) -> None:
    path = _journal(tmp_path / "j.sqlite", 1)
    seen: list[int] = []
    done = threading.Event()

    def sample() -> None:  # the head file never goes backwards, and is never torn
        while not done.is_set():
            anchor = read_head(head_file(path))
            assert anchor is not None
            seen.append(anchor.seq)

    def append(n: int) -> None:
        with Journal(path, actor=f"t{n}@ctl") as j:
            for i in range(15):
                j.audit("note", f"sys-{n}", "ok", {"i": i})

    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from pathlib import Path
        from govcloud.adapters.journal import Journal
        with Journal(Path({str(path)!r}), actor="proc@ctl") as j:
            for i in range(15):
                j.audit("note", "sys-p", "ok", {{"i": i}})
        """)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    threads = [threading.Thread(target=sample), *(threading.Thread(target=append, args=(n,)) for n in range(3))]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join(timeout=120)
    _, err = child.communicate(timeout=120)
    done.set()
    threads[0].join(timeout=10)
    assert child.returncode == 0, err
    assert seen == sorted(seen) and seen[-1] <= 61
    report = _verify(path)
    assert report.ok and report.records == 61 and report.notes == ()
    assert read_head(head_file(path)) == _db_head(path) == Anchor(61, report.head_hash)


def test_appends_to_a_journal_that_no_longer_reaches_its_head_file_are_refused(tmp_path: Path, run_cli: Run) -> None:
    path = _journal(tmp_path / ".govcloud" / "journal.sqlite", 3)
    db = sqlite3.connect(path)
    with db:
        db.execute("DELETE FROM audit WHERE seq = 3")
        db.execute("UPDATE audit_head SET seq = 2, hash = (SELECT hash FROM audit WHERE seq = 2)")
    db.close()
    with Journal(path) as j, pytest.raises(AuditTamperedError, match="its head file .* records record 3") as refused:
        j.start_run("plan", 1)
    assert "govcloud audit reanchor --yes" in refused.value.hint
    with Journal(path, create=False) as j:
        assert len(j.audit_records()) == 2 and j.runs() == []  # the refused transaction left nothing
    r = run_cli("--root", str(tmp_path), "audit", "reanchor")
    assert r.exit_code == 4 and "not re-anchoring" in r.stderr
    r = run_cli("--root", str(tmp_path), "audit", "reanchor", "--yes")
    assert r.exit_code == 0 and "re-anchored: record 3 (audit.reanchor)" in r.stdout, r.stderr
    with Journal(path, create=False) as j:
        last = j.audit_records()[-1]
        assert last.action == "audit.reanchor" and last.detail["previous_head_file"]["seq"] == 3
        assert last.detail["journal_head"]["seq"] == 2 and j.verify_audit().ok
    with Journal(path) as j:
        j.start_run("plan", 1)  # appends again


@pytest.mark.parametrize("damage", ["lost", "garbage"])
def test_a_lost_or_unreadable_head_file_refuses_appends_and_fails_verify(tmp_path: Path, damage: str) -> None:
    path = _journal(tmp_path / "j.sqlite")
    if damage == "lost":
        head_file(path).unlink()
    else:
        head_file(path).write_text("{not json")
    report = _verify(path)
    assert [p.kind for p in report.problems] == ["head-file"]
    assert ("is missing" if damage == "lost" else "is unreadable") in report.problems[0].message
    with Journal(path) as j, pytest.raises(AuditTamperedError, match="refusing to append"):
        j.audit("note", "sys", "ok")
    with Journal(path) as j:
        j.reanchor()
    assert _verify(path).ok


def test_a_deleted_journal_is_not_silently_started_afresh(tmp_path: Path) -> None:
    path = _journal(tmp_path / "j.sqlite")
    path.unlink()
    with pytest.raises(AuditTamperedError, match="is missing but its head file .* records 3 audit record"):
        Journal(path)
    assert not path.exists()
    path.write_bytes(b"")  # emptied rather than deleted: the same
    with pytest.raises(AuditTamperedError, match="is empty but its head file"):
        Journal(path)
    assert path.stat().st_size == 0
    path.unlink()
    head_file(path).rename(tmp_path / "kept.head")  # starting afresh on purpose: move the head file away too
    with Journal(path) as j:
        assert j.audit("note", "sys", "ok").seq == 1


def test_a_journal_of_an_older_govcloud_verifies_and_gets_its_head_file_on_first_write(tmp_path: Path) -> None:
    path = _journal(tmp_path / "j.sqlite")
    head_file(path).unlink()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 2")  # as govcloud wrote journals before head files
    db.close()
    report = _verify(path)
    assert report.ok and report.notes == (("no head file yet: the journal was last written by a govcloud that kept "
                                           "none; its next append writes one"),)
    assert not head_file(path).exists()  # reading adopted nothing
    with Journal(path) as j:
        assert j.schema_version == 3
    assert read_head(head_file(path)) == _db_head(path)
    assert _verify(path).ok and _verify(path).notes == ()


def test_reading_leaves_no_file_and_sees_what_a_live_writer_committed(tmp_path: Path) -> None:
    path = _journal(tmp_path / "j.sqlite")
    quiet = sorted(p.name for p in tmp_path.iterdir())
    with Journal(path, create=False) as j:
        assert len(j.audit_records()) == 3 and j.schema_version == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == quiet  # no -wal, no -shm
    with Journal(path) as writer:
        writer.audit("note", "sys", "ok")
        assert wal_file(path).exists()
        with Journal(path, create=False) as j:
            assert len(j.audit_records()) == 4 and j.verify_audit().ok
            with pytest.raises(JournalError, match="opened read-only"):
                j.audit("note", "sys", "ok")


def test_a_reader_of_the_quiet_file_holds_writers_off_until_it_closes(tmp_path: Path) -> None:
    """Read as ``immutable`` (no -wal: nothing to merge), the main file must not change underneath."""
    path = _journal(tmp_path / "j.sqlite")
    reader = Journal(path, create=False)
    appended = threading.Event()

    def write() -> None:
        with Journal(path) as j:
            j.audit("note", "sys", "ok")
        appended.set()

    t = threading.Thread(target=write)
    t.start()
    time.sleep(0.3)
    assert not appended.is_set() and len(reader.audit_records()) == 3
    reader.close()
    t.join(timeout=30)
    assert appended.is_set() and _verify(path).records == 4


def test_an_empty_file_reads_as_an_empty_journal_and_stays_empty(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    path.write_bytes(b"")
    with Journal(path, create=False) as j:
        assert j.audit_records() == [] and j.systems() == [] and j.audit_head() is None
        report = j.verify_audit()
    assert [p.kind for p in report.problems] == ["head-file"]  # no journal written by govcloud is ever this
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.sqlite"] and path.stat().st_size == 0


def test_each_head_goes_to_syslog_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(journal_files.syslog, "openlog", lambda *a: sent.append(("openlog", *a)))
    monkeypatch.setattr(journal_files.syslog, "syslog", lambda *a: sent.append(("syslog", *a)))
    monkeypatch.setenv("GOVCLOUD_AUDIT_SYSLOG", "local3")
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        rec = j.audit("note", "sys", "ok", {"password": "hunter2"})
    assert sent == [("openlog", "govcloud-audit", journal_files.syslog.LOG_PID, journal_files.syslog.LOG_LOCAL3),
                    ("syslog", journal_files.syslog.LOG_INFO,
                     f"audit head journal={path.resolve()} seq=1 hash={rec.hash}")]  # never a record's detail
    monkeypatch.setenv("GOVCLOUD_AUDIT_SYSLOG", "kern")
    with pytest.raises(InvalidInputError, match="GOVCLOUD_AUDIT_SYSLOG=kern: not a syslog facility"):
        Journal(path)


def test_the_head_file_parser_refuses_what_is_not_a_head() -> None:
    good = {"format": HEAD_FORMAT, "seq": 2, "hash": "a" * 64}
    assert parse_head(journal_files.json.dumps(good)) == Anchor(2, "a" * 64)
    for bad in ({**good, "format": "x"}, {**good, "seq": -1}, {**good, "seq": True}, {**good, "hash": "A" * 64},
                {**good, "hash": GENESIS[:-1]}, [good]):
        with pytest.raises(ValueError):
            parse_head(journal_files.json.dumps(bad))


def test_the_lock_file_is_the_journals_own(tmp_path: Path) -> None:
    assert lock_file(tmp_path / "j.sqlite") == tmp_path / "j.sqlite.lock"
    assert head_file(tmp_path / "j.sqlite") == tmp_path / "j.sqlite.head"
    assert os.path.basename(wal_file(tmp_path / "j.sqlite")) == "j.sqlite-wal"
