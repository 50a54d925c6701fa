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


def test_status_and_resume_without_a_journal_say_so(tmp_path: Path) -> None:
    root = _root(tmp_path)
    r = CliRunner().invoke(cli, ["--root", str(root), "migrate", "status"])
    assert r.exit_code == 1 and "no journal at" in r.stderr
    r = CliRunner().invoke(cli, ["--root", str(root), "migrate", "resume"])
    assert r.exit_code == 1 and "no journal at" in r.stderr
    assert not (root / ".govcloud" / "journal.sqlite").exists()
