"""Plans are documents people edit (issue 29, finding 3): `govcloud plan` replaces a plan file only while
it is what govcloud last wrote (its content_digest holds); a hand-edited one needs --force, is kept as
NAME.yaml.~N~, and the systems that moved are named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The shipped Guangdong example (the issue's systems nr-slzy and zsj-pop-db are in it)."""
    shutil.copytree(REPO / "inventories", tmp_path / "inventories")
    (tmp_path / "govcloud.yaml").write_text("version: 1\n")
    return tmp_path


def move(plan_file: Path, system: str, wave: int) -> None:
    """Move ``system`` to ``wave`` as a person does: cut its line, paste it under the wave's systems."""
    lines = plan_file.read_text().splitlines()
    line = next(x for x in lines if x.strip().startswith(f"- {{id: {system},"))
    lines.remove(line)
    at = lines.index(f"  - number: {wave}")
    at = next(k for k in range(at, len(lines)) if lines[k].strip().startswith("systems:"))
    lines.insert(at + 1, line)
    plan_file.write_text("\n".join(lines) + "\n")


def wave_of(plan_file: Path, system: str) -> int:
    doc = yaml.safe_load(plan_file.read_text())
    return next(w["number"] for w in doc["waves"] for s in w["systems"] if s["id"] == system)


def test_a_hand_edited_plan_is_not_replaced_without_force(example: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """The issue's scenario: nr-slzy moved to wave 3 (plan check: ok); `govcloud plan` put it back in
    wave 1 without a word."""
    assert run_cli("--root", str(example), "plan").exit_code == 0
    plan_file = example / "migration_plans" / "wave-plan.yaml"
    move(plan_file, "nr-slzy", 3)
    assert run_cli("--root", str(example), "plan", "check", str(plan_file)).exit_code == 0
    edited = plan_file.read_bytes()

    r = run_cli("--root", str(example), "plan")
    assert r.exit_code == 4, r.stdout + r.stderr
    assert f"{plan_file} was edited since govcloud wrote it; the new plan would undo 1 change(s): " \
           "nr-slzy wave 3 -> 1; nothing was written" in r.stderr
    assert "--force" in r.stderr
    assert plan_file.read_bytes() == edited and wave_of(plan_file, "nr-slzy") == 3

    forced = run_cli("--root", str(example), "plan", "--force")
    assert forced.exit_code == 0, forced.stderr
    backup = plan_file.with_name("wave-plan.yaml.~1~")
    assert "1 system(s) moved from the old plan:" in forced.stdout and "nr-slzy wave 3 -> 1" in forced.stdout
    assert f"the edited plan is kept as {backup}" in forced.stdout
    assert backup.read_bytes() == edited and wave_of(plan_file, "nr-slzy") == 1

    move(plan_file, "nr-slzy", 3)  # a second edit, forced again: the next number, the first kept
    assert run_cli("--root", str(example), "plan", "--force").exit_code == 0
    assert plan_file.with_name("wave-plan.yaml.~2~").is_file() and backup.read_bytes() == edited


def test_planning_twice_in_a_row_needs_no_force(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    assert run_cli("--root", str(project), "plan").exit_code == 0
    plan_file = project / "migration_plans" / "wave-plan.yaml"
    first = plan_file.read_bytes()
    again = run_cli("--root", str(project), "plan")
    assert again.exit_code == 0, again.stderr
    assert f"plan unchanged: {plan_file} already holds it" in again.stdout
    assert plan_file.read_bytes() == first
    # other options, same inventories: govcloud's own file is replaced without --force, the moves named
    other = run_cli("--root", str(project), "plan", "--max-per-wave", "1")
    assert other.exit_code == 0, other.stderr
    assert "system(s) moved from the old plan:" in other.stdout and "wave 1 -> 2" in other.stdout
    assert sorted(p.name for p in plan_file.parent.iterdir()) == ["wave-plan.yaml"]  # nothing to keep


def test_a_plan_written_before_plans_were_sealed_is_replaced_without_force(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """A plan the previous govcloud wrote (no content_digest line) and the inventories unchanged."""
    from govcloud.planning.planfile import unseal

    assert run_cli("--root", str(project), "plan").exit_code == 0
    plan_file = project / "migration_plans" / "wave-plan.yaml"
    sealed = plan_file.read_text()
    plan_file.write_text(unseal(sealed)[0])
    r = run_cli("--root", str(project), "plan")
    assert r.exit_code == 0, r.stderr
    assert "no system moved" in r.stdout and plan_file.read_text() == sealed


def test_a_file_that_is_no_plan_is_kept_unless_forced(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    topo = project / "inventories" / "topology.yaml"
    before = topo.read_bytes()
    r = run_cli("--root", str(project), "plan", "--out", str(topo))
    assert r.exit_code == 4 and "is not a plan govcloud wrote" in r.stderr
    assert topo.read_bytes() == before


def test_the_seal_notices_any_edit_and_the_plan_schema_accepts_it(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    from govcloud.planning.planfile import unseal, written_by_govcloud

    assert run_cli("--root", str(project), "plan").exit_code == 0
    plan_file = project / "migration_plans" / "wave-plan.yaml"
    text = plan_file.read_text()
    assert written_by_govcloud(text, text)
    assert not written_by_govcloud(text.replace("# Made by", "# made by"), text)  # even a comment
    assert not written_by_govcloud(text + "# note\n", text)
    body, claimed = unseal(text)
    assert claimed is not None and "content_digest" not in body
    check = run_cli("--root", str(project), "plan", "check", str(plan_file))  # the schema allows the key
    assert check.exit_code == 0 and "satisfies every constraint" in check.stdout
