"""One test per kind of bad inventory: exact file:line:col, exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

HRSS = "inventories/departments/hrss.yaml"
ZSJ = "inventories/departments/zsj.yaml"
TOPO = "inventories/topology.yaml"


def edit(project: Path, rel: str, old: str, new: str) -> None:
    path = project / rel
    text = path.read_text(encoding="utf-8")
    assert old in text, f"fixture drifted: {old!r} not in {rel}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def validate(project: Path, run_cli):  # type: ignore[no-untyped-def]
    result = run_cli("--root", str(project), "validate")
    assert "Traceback" not in result.stderr + result.stdout
    return result


def test_valid_mini_inventory(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    result = validate(project, run_cli)
    assert result.exit_code == 0, result.stderr
    assert "4 systems" in result.stdout


def test_unknown_dependency_with_did_you_mean(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, HRSS, "depends_on: [zsj-pop-db, zsj-idaas, hrss-pay]", "depends_on: [zsj-pop-dbb, zsj-idaas, hrss-pay]")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert f"{HRSS}:10:18: systems[0].depends_on[0]: unknown system 'zsj-pop-dbb'" in result.stderr
    assert f"did you mean 'zsj-pop-db'? (defined at {ZSJ}:4:9)" in result.stderr


def test_duplicate_system_id_names_both_places(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, HRSS, "id: hrss-pay", "id: zsj-idaas")
    edit(project, HRSS, "depends_on: [hrss-si]", "depends_on: []")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    # hrss.yaml sorts first, so the zsj.yaml definition is reported as the duplicate of it
    assert f"{ZSJ}:15:9: systems[1].id: duplicate system id 'zsj-idaas' (also defined at {HRSS}:16:9)" in result.stderr


def test_duplicate_yaml_key(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, ZSJ, "    tier: critical\n    rto_minutes: 30\n", "    tier: critical\n    tier: normal\n    rto_minutes: 30\n")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert f"{ZSJ}:8:5: systems[0].tier: duplicate key 'tier' (first defined at line 7)" in result.stderr


def test_wrong_type(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, ZSJ, "rto_minutes: 30", "rto_minutes: half an hour")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert f"{ZSJ}:8:18: systems[0].rto_minutes: expected a whole number, got a string 'half an hour'" in result.stderr


def test_unquoted_time_is_explained(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, ZSJ, 'start: "22:00"', "start: 22:00")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert f"{ZSJ}:10:39: systems[0].window.start: expected a string, got 22:00" in result.stderr
    assert 'quote it: "22:00"' in result.stderr


def test_unknown_placement(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, ZSJ, "placement: active-active", "placement: active-pasive")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert f"{ZSJ}:11:16: systems[0].placement: unknown placement 'active-pasive'" in result.stderr
    assert "did you mean 'active-standby'?" in result.stderr or "valid values: active-active" in result.stderr


def test_unknown_site_in_replication(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, TOPO, "{from: gz-a, to: gz-b, mode: sync}", "{from: gz-a, to: gz-c, mode: sync}")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert f"{TOPO}:18:22: replication[0].to: unknown site or region 'gz-c'" in result.stderr
    assert "did you mean 'gz-a'?" in result.stderr or "did you mean 'gz-b'?" in result.stderr


def test_unknown_region_in_replication(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, TOPO, "{from: gz, to: st, mode: async", "{from: gz, to: sz, mode: async")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert f"{TOPO}:19:20: replication[1].to: unknown site or region 'sz'" in result.stderr


def test_unknown_key_with_suggestion(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, ZSJ, "    placement: active-standby", "    placment: active-standby")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert f"{ZSJ}:23:5: systems[1].placment: unknown key 'placment'" in result.stderr
    assert "did you mean 'placement'?" in result.stderr
    assert "missing required key 'placement'" in result.stderr
    # a broken file still defines its systems: no cascade of "unknown system" errors elsewhere
    assert "unknown system" not in result.stderr


def test_resources_exceed_what_placement_can_fit(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, HRSS, "resources: {vcpus: 4, ram_gb: 8, storage_gb: 200}", "resources: {vcpus: 65, ram_gb: 8, storage_gb: 200}")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert f"{HRSS}:25:16: systems[1].resources: needs 65 vCPU, 8 GB RAM, 200 GB storage on one site, more than any gz site" in result.stderr


def test_empty_file(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    (project / "inventories/departments/empty.yaml").write_text("# nothing yet\n")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert "inventories/departments/empty.yaml:1:1: file is empty" in result.stderr


def test_non_utf8_file(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    path = project / HRSS
    path.write_bytes(path.read_text(encoding="utf-8").encode("gb18030"))
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert f"{HRSS}:2:30: file is not valid UTF-8" in result.stderr


def test_unknown_version(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, HRSS, "version: 1", "version: 2")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert f"{HRSS}:1:10: version: unsupported version 2" in result.stderr


def test_malformed_yaml(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, HRSS, "    tier: important\n", "    tier: [important\n")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert f"{HRSS}:8:16: malformed YAML: while parsing a flow sequence (started at line 7)" in result.stderr


def test_yaml_bomb_is_an_error_not_an_oom(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    (project / "inventories/departments/bomb.yaml").write_text("\n".join(lines) + "\n")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert "inventories/departments/bomb.yaml:1:1: aliases expand to" in result.stderr
    assert "YAML bomb" in result.stderr


def test_dependency_on_itself(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, HRSS, "depends_on: [hrss-si]", "depends_on: [hrss-pay]")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert f"{HRSS}:22:18: systems[1].depends_on[0]: system 'hrss-pay' depends on itself" in result.stderr


def test_every_error_is_reported_at_once(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, HRSS, "zsj-pop-db, zsj-idaas", "zsj-pop-dbb, zsj-idas")
    edit(project, ZSJ, "rto_minutes: 30", "rto_minutes: -1")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert result.stderr.count(": unknown system ") == 2
    assert "must be at least 0, got -1" in result.stderr
    assert "3 errors" in result.stderr


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("placement: active-standby\n    resources: {vcpus: 4, ram_gb: 16",
         "placement: single\n    resources: {vcpus: 4, ram_gb: 16",
         "a classification-4 (MLPS level 4) system is placed 'single'"),
        ("rpo_minutes: 5", "rpo_minutes: 0", "RPO 0 but placement 'active-standby' has no synchronous replication pair"),
    ],
)
def test_warnings_exit_zero(project: Path, run_cli, old: str, new: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    edit(project, ZSJ, "classification: 3\n    tier: critical\n    rto_minutes: 15",
         "classification: 4\n    tier: critical\n    rto_minutes: 15")
    edit(project, ZSJ, old, new)
    result = validate(project, run_cli)
    assert result.exit_code == 0, result.stderr
    assert f"{ZSJ}:" in result.stderr and "warning: " + expected in result.stderr


def test_missing_topology(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("--root", str(tmp_path), "validate")
    assert result.exit_code == 2
    assert "inventories/topology.yaml: topology file not found" in result.stderr


def test_json_output_lists_diagnostics(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    import json

    edit(project, HRSS, "zsj-pop-db,", "zsj-pop-dbb,")
    result = run_cli("--root", str(project), "--output", "json", "validate")
    assert result.exit_code == 2
    payload = json.loads(result.stdout)
    assert payload["ok"] is False
    assert payload["diagnostics"][0]["line"] == 10 and payload["diagnostics"][0]["file"] == HRSS


def test_unknown_yaml_tag_is_an_error_not_a_crash(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """Found by the fuzz test: an unknown tag used to escape as a ConstructorError."""
    edit(project, ZSJ, "name: 人口库", "name: !!binary128 人口库")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert f"{ZSJ}:5:11: systems[0].name: cannot read value '人口库' with tag tag:yaml.org,2002:binary128" in result.stderr
