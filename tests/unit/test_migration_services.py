"""The engine drives what the inventory declares (issue 30): services stopped and started in their
order, every declared check, hooks, the image for each host's OS, and what preflight refuses. Against
the in-memory ports (tests/unit/migration_fakes.py); the tmig system tmig-db is reshaped per test."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from govcloud.adapters.ports import CommandResult
from govcloud.errors import MigrationError, PreflightError
from govcloud.migrate.services import (
    Control,
    control_command,
    copy_jobs,
    host_groups,
    service_order,
)
from govcloud.migrate.state import Action, State
from govcloud.model import Host, Inventory, System
from govcloud.model.services import (
    CheckRef,
    CommandControl,
    CommandProbe,
    HealthCheck,
    Hook,
    HookPoint,
    HttpProbe,
    OsSpec,
    Service,
    ServiceDirectory,
    SystemdControl,
    TcpProbe,
)
from govcloud.services.migration import cutover as cutover_step
from govcloud.services.migration import driver, open_run
from govcloud.services.migration import preflight as preflight_step
from govcloud.services.migration.context import RunContext
from govcloud.services.migration.options import MigrateOptions
from tests.unit.migration_fakes import World, world
from tests.unit.test_migration_engine import INVENTORY, MIG

HTTP = HealthCheck("http", HttpProbe(8080, "/health", body='"status": "ok"'), deadline_s=0.3, interval_s=0.05)
NGINX = Service("nginx", SystemdControl("nginx.service"), (HealthCheck("tls", TcpProbe(443), 0.3, 0.05),),
                directories=(ServiceDirectory("/etc/nginx"),), packages=("nginx",))
APP = Service("app", CommandControl("/opt/app/start", "/opt/app/stop", "/opt/app/status", 30.0), (HTTP,),
              directories=(ServiceDirectory("/opt/app", ("logs/",)),), runtime=("/opt/app/app.pid",),
              packages=("openjdk-17-jre-headless", "nginx"))
PG = Service("pg", SystemdControl("postgresql.service"),
             (HealthCheck("ready", CommandProbe("pg_isready -q"), 0.3, 0.05),))


def two_tier(**system: object) -> Inventory:
    """tmig-db as a web host (nginx, then the app) and a db host (pg), plus ``system`` changes."""
    base = INVENTORY.system("tmig-db")
    db = replace(base.hosts[0], services=(PG,))
    web = Host("tmig-web-09", "10.240.31.19", role="app", data=("/srv/tmig-web9",), services=(NGINX, APP),
               source=base.hosts[0].source)
    changed = replace(base, hosts=(web, db), **system)  # type: ignore[arg-type]
    return replace(INVENTORY, systems=tuple(changed if s.id == "tmig-db" else s for s in INVENTORY.systems))


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[World, Path]:
    monkeypatch.setenv("GOVCLOUD_STATE_DIR", str(tmp_path / "state"))
    w = world(tmp_path)
    w.hosts.add("10.240.31.10", {"/srv/tmig-db": {"a.dat": b"db"}}, running=True)
    w.hosts.add("10.240.31.19", {"/srv/tmig-web9": {"a.dat": b"web"}, "/etc/nginx": {"nginx.conf": b"x"},
                                 "/opt/app": {"app.jar": b"jar", "app.pid": b"42"}}, running=True)
    w.hosts.by_address["10.240.31.19"].listening = {443, 8080}
    (tmp_path / "known_hosts").write_text("")
    return w, tmp_path


def options(tmp: Path, **kw: object) -> MigrateOptions:
    values: dict[str, object] = {"outside_window": True, **kw}
    return MigrateOptions(plan_file=MIG / "plan.yaml", wave=1, known_hosts=tmp / "known_hosts", systems=("tmig-db",),
                          journal=tmp / "journal.sqlite", **values)  # type: ignore[arg-type]


def run(env: tuple[World, Path], inventory: Inventory, **kw: object) -> driver.RunSummary:
    w, tmp = env
    return driver.execute(open_run(MIG, options(tmp, **kw), inventory=inventory, ports=w.ports()))


def context(env: tuple[World, Path], inventory: Inventory, **kw: object) -> RunContext:
    w, tmp = env
    opts = options(tmp, **kw)
    ctx = open_run(MIG, opts, inventory=inventory, ports=w.ports())
    ctx.run_id = ctx.journal.start_run(ctx.plan.name, ctx.wave.number, "run", options=opts.as_record())
    ctx.journal.ensure_system(ctx.plan.name, "tmig-db", ctx.wave.number)
    return ctx


# ------------------------------------------------------------------ the pure decisions


def test_order_commands_and_copies_are_decided_from_the_declaration() -> None:
    inv = two_tier()
    web, db = inv.system("tmig-db").hosts
    assert [s.name for s in service_order(web, Control.STOP)] == ["app", "nginx"]
    assert [s.name for s in service_order(web, Control.START)] == ["nginx", "app"]
    assert host_groups([web, db], lambda h: h.role, Control.STOP) == [[web], [db]]
    assert host_groups([web, db], lambda h: h.role, Control.START) == [[db], [web]]
    assert control_command(NGINX, Control.STATUS).command == "systemctl is-active --quiet nginx.service"  # type: ignore[union-attr]
    cmd = control_command(APP, Control.START)
    assert cmd is not None and (cmd.command, cmd.timeout_s, cmd.what) == ("/opt/app/start", 30.0,
                                                                          "command `/opt/app/start`")
    assert control_command(replace(APP, control=CommandControl("a", "b")), Control.STATUS) is None
    # data whole (its manifests prove it), service directories minus excludes and runtime paths
    assert [(j.path, j.excludes) for j in copy_jobs(web)] == [
        ("/srv/tmig-web9", ()), ("/etc/nginx", ()), ("/opt/app", ("logs/", "/app.pid"))]


# ------------------------------------------------------------------ control and health


def test_services_stop_in_reverse_order_db_last_and_start_in_order_db_first(env: tuple[World, Path]) -> None:
    w, _ = env
    summary = run(env, two_tier())
    assert summary.ok, summary.results
    legacy = [c for a, c in w.hosts.commands if a in ("10.240.31.19", "10.240.31.10") and c.split()[-1] != "status"
              and "is-active" not in c and "pg_isready" not in c]
    assert legacy == ["/opt/app/stop", "systemctl stop nginx.service", "systemctl stop postgresql.service"]
    starts = [(a, c) for a, c in w.hosts.commands if a.startswith("10.250.")
              and (c.split()[-1].endswith("start") or c.startswith("systemctl start"))]
    db_starts = [i for i, (_, c) in enumerate(starts) if "postgresql" in c]
    web_starts = [i for i, (_, c) in enumerate(starts) if "postgresql" not in c]
    assert db_starts and web_starts and max(db_starts) < min(web_starts)
    for address in {a for a, c in starts if "postgresql" not in c}:  # each web target: nginx, then the app
        assert [c for a, c in starts if a == address] == ["systemctl start nginx.service", "/opt/app/start"]
    # a target's units are read again before its first start (they may have come with its directories)
    assert any(c == "systemctl daemon-reload" for a, c in w.hosts.commands if a.startswith("10.250."))
    # every check of every service, on every target: http and tcp from the controller, the command on the host
    probed = {p for a, p in w.health.probes if a.startswith("10.250.")}
    assert probed == {"http:8080/health", "tcp:443"}
    assert any(c == "pg_isready -q" for a, c in w.hosts.commands if a.startswith("10.250."))
    # the service directories reached the targets minus their runtime file; packages went to the role
    web_target = next(h for h in w.configure.hosts if h.name.startswith("tmig-web-09"))
    assert web_target.packages == ("nginx", "openjdk-17-jre-headless")
    assert web_target.units == ("nginx.service",) and "/opt/app" in web_target.data
    tree = w.hosts.by_address[next(h.address for h in w.configure.hosts if h.name.startswith("tmig-web-09"))].trees
    assert tree["/opt/app"] == {"app.jar": b"jar"}


def test_a_failing_command_check_names_itself_and_rolls_back(env: tuple[World, Path]) -> None:
    w, _ = env
    w.hosts.target_scripts["pg_isready -q"] = CommandResult("pg_isready -q", 2, "", "no response")
    summary = run(env, two_tier())
    assert not summary.ok and summary.results[0].state == State.ROLLED_BACK.value
    assert "check pg/ready on tmig-db-01-gz-a" in summary.results[0].note
    assert "`pg_isready -q` exiting 0" in summary.results[0].note
    assert w.hosts.by_address["10.240.31.10"].running and w.hosts.by_address["10.240.31.19"].running


def test_the_ready_check_is_awaited_first_and_the_others_not_waited_out(env: tuple[World, Path]) -> None:
    w, _ = env
    w.hosts.target_scripts["pg_isready -q"] = CommandResult("pg_isready -q", 1, "", "")
    summary = run(env, two_tier(ready_check=CheckRef("pg", "ready")))
    assert not summary.ok and "check pg/ready" in summary.results[0].note
    assert not [p for a, p in w.health.probes if a.startswith("10.250.")]  # nothing else was probed on targets


def test_a_legacy_stop_that_fails_names_the_service_its_command_and_the_host(env: tuple[World, Path]) -> None:
    w, _ = env
    w.hosts.scripts["/opt/app/stop"] = CommandResult("/opt/app/stop", 1, "", "still running")
    summary = run(env, two_tier())
    note = summary.results[0].note
    assert ("stop of service app (command `/opt/app/stop`) on tmig-web-09 (10.240.31.19) exited 1: still running"
            in note)
    assert summary.results[0].state == State.FAILED.value and w.hosts.by_address["10.240.31.10"].running


# ------------------------------------------------------------------ hooks


def _hooks(*hooks: Hook) -> Inventory:
    return two_tier(hooks=hooks)


def test_hooks_run_where_they_belong_and_are_journaled_without_secrets(env: tuple[World, Path]) -> None:
    w, _ = env
    w.hosts.scripts["/opt/drain"] = CommandResult("/opt/drain", 0, "drained\npassword=hunter2 ok\n", "")
    inv = _hooks(Hook(HookPoint.BEFORE_CUTOVER, "tmig-web-09", "/opt/drain", 60.0),
                 Hook(HookPoint.AFTER_CUTOVER, "tmig-web-09", "nginx -t"),
                 Hook(HookPoint.SMOKE_TEST, "tmig-db-01", "/opt/smoke"))
    assert run(env, inv).ok
    ran = [(a, c) for a, c in w.hosts.commands if c in ("/opt/drain", "nginx -t", "/opt/smoke")]
    assert ran[0] == ("10.240.31.19", "/opt/drain")  # before the legacy stop, on the legacy host
    assert [c for _, c in ran] == ["/opt/drain", "nginx -t", "/opt/smoke"]
    assert all(a.startswith("10.250.") for a, _ in ran[1:])  # after the cutover: on the primary targets
    assert ran.index(("10.240.31.19", "/opt/drain")) < w.hosts.commands.index(("10.240.31.19", "/opt/app/stop"))
    ctx = context(env, inv)
    facts = [f["value"] for f in ctx.journal.facts(ctx.plan.name, "tmig-db", "hook")]
    ctx.close()
    assert [(f["point"], f["command"], f["status"]) for f in facts] == [
        ("before_cutover", "/opt/drain", 0), ("after_cutover", "nginx -t", 0), ("smoke_test", "/opt/smoke", 0)]
    assert facts[0]["output"] == "drained\npassword=*** ok" and "hunter2" not in str(facts)


def test_a_failing_smoke_test_rolls_the_system_back_like_a_failing_check(env: tuple[World, Path]) -> None:
    w, _ = env
    w.hosts.scripts["/opt/smoke"] = CommandResult("/opt/smoke", 3, "", "order page 500")
    inv = _hooks(Hook(HookPoint.SMOKE_TEST, "tmig-web-09", "/opt/smoke"),
                 Hook(HookPoint.BEFORE_ROLLBACK, "tmig-db-01", "/opt/notify rollback"))
    summary = run(env, inv)
    assert summary.results[0].state == State.ROLLED_BACK.value
    assert "smoke_test hook `/opt/smoke` on tmig-web-09-gz-a" in summary.results[0].note
    assert "order page 500" in summary.results[0].note
    assert ("10.240.31.10", "/opt/notify rollback") in w.hosts.commands  # before_rollback, on the legacy host
    ep = w.endpoints.lookup("tmig-db")
    assert ep is not None and ep.site == "legacy" and w.hosts.by_address["10.240.31.19"].running


def test_a_failing_before_rollback_hook_does_not_hold_the_rollback_up(env: tuple[World, Path]) -> None:
    w, _ = env
    w.hosts.scripts["/opt/smoke"] = CommandResult("/opt/smoke", 1, "", "")
    w.hosts.scripts["/opt/notify"] = CommandResult("/opt/notify", 1, "", "mail down")
    inv = _hooks(Hook(HookPoint.SMOKE_TEST, "tmig-web-09", "/opt/smoke"),
                 Hook(HookPoint.BEFORE_ROLLBACK, "tmig-db-01", "/opt/notify"))
    assert run(env, inv).results[0].state == State.ROLLED_BACK.value


# ------------------------------------------------------------------ preflight: images, ports, roles


def _preflight_problems(env: tuple[World, Path], inv: Inventory, **kw: object) -> list[str]:
    ctx = context(env, inv, **kw)
    try:
        with pytest.raises(PreflightError) as err:
            preflight_step.run(ctx, ctx.work)
    finally:
        ctx.close()
    return [f"{d.location}: {d.message} | {d.hint}" for d in err.value.diagnostics]


def _with_host(inv: Inventory, name: str, **changes: object) -> Inventory:
    s = inv.system("tmig-db")
    hosts = tuple(replace(h, **changes) if h.name == name else h for h in s.hosts)  # type: ignore[arg-type]
    changed: System = replace(s, hosts=hosts)
    return replace(inv, systems=tuple(changed if x.id == s.id else x for x in inv.systems))


def test_the_os_comes_from_the_hosts_facts_when_not_declared_and_picks_the_image(env: tuple[World, Path]) -> None:
    w, _ = env
    inv = _with_host(two_tier(), "tmig-web-09", os=OsSpec("debian", "12"))
    ctx = context(env, inv)
    preflight_step.run(ctx, ctx.work)
    assert w.hosts.os_reads == ["10.240.31.10"]  # only the host that declares no os
    assert ctx.fact("tmig-db", "host_os") == {"tmig-web-09": "debian 12", "tmig-db-01": "debian 12"}
    images = ctx.fact("tmig-db", "target_images")
    assert set(images.values()) == {"fake-image"} and len(images) == 4  # 2 hosts x 2 sites
    ctx.close()


def test_preflight_refuses_a_host_whose_os_has_no_image_naming_the_line_to_add(env: tuple[World, Path]) -> None:
    w, _ = env
    w.hosts.by_address["10.240.31.10"].os = OsSpec("rocky", "9")
    found = _preflight_problems(env, two_tier())
    assert any("host tmig-db-01 of system tmig-db runs rocky 9 (from its facts), for which region gz has no image"
               in p and 'add rocky: {"9": <Glance image name>} under images of region gz' in p for p in found), found
    assert w.cloud.boots == []


def test_preflight_refuses_a_host_with_no_os_declared_nor_in_its_facts(env: tuple[World, Path]) -> None:
    w, _ = env
    w.hosts.by_address["10.240.31.10"].os = None
    found = _preflight_problems(env, two_tier())
    assert any("host tmig-db-01 of system tmig-db declares no os and its facts give none" in p for p in found), found


def test_an_image_override_boots_every_target_and_must_exist(env: tuple[World, Path]) -> None:
    w, _ = env
    w.hosts.by_address["10.240.31.10"].os = OsSpec("rocky", "9")  # no mapping needed with --image
    found = _preflight_problems(env, two_tier(), image="golden")
    assert [p for p in found if "image golden missing in region gz" in p], found
    assert not [p for p in found if "rocky" in p]


def test_preflight_refuses_a_check_on_a_port_nothing_listens_on(env: tuple[World, Path]) -> None:
    w, _ = env
    w.hosts.by_address["10.240.31.19"].listening = {8080}
    found = _preflight_problems(env, two_tier())
    assert [p for p in found if "health check nginx/tls probes port 443 on tmig-web-09 (10.240.31.19), where "
            "nothing listens" in p and "listening now: 8080" in p], found


def test_preflight_refuses_an_unknown_ansible_role_and_passes_a_known_one(env: tuple[World, Path]) -> None:
    w, _ = env
    found = _preflight_problems(env, two_tier(ansible_role="shop_app"))
    assert [p for p in found if "ansible_role shop_app is not a role of the project" in p], found
    w.configure.roles.add("shop_app")
    assert run(env, two_tier(ansible_role="shop_app")).ok
    assert {h.ansible_role for h in w.configure.hosts} == {"shop_app"}


def test_a_host_without_services_moves_its_data_only(env: tuple[World, Path]) -> None:
    w, _ = env
    inv = _with_host(_with_host(two_tier(), "tmig-db-01", services=()), "tmig-web-09", services=())
    assert run(env, inv).ok
    assert not [c for _, c in w.hosts.commands if "start" in c or "stop" in c]
    ep = w.endpoints.lookup("tmig-db")
    assert ep is not None and ep.site == "gz-a"


def test_a_cutover_killed_after_the_stop_keeps_the_legacy_stopped_until_resumed(env: tuple[World, Path]) -> None:
    """The declared services are what a crash leaves stopped and what the resume carries on from."""
    w, _ = env
    assert run(env, two_tier(), manual_cutover=True).ok
    ctx = context(env, two_tier())
    w.crash_at = "cutover.after_stop@tmig-db"
    from tests.unit.migration_fakes import Crash

    with pytest.raises(Crash):
        cutover_step.run(ctx, ctx.work[0])
    ctx.close()
    assert not w.hosts.by_address["10.240.31.19"].running
    summary = run(env, two_tier())
    assert summary.ok and ctx.status("tmig-db").state == State.DONE
    last = [t["action"] for t in context(env, two_tier()).journal.transitions("tmig", "tmig-db")]
    assert Action.VERIFY.value in last


def test_verify_names_the_service_whose_start_failed(env: tuple[World, Path]) -> None:
    w, _ = env
    assert run(env, two_tier(), manual_cutover=True).ok
    ctx = context(env, two_tier())
    web = next(t for t in ctx.targets(ctx.work[0]) if t.legacy_host == "tmig-web-09")
    w.hosts.target_scripts["/opt/app/start"] = CommandResult("/opt/app/start", 1, "", "port in use")
    cutover_step.run(ctx, ctx.work[0])
    with pytest.raises(MigrationError, match=f"start of service app \\(command `/opt/app/start`\\) on {web.name}"):
        driver._step(ctx, ctx.work[0], Action.VERIFY)
    ctx.close()


# ------------------------------------------------------------------ the adapters' pure parts


def test_listening_ports_and_os_release_are_read_from_the_hosts_own_files() -> None:
    from govcloud.adapters.hosts import parse_listening, parse_os_release

    tcp = ("  sl  local_address rem_address   st tx_queue rx_queue\n"
           "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1\n"
           "   1: 0100007F:0016 0A00000A:C350 01 00000000:00000000 00:00000000 00000000 0 0 2\n"
           "   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 0 0 0\n")
    assert parse_listening(tcp) == frozenset({8080, 443})  # 22 is an established connection, not a listener
    assert parse_os_release('PRETTY_NAME="Debian GNU/Linux 12"\nID=debian\nVERSION_ID="12"\n') == OsSpec("debian", "12")
    assert parse_os_release("ID=Rocky\nVERSION_ID='9.3'\n") == OsSpec("rocky", "9.3")
    assert parse_os_release("ID=arch\n") is None  # a rolling release names no version: declare os instead


def test_hook_output_is_masked_before_the_journal_keeps_it() -> None:
    from govcloud.services.migration.hooks import redact

    assert redact("db_password=s3cret user=app") == "db_password=*** user=app"
    assert redact('TOKEN: "abc def" next') == 'TOKEN: *** next'
    assert redact("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----") == "<private key masked>"


def test_the_target_role_gets_packages_units_and_the_systems_role_and_roles_are_looked_up(tmp_path: Path) -> None:
    from govcloud.adapters.ports import TargetHost
    from govcloud.adapters.target_config import AnsibleTargetConfig

    playbooks = Path(__file__).resolve().parents[2] / "playbooks"
    cfg = AnsibleTargetConfig(project_dir=playbooks, state_dir=tmp_path, ssh_key=tmp_path / "k",
                              known_hosts=tmp_path / "kh")
    assert cfg.has_role("migrate_target") and not cfg.has_role("shop_app") and not cfg.has_role("../migrate_target")
    spec = cfg.spec([TargetHost("t1", "10.250.0.9", "gz", "gz-a", "d", "s", ("/srv/d", "/opt/app"),
                                packages=("nginx",), units=("nginx.service",), ansible_role="shop_app")])
    assert dict(spec.targets[0].vars) == {"migrate_target_data": ["/srv/d", "/opt/app"], "migrate_target_system": "s",
                                          "migrate_target_packages": ["nginx"],
                                          "migrate_target_units": ["nginx.service"], "migrate_target_role": "shop_app"}
