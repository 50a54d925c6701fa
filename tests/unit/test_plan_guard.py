"""The engine checks the plan it runs (issue 29, finding 4): `migrate run` (dry run included) runs `plan
check` first; a violated plan is refused (exit 2) with the same messages, a stale one (exit 4) unless
--allow-stale-plan, which the run audits."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from govcloud.inventory import load_inventory
from govcloud.services.migration.options import MigrateOptions
from tests.unit.test_plan_edits import move

REPO = Path(__file__).resolve().parents[2]
MIG = REPO / "tests" / "data" / "mig"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The shipped Guangdong example (the issue's zsj-pop-db is in it)."""
    shutil.copytree(REPO / "inventories", tmp_path / "inventories")
    (tmp_path / "govcloud.yaml").write_text("version: 1\n")
    return tmp_path


def _diagnostic_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ": waves[" in line or line.startswith("  hint: move")]


def test_a_violated_plan_is_refused_with_the_messages_of_plan_check(example: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """The issue's scenario: zsj-pop-db moved to wave 8; `plan check` reports 33 violations, yet
    `migrate run --dry-run` printed wave 1 and exited 0."""
    assert run_cli("--root", str(example), "plan").exit_code == 0
    plan_file = example / "migration_plans" / "wave-plan.yaml"
    move(plan_file, "zsj-pop-db", 8)
    check = run_cli("--root", str(example), "plan", "check", str(plan_file))
    assert check.exit_code == 2 and f"33 violation(s) in {plan_file}" in check.stderr

    r = run_cli("--root", str(example), "migrate", "run", "wave-plan", "--wave", "1", "--dry-run")
    assert r.exit_code == 2, r.stdout[-2000:] + r.stderr
    assert f"error: 33 violation(s) in {plan_file}; nothing was run" in r.stderr
    assert _diagnostic_lines(r.stderr) == _diagnostic_lines(check.stderr) and len(_diagnostic_lines(r.stderr)) >= 33
    assert r.stdout == "" and not (example / ".govcloud").exists()
    allowed = run_cli("--root", str(example), "migrate", "run", "wave-plan", "--wave", "1", "--dry-run",
                      "--allow-stale-plan")
    assert allowed.exit_code == 2  # the flag is for staleness only: a violated plan never runs


def test_a_fresh_plan_runs_as_the_demo_runs_it(example: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    assert run_cli("--root", str(example), "plan").exit_code == 0
    r = run_cli("--root", str(example), "migrate", "run", "wave-plan", "--wave", "1", "--dry-run")
    assert r.exit_code == 0, r.stderr
    assert "zsj-pop-db [pending]: preflight -> provision" in r.stdout and "warning" not in r.stderr


def test_a_stale_plan_is_refused_unless_allowed(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """The inventories changed between waves: the plan's inventory_digest is no longer theirs."""
    assert run_cli("--root", str(project), "plan").exit_code == 0
    hrss = project / "inventories/departments/hrss.yaml"
    hrss.write_text(hrss.read_text().replace("rto_minutes: 60", "rto_minutes: 45"))
    plan_file = project / "migration_plans" / "wave-plan.yaml"
    warning = f"{plan_file}:5:19: inventory_digest: warning: the inventories changed since this plan was made"

    r = run_cli("--root", str(project), "migrate", "run", "wave-plan", "--wave", "1", "--dry-run")
    assert r.exit_code == 4, r.stdout + r.stderr
    assert warning in r.stderr
    assert f"error: {plan_file} was made from other inventories" in r.stderr and "--allow-stale-plan" in r.stderr
    assert r.stdout == ""

    ok = run_cli("--root", str(project), "migrate", "run", "wave-plan", "--wave", "1", "--dry-run",
                 "--allow-stale-plan")
    assert ok.exit_code == 0, ok.stderr
    assert warning in ok.stderr and "[pending]" in ok.stdout
    assert not (project / ".govcloud").exists()  # a dry run writes nothing, not even the audit


def test_the_hand_written_test_and_bench_plans_are_current() -> None:
    """tests/data/mig/plan.yaml and bench/mig/plan.yaml carry their inventories' digest, so the
    integration tests and the bench pass the engine's check (edit an inventory there: update it)."""
    from govcloud.services.migration.planguard import vet_plan

    for base in (MIG, REPO / "bench" / "mig"):
        check = vet_plan(base, MigrateOptions(plan_file=base / "plan.yaml", wave=1, known_hosts=Path("/x")),
                         load_inventory(base))
        assert not check.stale and not check.errors, base


def test_allow_stale_plan_is_audited_by_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real run (fake ports) of the tmig plan after its inventories changed."""
    from govcloud.adapters.journal import Journal
    from govcloud.errors import StalePlanError
    from govcloud.services.migration import app
    from tests.unit.migration_fakes import world

    root = tmp_path / "root"
    shutil.copytree(MIG / "inventories", root / "inventories")
    (root / "govcloud.yaml").write_text("version: 1\n")
    topo = root / "inventories" / "topology.yaml"
    topo.write_text(topo.read_text() + "# changed after the plan was made\n")
    monkeypatch.setenv("GOVCLOUD_STATE_DIR", str(tmp_path / "state"))
    w = world(tmp_path)
    inventory = load_inventory(root)
    for s in inventory.systems:
        for h in s.hosts:
            trees = {p: {"a.dat": f"{h.name}:{p}".encode()} for p in h.data}
            trees["/srv/app"] = {"sampleapp.py": b"print('app')"}  # the declared sample app's directory
            w.hosts.add(h.address, trees, running=True)
    (tmp_path / "known_hosts").write_text("")
    monkeypatch.setattr(app, "real_ports", lambda *a, **k: w.ports())
    options = MigrateOptions(plan_file=MIG / "plan.yaml", wave=1, known_hosts=tmp_path / "known_hosts",
                             systems=("tmig-db",), journal=tmp_path / "journal.sqlite", outside_window=True,
                             health_timeout=0.5)
    with pytest.raises(StalePlanError):
        app.run(root, options)
    assert not (tmp_path / "journal.sqlite").exists()  # refused before anything was opened

    from dataclasses import replace

    summary = app.run(root, replace(options, allow_stale_plan=True))
    assert summary.ok, summary.results
    assert [d.path for d in summary.plan_warnings] == ["inventory_digest"]
    with Journal(tmp_path / "journal.sqlite") as j:
        records = [r for r in j.audit_records() if r.action == "plan.allow_stale"]
        recorded = j.runs("tmig")[-1]["options"]
    assert len(records) == 1 and records[0].target == "tmig/wave-1" and records[0].result == "allowed"
    assert records[0].detail["run_id"] == summary.run_id
    assert records[0].detail["plan_digest"] == load_inventory(MIG).digest
    assert records[0].detail["inventory_digest"] == inventory.digest
    assert recorded["allow_stale_plan"] is True  # `migrate resume` repeats the choice
