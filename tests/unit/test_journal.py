"""The migration journal on a real SQLite file: durability settings, forward schema migration,
intent-before/outcome-after transitions, crash evidence, facts, and wave locks held by real processes."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from govcloud.adapters.journal import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Journal,
    LockHolder,
    journal_path,
    lock_refusal,
)
from govcloud.errors import ExitCode, JournalError, JournalMissingError, WaveLockedError
from govcloud.migrate.state import Action, Event, IllegalTransition, State, Status

REPO = Path(__file__).resolve().parents[2]


def _child(code: str) -> subprocess.Popen[str]:
    """A real second process using the journal (as a second `govcloud migrate run` would)."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_default_path_and_durability_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOVCLOUD_JOURNAL", raising=False)
    path = journal_path(tmp_path)
    assert path == tmp_path / ".govcloud" / "journal.sqlite"
    with Journal(path) as j:
        assert j.pragma("journal_mode") == "wal"
        assert j.pragma("synchronous") == 2  # FULL
        assert j.schema_version == SCHEMA_VERSION == 3
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert journal_path(tmp_path, tmp_path / "x.sqlite") == tmp_path / "x.sqlite"


def test_schema_migrates_forward_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)  # a version-1 journal, as an older govcloud wrote it
    for stmt in MIGRATIONS[0]:
        db.execute(stmt)
    db.execute("INSERT INTO locks (plan, wave, run_id, pid, host, user, started_at) VALUES ('p', 1, 'r', 1, 'h', 'u', 't')")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Journal(path) as j:
        assert j.schema_version == SCHEMA_VERSION
        holder = j.lock_holder("p", 1)
        assert holder is not None and holder.run_id == "r" and holder.pid_starttime is None
        names = {r[0] for r in j._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"facts_by_system", "transitions_by_system", "audit_by_target"} <= names


def test_newer_schema_and_garbage_are_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite"
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(JournalError, match=f"schema version {SCHEMA_VERSION + 1}; this govcloud knows up to {SCHEMA_VERSION}"):
        Journal(newer)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(JournalError, match="not a readable SQLite database"):
        Journal(junk)
    with pytest.raises(JournalMissingError, match="no migration journal at") as missing:
        Journal(tmp_path / "missing.sqlite", create=False)
    assert missing.value.exit_code == ExitCode.INVALID_INPUT and not (tmp_path / "missing.sqlite").exists()


def test_intent_then_outcome_moves_the_state_and_audits_both(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite", actor="ops@ctl") as j:
        run = j.start_run("plan-a", 1)
        assert j.ensure_system("plan-a", "sys-1", 1) == Status()
        i = j.intent(run, "plan-a", "sys-1", Action.PREFLIGHT, {"hosts": 2})
        assert j.status("plan-a", "sys-1").state == State.PENDING  # intent alone changes nothing
        assert [t["id"] for t in j.open_intents("plan-a")] == [i]
        assert j.outcome(i, Event.PREFLIGHT_PASSED) == Status(State.PREFLIGHT, State.PREFLIGHT)
        assert j.open_intents("plan-a") == []
        i2 = j.intent(run, "plan-a", "sys-1", Action.PROVISION)
        with pytest.raises(IllegalTransition):
            j.outcome(i2, Event.VERIFIED)  # not allowed from preflight: nothing is written
        assert [t["id"] for t in j.open_intents()] == [i2]
        failed = j.outcome(i2, Event.FAILED, {"error": "quota"})
        assert failed == Status(State.FAILED, State.PREFLIGHT)
        assert j.mark(run, "plan-a", "sys-1", Event.RESUMED) == Status(State.PREFLIGHT, State.PREFLIGHT)
        j.finish_run(run, "failed")
        trans = j.transitions("plan-a", "sys-1")
        assert [(t["phase"], t["action"], t["from_state"], t["to_state"], t["result"]) for t in trans] == [
            ("intent", "preflight", "pending", None, "started"), ("outcome", "preflight", "pending", "preflight", "ok"),
            ("intent", "provision", "preflight", None, "started"),
            ("outcome", "provision", "preflight", "failed", "failed"), ("outcome", "resumed", "failed", "preflight", "ok")]
        assert trans[3]["detail"] == {"error": "quota"}
        actions = [(r.action, r.target, r.result) for r in j.audit_records()]
        assert actions == [("run.run", "plan-a/wave-1", "started"), ("migrate.preflight", "sys-1", "started"),
                           ("migrate.preflight", "sys-1", "ok"), ("migrate.provision", "sys-1", "started"),
                           ("migrate.provision", "sys-1", "failed"), ("migrate.resumed", "sys-1", "ok"),
                           ("run.run", "plan-a/wave-1", "failed")]
        assert j.verify_audit().ok
        assert j.runs("plan-a")[0]["status"] == "failed" and j.systems("plan-a")[0]["state"] == "preflight"


def test_facts_keep_every_measurement(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:
        j.record_fact("r1", "p", "s", "warm_sync", "bytes_sent", 1048576)
        j.record_fact("r2", "p", "s", "cutover", "bytes_sent", 4096)
        j.record_fact("r2", "p", "s", "cutover", "source_manifest", {"/srv/x": "ab" * 32})
        j.record_fact("r2", "p", "s", "provision", "server_ids", ["3f0c", "91aa"])
        j.record_fact("r2", "p", "s", "cutover", "downtime_seconds", 2.5)
        assert [f["value"] for f in j.facts("p", "s", "bytes_sent")] == [1048576, 4096]
        assert j.latest_fact("p", "s", "downtime_seconds") == 2.5
        assert j.latest_fact("p", "s", "server_ids") == ["3f0c", "91aa"]
        assert j.latest_fact("p", "other", "bytes_sent") is None


def test_a_crash_between_intent_and_outcome_leaves_resumable_evidence(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    child = _child(f"""
        import os, signal
        from pathlib import Path
        from govcloud.adapters.journal import Journal
        from govcloud.migrate.state import Action, Event
        j = Journal(Path({str(path)!r}))
        run = j.start_run("p", 1)
        j.ensure_system("p", "s", 1)
        j.outcome(j.intent(run, "p", "s", Action.PREFLIGHT), Event.PREFLIGHT_PASSED)
        j.intent(run, "p", "s", Action.PROVISION, {{"servers": ["s-app-01"]}})
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 in the middle of the side effect
    """)
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    with Journal(path) as j:
        assert j.status("p", "s") == Status(State.PREFLIGHT, State.PREFLIGHT)
        (open_,) = j.open_intents("p")
        assert (open_["action"], open_["detail"]) == ("provision", {"servers": ["s-app-01"]})
        assert j.verify_audit().ok and j.runs()[0]["status"] == "running"


def test_lock_message_names_the_holder() -> None:
    h = LockHolder(plan="p", wave=2, run_id="run-1", pid=4242, host="ctl-1", user="ops", started_at="2026-11-26T06:00:00+00:00")
    here = lock_refusal(h, this_host="ctl-1")
    assert here.message == ("wave 2 of plan p is already being migrated by run run-1 (pid 4242 on host ctl-1, user ops, "
                            "since 2026-11-26T06:00:00+00:00)")
    assert "kill 4242" in here.hint and here.exit_code == ExitCode.FAILURE and here.holder["pid"] == 4242
    there = lock_refusal(h, this_host="ctl-2")
    assert "runs on another host (ctl-1)" in there.hint and "--steal-lock" in there.hint


def test_second_run_of_a_wave_is_refused_while_the_holder_lives_and_taken_over_once_it_is_dead(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    holder = _child(f"""
        import sys
        from pathlib import Path
        from govcloud.adapters.journal import Journal
        j = Journal(Path({str(path)!r}), actor="alice@ctl")
        j.acquire_wave_lock("p", 1, "run-holder")
        print("locked", flush=True)
        sys.stdin.read()  # hold until told
    """)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with Journal(path, actor="bob@ctl") as j:
            with pytest.raises(WaveLockedError) as exc:
                j.acquire_wave_lock("p", 1, "run-second")
            msg = exc.value.message
            assert f"pid {holder.pid} on host {socket.gethostname()}, user alice" in msg and "run run-holder" in msg
            assert [r.result for r in j.audit_records() if r.action == "lock.acquire"] == ["ok", "refused"]
            with j.wave_lock("p", 2, "run-second"):  # another wave is free
                pass
            holder.kill()  # the holder dies without releasing
            holder.wait(timeout=30)
            taken = j.acquire_wave_lock("p", 1, "run-second")
            assert taken.pid == os.getpid()
            takeover = [r for r in j.audit_records() if r.action == "lock.takeover"]
            assert takeover and takeover[0].detail["reason"] == "stale" and takeover[0].detail["previous"]["pid"] == holder.pid
            assert j.release_wave_lock("p", 1, "run-second") and j.lock_holder("p", 1) is None
            assert j.verify_audit().ok
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)


def test_a_recycled_pid_is_not_mistaken_for_the_holder(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:
        j._db.execute("INSERT INTO locks VALUES ('p', 1, 'old', ?, ?, 'u', 't', 1)", (os.getpid(), socket.gethostname()))
        # the recorded holder has our pid but another start time: that process is gone, the pid reused
        assert j.acquire_wave_lock("p", 1, "new").run_id == "new"
        assert [r.detail.get("reason") for r in j.audit_records() if r.action == "lock.takeover"] == ["stale"]


def test_a_holder_on_another_host_needs_an_explicit_steal(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:
        j._db.execute("INSERT INTO locks VALUES ('p', 1, 'remote', 1, 'ctl-elsewhere', 'carol', 't', NULL)")
        with pytest.raises(WaveLockedError, match="pid 1 on host ctl-elsewhere, user carol"):
            j.acquire_wave_lock("p", 1, "mine")
        assert j.acquire_wave_lock("p", 1, "mine", steal=True).run_id == "mine"
        assert [r.detail.get("reason") for r in j.audit_records() if r.action == "lock.takeover"] == ["steal"]


def test_concurrent_writers_keep_one_unbroken_audit_chain(tmp_path: Path) -> None:
    """Three processes appending at once: BEGIN IMMEDIATE serialises them, the chain stays linear."""
    path = tmp_path / "j.sqlite"
    Journal(path).close()
    code = f"""
        import sys
        from pathlib import Path
        from govcloud.adapters.journal import Journal
        sys.stdin.readline()  # start together
        with Journal(Path({str(path)!r}), actor=f"w{{sys.argv[1]}}@ctl") as j:
            for i in range(60):
                j.audit("step", f"sys-{{i % 3}}", "ok", {{"i": i}})
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(n)], cwd=REPO, stdin=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in range(3)]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with Journal(path) as j:
        report = j.verify_audit()
        actors = {r.actor for r in j.audit_records()}
    assert report.ok and report.records == 180 and actors == {"w0@ctl", "w1@ctl", "w2@ctl"}
