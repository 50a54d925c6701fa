"""The ansible-runner invocation as data: inventory groups, strict SSH, artifacts in the state dir, results."""

from __future__ import annotations

from pathlib import Path

from govcloud.adapters.ansible import RunSpec, Target, build_inventory, results_from, runner_kwargs
from govcloud.services.hosts import targets_from_servers

REPO = Path(__file__).resolve().parents[2]
TARGETS = (
    Target("amr-djzc-web-01", "10.244.38.10", "gz", "gz-a", "amr", "amr-djzc", "web"),
    Target("amr-djzc-web-02", "10.244.38.11", "gz", "gz-b", "amr", "amr-djzc", "web"),
    Target("hrss-si-app-01", "10.246.4.10", "st", "st-a", "hrss", "hrss-si", "app"),
)


def spec(**kw: object) -> RunSpec:
    base = dict(run_id="hosts-abc", state_dir=Path("/var/lib/govcloud"), project_dir=REPO / "playbooks",
                playbook="baseline.yml", targets=TARGETS, ssh_key=Path("/var/lib/govcloud/keys/ops_ed25519"),
                known_hosts=Path("/lab/known_hosts"), baseline_root="/srv/govcloud-root",
                ansible_bin_dir=Path("/venv/bin"))
    base.update(kw)
    return RunSpec(**base)  # type: ignore[arg-type]


def test_inventory_groups_per_region_site_department_system_role() -> None:
    inv = build_inventory(TARGETS, ssh_key=Path("/k"), known_hosts=Path("/kh"))
    children = inv["all"]["children"]
    assert set(children["region_gz"]["hosts"]) == {"amr-djzc-web-01", "amr-djzc-web-02"}
    assert set(children["site_gz_a"]["hosts"]) == {"amr-djzc-web-01"}
    assert set(children["dept_amr"]["hosts"]) == {"amr-djzc-web-01", "amr-djzc-web-02"}
    assert set(children["system_amr_djzc"]["hosts"]) == {"amr-djzc-web-01", "amr-djzc-web-02"}
    assert set(children["role_app"]["hosts"]) == {"hrss-si-app-01"}
    hv = inv["all"]["hosts"]["amr-djzc-web-01"]
    assert hv["ansible_host"] == "10.244.38.10" and hv["ansible_user"] == "root"
    assert hv["govcloud_hosts_entries"] == [{"name": "amr-djzc-web-01", "address": "10.244.38.10"},
                                            {"name": "amr-djzc-web-02", "address": "10.244.38.11"}]


def test_exact_runner_kwargs() -> None:
    kw = runner_kwargs(spec(limit="dept_amr"))
    assert kw["private_data_dir"] == "/var/lib/govcloud/ansible/hosts-abc"
    assert kw["artifact_dir"] == "/var/lib/govcloud/ansible/artifacts"
    assert kw["project_dir"] == str(REPO / "playbooks") and kw["playbook"] == "baseline.yml"
    assert kw["suppress_env_files"] is True and kw["quiet"] is True
    assert kw["limit"] == "dept_amr" and kw["ident"] == "hosts-abc"
    assert "binary" not in kw  # would switch ansible-runner to raw mode and drop the playbook
    assert kw["envvars"]["PATH"].startswith("/venv/bin:")
    assert kw["envvars"]["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert kw["envvars"]["ANSIBLE_SSH_CONTROL_PATH_DIR"] == "/var/lib/govcloud/ansible/cp"
    allvars = kw["inventory"]["all"]["vars"]
    assert allvars["ansible_ssh_common_args"] == (
        "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=/lab/known_hosts -o GlobalKnownHostsFile=/dev/null "
        "-o IdentitiesOnly=yes -o BatchMode=yes")
    assert allvars["ansible_ssh_private_key_file"] == "/var/lib/govcloud/keys/ops_ed25519"
    assert allvars["govcloud_baseline_root"] == "/srv/govcloud-root"
    # nothing secret and nothing in the repository
    assert not str(kw["private_data_dir"]).startswith(str(REPO))
    assert "password" not in repr(kw).lower()
    assert "limit" not in runner_kwargs(spec())


def test_results_name_the_failed_task_and_unreachable_hosts() -> None:
    stats = {"ok": {"a": 9, "b": 3, "c": 0}, "changed": {"a": 6, "b": 1}, "failures": {"b": 1}, "dark": {"c": 1}}
    events = [
        {"event": "runner_on_failed", "event_data": {"host": "b", "task": "Write /etc/hosts", "res": {"msg": "Read-only"}}},
        {"event": "runner_on_failed", "event_data": {"host": "a", "task": "ignored", "ignore_errors": True, "res": {}}},
        {"event": "runner_on_unreachable", "event_data": {"host": "c", "res": {"msg": "Host key verification failed."}}},
    ]
    res = {h.name: h for h in results_from(stats, events, ["a", "b", "c"])}
    assert res["a"].changed == 6 and not res["a"].failed and not res["a"].failed_task
    assert res["b"].failed == 1 and res["b"].failed_task == "Write /etc/hosts" and res["b"].message == "Read-only"
    assert res["c"].unreachable and "Host key verification failed" in res["c"].message


def test_servers_are_placed_in_the_topology() -> None:
    from govcloud.inventory import load_inventory

    inv = load_inventory(REPO / "tests" / "data" / "mini")
    host = inv.systems[0].hosts[0]
    servers = [
        {"name": host.name, "region": "gz", "availability_zone": "gz-b", "department": "hrss", "address": "10.244.1.5",
         "metadata": {}},
        {"name": "other", "region": "st", "availability_zone": "st-a", "department": "zsj", "address": "10.246.1.5",
         "metadata": {"govcloud:system": "zsj-idaas", "govcloud:role": "app"}},
        {"name": "no-ip", "region": "st", "availability_zone": "st-a", "department": "zsj", "address": "", "metadata": {}},
    ]
    got = {t.name: t for t in targets_from_servers(servers, inv)}
    assert set(got) == {host.name, "other"}
    assert (got[host.name].site, got[host.name].system, got[host.name].role) == ("gz-b", inv.systems[0].id, host.role)
    assert (got["other"].site, got["other"].system, got["other"].role) == ("st-a", "zsj-idaas", "app")


def test_every_role_declares_its_variables() -> None:
    import yaml

    roles = REPO / "playbooks" / "roles"
    for role in sorted(p for p in roles.iterdir() if p.is_dir()):
        spec_vars = set(yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"])
        defaults = set(yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {})
        assert defaults <= spec_vars, role.name
        assert all(v.startswith(f"{role.name}_") for v in spec_vars), role.name


def test_command_artifact_keeps_only_govcloud_variables(tmp_path: Path) -> None:
    import json

    from govcloud.adapters.ansible import scrub_command_artifact

    f = tmp_path / "command"
    f.write_text(json.dumps({"command": ["ansible-playbook"], "env": {"OS_PASSWORD": "s3cret", "ANSIBLE_CONFIG": "/x"}}))
    scrub_command_artifact(f, {"ANSIBLE_CONFIG"})
    doc = json.loads(f.read_text())
    assert doc["env"] == {"ANSIBLE_CONFIG": "/x"} and "s3cret" not in f.read_text()
