"""Bad input stops `govcloud migrate run` with exit 2 at its place, and boots nothing (issue 30,
acceptance check 3).

A service with no control and a hook naming a host the system does not have are the inventories'
errors `validate` reports: `migrate run` loads the inventories first and stops there, before the
journal is opened. A health check on a port nothing listens on, a host whose OS has no image in a
region its targets go to, and an unknown ``ansible_role`` can only be seen by the preflight; as long
as every problem it finds is of that kind (``Diagnostic.cause`` "input") it exits 2 too. One problem
of the world (a host unreachable, the cloud short of quota) makes it exit 1: retrying may then help.

In-process through the CLI, on a copy of tests/data/mig with the engine's ports replaced by the
in-memory fakes (tests/unit/migration_fakes.py), which record every boot and name switch.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from govcloud.adapters.journal import Journal
from govcloud.errors import Diagnostic, ExitCode, InventoryError, Location, PreflightError
from govcloud.inventory import load_inventory
from govcloud.migrate.zones import QuotaSet
from govcloud.model.services import OsSpec
from govcloud.services.migration import app
from tests.conftest import CliResult
from tests.unit.migration_fakes import World, world

MIG = Path(__file__).resolve().parents[1] / "data" / "mig"
TMIG = "inventories/departments/tmig.yaml"
Runner = Callable[..., CliResult]  # the run_cli fixture (tests/conftest.py)
NOTHING_PROVISIONED = "all in the inventories or topology; nothing was provisioned"


@dataclass
class Project:
    root: Path
    world: World
    known_hosts: Path
    journal: Path

    def edit(self, old: str, new: str) -> None:
        path = self.root / TMIG
        text = path.read_text(encoding="utf-8")
        assert old in text, f"fixture drifted: {old!r} not in {TMIG}"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    def place(self, line: str, at: str) -> str:
        """``file:line:col`` of ``at`` on the (only) line of tmig.yaml that reads ``line``, as diagnostics name it."""
        lines = (self.root / TMIG).read_text(encoding="utf-8").splitlines()
        [n] = [i for i, text in enumerate(lines, 1) if text.strip() == line]
        return f"{TMIG}:{n}:{lines[n - 1].index(at) + 1}"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    root = tmp_path / "root"
    shutil.copytree(MIG / "inventories", root / "inventories")
    (root / "govcloud.yaml").write_text("version: 1\n")
    monkeypatch.setenv("GOVCLOUD_STATE_DIR", str(tmp_path / "state"))
    w = world(tmp_path)
    for s in load_inventory(MIG).systems:
        for h in s.hosts:
            trees = {p: {"a.dat": f"{h.name}:{p}".encode()} for p in h.data}
            trees["/srv/app"] = {"sampleapp.py": b"print('app')"}  # the declared sample app's directory
            w.hosts.add(h.address, trees, running=True)
    (tmp_path / "known_hosts").write_text("")
    monkeypatch.setattr(app, "real_ports", lambda *a, **k: w.ports())
    return Project(root, w, tmp_path / "known_hosts", tmp_path / "journal.sqlite")


def migrate_run(p: Project, run_cli: Runner, *systems: str) -> CliResult:
    """`govcloud migrate run` of wave 1 (tmig-db unless ``systems``) with a plan made from the edited
    inventories when they load (so no stale-plan warning), else with the shipped plan."""
    plan = MIG / "plan.yaml"
    try:
        digest = load_inventory(p.root).digest
    except InventoryError:  # they do not load: the run stops before it reads the plan
        pass
    else:
        plan = p.root / "plan.yaml"
        shipped = (MIG / "plan.yaml").read_text()
        plan.write_text(re.sub(r"inventory_digest: \S+", f"inventory_digest: {digest}", shipped))
    return run_cli("--root", str(p.root), "migrate", "run", str(plan), "--wave", "1", "--systems",
                   ",".join(systems or ("tmig-db",)), "--outside-window", "--known-hosts", str(p.known_hosts),
                   "--journal", str(p.journal))


def nothing_done(p: Project) -> bool:
    return p.world.cloud.boots == [] and p.world.endpoints.switches == [] and p.world.configure.runs == []


def journal_error(p: Project, system: str = "tmig-db") -> object:
    with Journal(p.journal) as j:
        return j.latest_fact("tmig", system, "error")


# ------------------------------------------------------------------ caught when the inventories load


def test_a_service_with_no_control_exits_2_before_anything_is_opened(project: Project, run_cli: Runner) -> None:
    project.edit("            commands:\n              start: /usr/bin/python3 /srv/app/sampleapp.py start\n"
                 "              stop: /usr/bin/python3 /srv/app/sampleapp.py stop\n"
                 "              status: /usr/bin/python3 /srv/app/sampleapp.py status\n"
                 "              timeout_s: 60\n", "")
    r = migrate_run(project, run_cli)
    assert r.exit_code == ExitCode.INVALID_INPUT, r.stdout + r.stderr
    assert (f"{project.place('- name: sampleapp', 'name')}: systems[0].hosts[0].services[0] (and 4 more place(s) "
            "that reuse this block through a YAML alias): service 'sampleapp' has no control: it needs 'systemd' or "
            "'commands'") in r.stderr
    assert "error: 1 error in the inventories" in r.stderr
    assert nothing_done(project) and not project.journal.exists()


def test_a_hook_naming_an_unknown_host_exits_2_before_anything_is_opened(project: Project, run_cli: Runner) -> None:
    hook = "smoke_test: [{host: tmig-db-02, command: /bin/true}]"
    project.edit("    placement: active-active\n", f"    placement: active-active\n    hooks:\n      {hook}\n")
    r = migrate_run(project, run_cli)
    assert r.exit_code == ExitCode.INVALID_INPUT, r.stdout + r.stderr
    assert (f"{project.place(hook, 'tmig-db-02')}: systems[0].hooks.smoke_test[0].host: smoke_test hook runs on host "
            "'tmig-db-02', which system 'tmig-db' does not have\n  hint: did you mean 'tmig-db-01'?") in r.stderr
    assert nothing_done(project) and not project.journal.exists()


# ------------------------------------------------------------------ caught by the preflight: input only -> 2


def test_a_check_on_a_port_nothing_listens_on_exits_2_naming_host_and_port(project: Project, run_cli: Runner) -> None:
    project.world.hosts.by_address["10.240.31.10"].listening = {22, 9090}
    r = migrate_run(project, run_cli)
    assert r.exit_code == ExitCode.INVALID_INPUT, r.stdout + r.stderr
    what = "health check sampleapp/health probes port 8080 on tmig-db-01 (10.240.31.10), where nothing listens"
    fix = "start sampleapp on tmig-db-01, or correct the check's port (listening now: 22, 9090)"
    # at the check's place in the inventory (the sample app's block, which tmig-db declares)
    assert f"{project.place('- name: health', 'name')}: tmig-db: {what}\n  hint: {fix}" in r.stderr
    assert f"error: preflight found 1 problem(s) in 1 system(s) of wave 1, {NOTHING_PROVISIONED}" in r.stderr
    assert nothing_done(project)
    assert journal_error(project) == f"preflight: tmig-db: {what}; fix: {fix}"  # the line journals always held


def test_a_declared_os_without_an_image_exits_2_at_the_os_line(project: Project, run_cli: Runner) -> None:
    os_line = 'os: {family: rocky, version: "9"}'
    project.edit("        role: db\n", f"        role: db\n        {os_line}\n")
    r = migrate_run(project, run_cli)
    assert r.exit_code == ExitCode.INVALID_INPUT, r.stdout + r.stderr
    assert (f"{project.place(os_line, 'os')}: tmig-db: host tmig-db-01 of system "
            "tmig-db runs rocky 9, for which region gz has no image\n  hint: add rocky: {\"9\": <Glance image name>} "
            "under images of region gz (inventories/topology.yaml:4:3)") in r.stderr
    assert NOTHING_PROVISIONED in r.stderr and nothing_done(project)


def test_an_os_from_the_hosts_facts_without_an_image_exits_2_at_the_host(project: Project, run_cli: Runner) -> None:
    project.world.hosts.by_address["10.240.31.10"].os = OsSpec("rocky", "9")
    r = migrate_run(project, run_cli)
    assert r.exit_code == ExitCode.INVALID_INPUT, r.stdout + r.stderr
    assert (f"{project.place('- name: tmig-db-01', 'name')}: tmig-db: host tmig-db-01 of system tmig-db runs rocky 9 "
            "(from its facts), for which region gz has no image") in r.stderr
    assert NOTHING_PROVISIONED in r.stderr and nothing_done(project)


def test_an_unknown_ansible_role_exits_2_at_the_system(project: Project, run_cli: Runner) -> None:
    project.edit("    placement: active-active\n", "    placement: active-active\n    ansible_role: shop_app\n")
    r = migrate_run(project, run_cli)
    assert r.exit_code == ExitCode.INVALID_INPUT, r.stdout + r.stderr
    assert (f"{project.place('- id: tmig-db', 'id')}: tmig-db: ansible_role shop_app is not a role of the project\n"
            "  hint: add playbooks/roles/shop_app (tasks/main.yml)") in r.stderr
    assert NOTHING_PROVISIONED in r.stderr and nothing_done(project)


# ------------------------------------------------------------------ one problem of the world -> 1


def test_an_input_and_a_runtime_problem_of_one_system_exit_1_listing_both(project: Project, run_cli: Runner) -> None:
    project.edit("    placement: active-active\n", "    placement: active-active\n    ansible_role: shop_app\n")
    project.world.cloud.quota = QuotaSet(cores=3, ram=800_000, instances=100)
    r = migrate_run(project, run_cli)
    assert r.exit_code == ExitCode.FAILURE, r.stdout + r.stderr
    assert "tmig-db: ansible_role shop_app is not a role of the project" in r.stderr
    assert "quota of gov-tmig-dept in region gz too small for this wave (cores needs 4, 3 free of 3)" in r.stderr
    assert ("error: preflight found 2 problem(s) in 1 system(s) of wave 1 (1 in the inventories or topology); "
            "nothing was provisioned") in r.stderr
    assert nothing_done(project)


def test_an_input_problem_and_another_systems_unreachable_host_exit_1(project: Project, run_cli: Runner) -> None:
    project.world.hosts.by_address["10.240.31.10"].listening = {22}
    project.world.hosts.by_address["10.240.31.11"].reachable = False
    r = migrate_run(project, run_cli, "tmig-db", "tmig-app")
    assert r.exit_code == ExitCode.FAILURE, r.stdout + r.stderr
    assert "probes port 8080 on tmig-db-01 (10.240.31.10), where nothing listens" in r.stderr
    assert "tmig-app: legacy host tmig-app-01 (10.240.31.11) unreachable" in r.stderr
    assert "2 problem(s) in 2 system(s) of wave 1 (1 in the inventories or topology)" in r.stderr
    assert nothing_done(project)


def test_a_runtime_problem_alone_exits_1(project: Project, run_cli: Runner) -> None:
    project.world.hosts.by_address["10.240.31.10"].reachable = False
    r = migrate_run(project, run_cli)
    assert r.exit_code == ExitCode.FAILURE, r.stdout + r.stderr
    assert ("error: preflight found 1 problem(s) in 1 system(s) of wave 1; nothing was provisioned"
            in r.stderr), r.stderr
    assert nothing_done(project)
    assert str(journal_error(project)).startswith("preflight: tmig-db: legacy host tmig-db-01 (10.240.31.10) "
                                                  "unreachable")


# ------------------------------------------------------------------ the rule itself


def test_the_exit_code_is_2_only_when_every_problem_is_input() -> None:
    where = Location("inventories/departments/x.yaml", 3, 5)
    inp, world_ = Diagnostic(where, "s", "bad"), Diagnostic(where, "s", "down", cause="runtime")
    assert inp.cause == "input"  # the default: what validate and the loaders find
    assert PreflightError("m", diagnostics=(inp, inp)).exit_code == ExitCode.INVALID_INPUT
    assert PreflightError("m", diagnostics=(inp, world_)).exit_code == ExitCode.FAILURE
    assert PreflightError("m", diagnostics=(world_,)).exit_code == ExitCode.FAILURE
    assert PreflightError("m").exit_code == ExitCode.FAILURE  # nothing to show for it: no claim on the input
    # the cause is not shown: what users read and what the JSON carries are as before
    assert inp.render() == world_.render().replace("down", "bad") and "cause" not in inp.as_dict()
