"""`govcloud migrate` commands that touch nothing: the dry run prints each system's step plan and
servers; asking about a journal that does not exist is an error, never a new file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from govcloud.cli.main import cli

MIG = Path(__file__).resolve().parents[1] / "data" / "mig"


def _root(tmp_path: Path) -> Path:
    shutil.copytree(MIG / "inventories", tmp_path / "inventories")
    (tmp_path / "govcloud.yaml").write_text("version: 1\n")
    return tmp_path


def test_dry_run_prints_the_step_plan_and_servers_and_writes_nothing(tmp_path: Path) -> None:
    root = _root(tmp_path)
    r = CliRunner().invoke(cli, ["--root", str(root), "--output", "json", "migrate", "run", str(MIG / "plan.yaml"),
                                 "--wave", "1", "--dry-run", "--manual-cutover"])
    assert r.exit_code == 0, r.output
    doc = {d["system"]: d for d in json.loads(r.stdout)}
    assert doc["tmig-db"]["steps"] == ["preflight", "provision", "warm_sync"]
    assert "govcloud migrate cutover tmig-db" in doc["tmig-db"]["note"]
    assert [s["site"] for s in doc["tmig-app"]["servers"]] == ["gz-b", "st-a"]
    assert not (root / ".govcloud").exists()


def test_unknown_system_of_the_wave_is_invalid_input(tmp_path: Path) -> None:
    root = _root(tmp_path)
    r = CliRunner().invoke(cli, ["--root", str(root), "migrate", "run", str(MIG / "plan.yaml"), "--wave", "1",
                                 "--systems", "tmig-bad", "--dry-run"])
    assert r.exit_code == 2 and "not in wave 1 of plan tmig: tmig-bad" in r.stderr


def test_status_log_and_resume_without_a_journal_are_invalid_input(tmp_path: Path) -> None:
    """A missing journal is exit 2 in every command that reads one (as in `audit verify`)."""
    root = _root(tmp_path)
    for args in (["migrate", "status"], ["migrate", "log", "tmig-db"], ["migrate", "resume"]):
        r = CliRunner().invoke(cli, ["--root", str(root), *args])
        assert r.exit_code == 2 and "no migration journal at" in r.stderr, (args, r.output)
    assert not (root / ".govcloud").exists()


def _journal(root: Path) -> Path:
    """A journal that knows plan tmig and its system tmig-db (as a `migrate run` leaves it)."""
    from govcloud.adapters.journal import Journal

    path = root / ".govcloud" / "journal.sqlite"
    with Journal(path, actor="ops@ctl") as j:
        j.start_run("tmig", 1)
        j.ensure_system("tmig", "tmig-db", 1)
    return path


def test_an_unknown_plan_in_status_is_invalid_input(tmp_path: Path) -> None:
    """Issue 29: `migrate status nosuchplan` printed an empty table and exited 0."""
    root = _root(tmp_path)
    _journal(root)
    r = CliRunner().invoke(cli, ["--root", str(root), "migrate", "status", "nosuchplan"])
    assert r.exit_code == 2, r.output
    assert "error: plan nosuchplan is not in the journal" in r.stderr and "hint: plans it knows: tmig" in r.stderr
    r = CliRunner().invoke(cli, ["--root", str(root), "--output", "json", "migrate", "status", "tmig"])
    assert r.exit_code == 0 and [row["system"] for row in json.loads(r.stdout)] == ["tmig-db"]


def test_an_unknown_system_in_log_is_invalid_input(tmp_path: Path) -> None:
    root = _root(tmp_path)
    _journal(root)
    r = CliRunner().invoke(cli, ["--root", str(root), "migrate", "log", "nosuchsystem"])
    assert r.exit_code == 2 and "error: system nosuchsystem is not in the journal" in r.stderr, r.output


def test_status_and_log_read_an_empty_journal_without_writing_it(tmp_path: Path) -> None:
    """Issue 29: reading an empty (0-byte) journal turned it into a 61,440-byte database."""
    root = _root(tmp_path)
    path = root / ".govcloud" / "journal.sqlite"
    path.parent.mkdir()
    path.write_bytes(b"")
    r = CliRunner().invoke(cli, ["--root", str(root), "--output", "json", "migrate", "status"])
    assert r.exit_code == 0 and json.loads(r.stdout) == [], r.output
    assert [p.name for p in path.parent.iterdir()] == ["journal.sqlite"] and path.stat().st_size == 0
    assert CliRunner().invoke(cli, ["--root", str(root), "migrate", "status", "tmig"]).exit_code == 2
    assert CliRunner().invoke(cli, ["--root", str(root), "migrate", "log", "tmig-db"]).exit_code == 2
    assert [p.name for p in path.parent.iterdir()] == ["journal.sqlite"] and path.stat().st_size == 0
