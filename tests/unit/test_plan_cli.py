"""`govcloud plan`, `plan check` and `plan diff` on the mini and the shipped example inventories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def example(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "inventories", tmp_path / "inventories")
    (tmp_path / "govcloud.yaml").write_text("version: 1\n")
    return tmp_path


def test_shipped_example_validates_plans_and_checks(example: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    v = run_cli("--root", str(example), "validate")
    assert v.exit_code == 0, v.stderr
    assert "200 systems" in v.stdout and "0 warning(s)" in v.stdout
    p = run_cli("--root", str(example), "plan")
    assert p.exit_code == 0, p.stderr
    plan_file = example / "migration_plans" / "wave-plan.yaml"
    assert plan_file.is_file()
    c = run_cli("--root", str(example), "plan", "check", str(plan_file))
    assert c.exit_code == 0, c.stderr
    assert "satisfies every constraint" in c.stdout


def test_plan_is_byte_identical_on_rerun(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    assert run_cli("--root", str(project), "plan").exit_code == 0
    first = (project / "migration_plans/wave-plan.yaml").read_bytes()
    assert run_cli("--root", str(project), "plan", "--out", str(project / "again.yaml")).exit_code == 0
    assert (project / "again.yaml").read_bytes() == first


def test_plan_json_output(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    r = run_cli("--root", str(project), "--output", "json", "plan", "--dry-run", "--name", "x")
    assert r.exit_code == 0, r.stderr
    payload = json.loads(r.stdout)
    assert payload["path"] is None and payload["name"] == "x"
    assert sum(len(w["systems"]) for w in payload["waves"]) == 4
    assert not (project / "migration_plans" / "x.yaml").exists()


def test_plan_on_invalid_inventory_exits_2_and_writes_nothing(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    hrss = project / "inventories/departments/hrss.yaml"
    hrss.write_text(hrss.read_text().replace("zsj-pop-db,", "zsj-pop-dbb,"))
    r = run_cli("--root", str(project), "plan")
    assert r.exit_code == 2
    assert "unknown system 'zsj-pop-dbb'" in r.stderr
    assert not (project / "migration_plans").exists()


def test_capacity_shortfall_names_the_site(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    topo = project / "inventories/topology.yaml"
    topo.write_text(topo.read_text().replace("st-a: {availability_zone: st-a, capacity: {vcpus: 32,",
                                             "st-a: {availability_zone: st-a, capacity: {vcpus: 12,"))
    r = run_cli("--root", str(project), "plan")
    assert r.exit_code == 2
    assert "site st-a is short by" in r.stderr and "vCPU" in r.stderr


def test_check_lists_every_violation(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    assert run_cli("--root", str(project), "plan").exit_code == 0
    plan_file = project / "migration_plans/wave-plan.yaml"
    text = plan_file.read_text()
    # move hrss-si's dependency zsj-pop-db to a new second wave, and put a stranger in
    lines = text.splitlines()
    pop = next(line for line in lines if "id: zsj-pop-db" in line)
    lines.remove(pop)
    lines += ["  - number: 2", '    window: {days: [sat], start: "23:00", end: "04:00"}', "    systems:", pop,
              "      - {id: nobody, placement: {primary: gz-a}}"]
    plan_file.write_text("\n".join(lines) + "\n")
    r = run_cli("--root", str(project), "plan", "check", str(plan_file))
    assert r.exit_code == 2
    assert "unknown system 'nobody'" in r.stderr
    assert "depends on 'zsj-pop-db', which moves later (wave 2)" in r.stderr
    assert f"{plan_file}:" in r.stderr


def test_check_warns_when_inventory_changed(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    assert run_cli("--root", str(project), "plan").exit_code == 0
    hrss = project / "inventories/departments/hrss.yaml"
    hrss.write_text(hrss.read_text().replace("rto_minutes: 60", "rto_minutes: 45"))
    r = run_cli("--root", str(project), "plan", "check", str(project / "migration_plans/wave-plan.yaml"))
    assert r.exit_code == 0
    assert "the inventories changed since this plan was made" in r.stderr


def test_diff_shows_moved_systems(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    assert run_cli("--root", str(project), "plan").exit_code == 0
    old = project / "migration_plans/wave-plan.yaml"
    assert run_cli("--root", str(project), "plan", "--max-per-wave", "1", "--out", str(project / "new.yaml")).exit_code == 0
    r = run_cli("--root", str(project), "plan", "diff", str(old), str(project / "new.yaml"))
    assert r.exit_code == 3
    assert "wave 1 -> 2" in r.stdout
    same = run_cli("--root", str(project), "plan", "diff", str(old), str(old))
    assert same.exit_code == 0 and "no differences" in same.stdout


def test_unreadable_plan_file_is_invalid_input(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    r = run_cli("--root", str(project), "plan", "check", str(project / "missing.yaml"))
    assert r.exit_code == 2
    assert "cannot read plan" in r.stderr


def test_root_is_found_from_a_subdirectory(project: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    sub = project / "inventories" / "departments"
    monkeypatch.chdir(sub)
    r = run_cli("validate")
    assert r.exit_code == 0, r.stderr


def test_internal_error_has_no_traceback_unless_debug(project: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Fault injection (a bug cannot be produced on demand): the boundary hides the traceback."""
    import govcloud.inventory

    def boom(root: Path) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(govcloud.inventory, "validate_inventory", boom)
    plain = run_cli("--root", str(project), "validate")
    assert plain.exit_code == 1
    assert "internal error: RuntimeError: simulated bug" in plain.stderr and "Traceback" not in plain.stderr
    debug = run_cli("--root", str(project), "--debug", "validate")
    assert debug.exit_code == 1 and "Traceback" in debug.stderr


def test_interrupt_exits_130(project: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Fault injection: Ctrl-C during a command."""
    import govcloud.inventory

    def interrupted(root: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(govcloud.inventory, "validate_inventory", interrupted)
    r = run_cli("--root", str(project), "validate")
    assert r.exit_code == 130 and "interrupted" in r.stderr
