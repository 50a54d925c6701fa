"""Names and paths from the command line stay where they belong (issue 29, finding 1): a plan name is a
plain file name under migration_plans/, `--out -` is standard output, every write is atomic and never
goes through a link, and a file-system error is a GovcloudError naming the path and the fix."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from govcloud.errors import InvalidInputError, RuntimeFailure
from govcloud.inventory import load_inventory
from govcloud.planning.waves import PlanOptions

REPO = Path(__file__).resolve().parents[2]
MINI = REPO / "tests" / "data" / "mini"


def _files(top: Path) -> dict[str, bytes]:
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


def test_a_name_with_dotdot_does_not_overwrite_the_inventories(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """The issue's scenario: `plan --name ../inventories/topology` wrote over topology.yaml (exit 0)."""
    before = _files(project / "inventories")
    r = run_cli("--root", str(project), "plan", "--name", "../inventories/topology")
    assert r.exit_code == 2, r.stdout + r.stderr
    assert "invalid plan name '../inventories/topology': it holds the path separator '/'" in r.stderr
    assert "for example --name inventories-topology" in r.stderr  # an allowed name is shown
    assert _files(project / "inventories") == before
    assert not (project / "migration_plans").exists()
    assert run_cli("--root", str(project), "validate").exit_code == 0


@pytest.mark.parametrize(("name", "problem"), [
    ("", "it is empty"),
    ("a/b", "it holds the path separator '/'"),
    (".hidden", "it starts with a dot"),
    ("..", "it starts with a dot"),
    ("x..y", "it holds '..'"),
    ("a\\b", "it holds the path separator '\\'"),
    ("line\nbreak", "unprintable character U+000A"),
])
def test_names_that_are_no_plain_file_names_exit_2_and_write_nothing(project: Path, run_cli, name: str,  # type: ignore[no-untyped-def]
                                                                    problem: str) -> None:
    r = run_cli("--root", str(project), "plan", "--name", name)
    assert r.exit_code == 2, r.stdout + r.stderr
    assert problem in r.stderr and "for example --name " in r.stderr
    assert not (project / "migration_plans").exists() and not (project / "a").exists()


def test_an_absolute_name_writes_nothing_anywhere(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    elsewhere = project.parent / "elsewhere"
    r = run_cli("--root", str(project), "plan", "--name", str(elsewhere / "evil"))
    assert r.exit_code == 2 and "invalid plan name" in r.stderr
    assert not elsewhere.exists()


def test_out_dash_is_standard_output(project: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(project)
    r = run_cli("--root", str(project), "plan", "--out", "-")
    assert r.exit_code == 0, r.stderr
    doc = yaml.safe_load(r.stdout)  # stdout is the plan file, nothing else
    assert doc["name"] == "wave-plan" and doc["content_digest"].startswith("sha256:")
    assert "plan written to standard output" in r.stderr
    assert not (project / "-").exists() and not (project / "migration_plans").exists()


def test_an_unwritable_out_is_a_govcloud_error_not_an_internal_one(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """`--out govcloud.yaml/plan.yaml` (a file where a directory should be) was `internal error: FileExistsError`."""
    r = run_cli("--root", str(project), "plan", "--out", str(project / "govcloud.yaml" / "plan.yaml"))
    assert r.exit_code == 2, r.stderr
    assert f"cannot write {project / 'govcloud.yaml' / 'plan.yaml'}: Not a directory" in r.stderr
    assert "hint: a part of the path is a file" in r.stderr and "internal error" not in r.stderr
    missing = run_cli("--root", str(project), "plan", "--out", str(project / "no-such-dir" / "plan.yaml"))
    assert missing.exit_code == 2 and "its directory does not exist" in missing.stderr
    assert not (project / "no-such-dir").exists()


def test_a_link_in_migration_plans_is_not_written_through(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    plans = project / "migration_plans"
    plans.mkdir()
    (plans / "wave-plan.yaml").symlink_to(project / "inventories" / "topology.yaml")
    before = (project / "inventories" / "topology.yaml").read_bytes()
    r = run_cli("--root", str(project), "plan")
    assert r.exit_code == 2 and "is a symbolic link" in r.stderr
    assert (project / "inventories" / "topology.yaml").read_bytes() == before


def test_a_failed_write_leaves_the_old_plan_whole_and_no_temporary_file(project: Path, run_cli,  # type: ignore[no-untyped-def]
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection (a full disk cannot be had on demand): fsync fails with ENOSPC."""
    assert run_cli("--root", str(project), "plan").exit_code == 0
    plan_file = project / "migration_plans" / "wave-plan.yaml"
    before = plan_file.read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    r = run_cli("--root", str(project), "plan", "--max-per-wave", "1")
    assert r.exit_code == 1, r.stderr
    assert f"cannot write {plan_file}: No space left on device" in r.stderr and "free space" in r.stderr
    assert plan_file.read_bytes() == before
    assert sorted(p.name for p in plan_file.parent.iterdir()) == ["wave-plan.yaml"]


def test_migrate_takes_plan_names_by_the_same_rule(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    r = run_cli("--root", str(project), "migrate", "run", "../inventories/topology", "--wave", "1", "--dry-run")
    assert r.exit_code == 2, r.stderr
    assert "no plan file ../inventories/topology, and it is no plan name: it holds the path separator '/'" in r.stderr


# ------------------------------------------------------------------ property: nothing outside migration_plans/

NAMES = st.text(alphabet=st.one_of(st.sampled_from(list("/\\.~-_ :*?\"'\n\t\x00ab")), st.characters()), max_size=24)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES)
@example(name="../inventories/topology")
@example(name="/proc/govcloud-plan")  # absolute: a place no test may write (the old code tried)
@example(name="")
@example(name=".")
@example(name="..")
@example(name="a/../../b")
@example(name="..\\..\\x")
@example(name="计划 第一批")
@example(name="x" * 300)
@example(name="\u202egnp.exe")
def test_no_plan_name_writes_outside_migration_plans(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from govcloud.services import planning

    inventory = load_inventory(MINI)
    monkeypatch.setattr(planning, "load_inventory", lambda root: inventory)  # the same inventories, faster
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        root = top / "project"
        (root / "inventories").mkdir(parents=True)
        (root / "govcloud.yaml").write_text("version: 1\n")
        plans = root / "migration_plans"
        try:
            made = planning.make_plan(root, PlanOptions(name))
        except InvalidInputError:
            made = None
        outside = [p for p in top.rglob("*") if p.is_file() and plans not in p.parents]
        assert sorted(str(p.relative_to(top)) for p in outside) == ["project/govcloud.yaml"]
        written = sorted(p.relative_to(plans) for p in plans.rglob("*")) if plans.exists() else []
        assert written == ([] if made is None else [Path(f"{name}.yaml")])  # one file, no directory, nothing hidden

    from govcloud.planning.names import plan_name_problem, suggest_plan_name

    assert (made is None) == (plan_name_problem(name) is not None)  # refused exactly by the rule
    assert plan_name_problem(suggest_plan_name(name)) is None  # the name an error message shows is allowed


def test_file_errors_map_to_exit_codes() -> None:
    from govcloud.adapters.files import file_error

    path = Path("/x/plan.yaml")
    assert isinstance(file_error(PermissionError(errno.EACCES, "Permission denied"), path, "write"), InvalidInputError)
    disk = file_error(OSError(errno.EIO, "Input/output error"), path, "write")
    assert isinstance(disk, RuntimeFailure) and not isinstance(disk, InvalidInputError)
    assert disk.message == "cannot write /x/plan.yaml: Input/output error"
