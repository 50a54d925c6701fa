"""`govcloud provision` on the real devcloud (two regions, one Keystone), checked with the `openstack` CLI.

Every test module works on departments with its own random prefix (``t4xxxx-...``) so other tests on
the shared cloud are not disturbed, and removes everything it made at the end (in the session's own
cloud, `devcloud down` does that).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from devcloud.testing import CloudSession, discard_zones

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MINI = REPO / "tests" / "data" / "mini" / "inventories"


class Zone:
    """A scratch govcloud project with the mini inventory, departments renamed ``<prefix>-hrss`` / ``<prefix>-zsj``."""

    def __init__(self, root: Path, prefix: str, session: CloudSession) -> None:
        self.root = root
        self.prefix = prefix
        self.session = session
        self.hrss = f"{prefix}-hrss"
        self.zsj = f"{prefix}-zsj"

    def govcloud(self, *args: str, input: str | None = None) -> tuple[int, str, str]:
        from govcloud.cli.main import cli

        r = CliRunner().invoke(cli, ["--root", str(self.root), *args], input=input, catch_exceptions=False)
        return r.exit_code, r.stdout, r.stderr

    def os(self, cloud: str, *args: str, json_out: bool = True) -> Any:
        argv = [str(self.session.openstack_cli), "--os-cloud", cloud, *args] + (["-f", "json"] if json_out else [])
        r = subprocess.run(argv, env=self.session.env(), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{' '.join(argv)}: {r.stderr}"
        return json.loads(r.stdout) if json_out and r.stdout.strip() else r.stdout

    def os_many(self, cloud: str, *commands: tuple[str, ...]) -> list[Any]:
        """Run several read commands in one `openstack` process (its interactive mode, fed on stdin).

        Each `openstack` process spends about two seconds loading its plugins before the first request;
        a check that lists twenty things would spend most of its time there. One JSON document comes
        back per command, in order; a command that failed prints none (and its error on stderr), so the
        count tells.
        """
        script = "".join(shlex.join([*c, "-f", "json"]) + "\n" for c in commands)
        r = subprocess.run([str(self.session.openstack_cli)], input=script, env={**self.session.env(), "OS_CLOUD": cloud},
                           capture_output=True, text=True, timeout=300)
        docs: list[Any] = []
        decoder, out = json.JSONDecoder(), r.stdout.strip()
        at = 0
        while at < len(out):
            doc, end = decoder.raw_decode(out, at)
            docs.append(doc)
            at = end + len(out[end:]) - len(out[end:].lstrip())  # past the whitespace between documents
        assert len(docs) == len(commands), (  # its exit status at the end of the input is 1 even when all worked
            f"openstack --os-cloud {cloud}: {len(docs)} answers to {len(commands)} commands {commands}: {r.stderr}")
        return docs


def make_project(root: Path, prefix: str) -> None:
    shutil.copytree(MINI, root / "inventories")
    (root / "govcloud.yaml").write_text("version: 1\n")
    for f in (root / "inventories" / "departments").glob("*.yaml"):
        text = f.read_text()
        text = re.sub(r"\b(hrss|zsj)\b", rf"{prefix}-\1", text)
        text = re.sub(r"\b(hrss|zsj)-", rf"{prefix}-\1-", text)
        text = text.replace(f"{prefix}-{prefix}-", f"{prefix}-")
        f.write_text(text)


def cleanup(session: CloudSession, prefix: str) -> None:
    """Remove every object of the prefix's departments, in both regions."""
    discard_zones(session, prefix)


@pytest.fixture(scope="module")
def session(devcloud_cloud: CloudSession) -> CloudSession:
    return devcloud_cloud


@pytest.fixture(scope="module")
def zone(session: CloudSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zone]:
    prefix = f"t4{uuid.uuid4().hex[:4]}"
    root = tmp_path_factory.mktemp("provision")
    make_project(root, prefix)
    old = {k: os.environ.get(k) for k in ("OS_CLIENT_CONFIG_FILE", "GOVCLOUD_STATE_DIR")}
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(session.clouds_yaml)
    os.environ["GOVCLOUD_STATE_DIR"] = str(root / "state")
    try:
        yield Zone(root, prefix, session)
    finally:
        cleanup(session, prefix)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def names(items: list[dict[str, Any]]) -> list[str]:
    return sorted(i["Name"] for i in items)


def test_plan_on_an_empty_cloud_lists_every_resource(zone: Zone) -> None:
    rc, out, err = zone.govcloud("--output", "json", "provision", "plan", "--department", zone.hrss,
                                 "--department", zone.zsj, "--out", str(zone.root / "plan.json"))
    assert rc == 3, err
    doc = json.loads(out)
    kinds = Counter(c["kind"] for c in doc["changes"])
    assert all(c["action"] == "create" for c in doc["changes"])
    # 2 departments x (project, role) + 2 regions x (2 quotas, router, keypair, 3 x (net, subnet, iface, sg)) + groups
    assert kinds["project"] == 2 and kinds["network"] == 12 and kinds["subnet"] == 12 and kinds["security_group"] == 12
    assert kinds["router"] == 4 and kinds["router_interface"] == 12 and kinds["keypair"] == 4 and kinds["server_group"] >= 1


def test_apply_creates_everything_as_the_openstack_cli_sees_it(zone: Zone) -> None:
    rc, out, err = zone.govcloud("provision", "apply", str(zone.root / "plan.json"))
    assert rc == 0, out + err
    depts = (zone.hrss, zone.zsj)
    for cloud in ("gz", "st"):
        per_dept = [(("network", "list", "--tags", f"govcloud:dept={d}"),
                     ("subnet", "list", "--tags", "govcloud:managed", "--name", f"gov-{d}-mgmt"),
                     ("security", "group", "show", f"gov-{d}-base"),
                     ("router", "show", f"gov-{d}")) for d in depts]
        answers = zone.os_many(cloud, *(c for cmds in per_dept for c in cmds))
        for i, dept in enumerate(depts):
            nets, subnets, sg, router = answers[4 * i:4 * i + 4]
            assert names(nets) == [f"gov-{dept}-app", f"gov-{dept}-data", f"gov-{dept}-mgmt"]
            assert len(subnets) == 1
            ingress = [r for r in sg["rules"] if r["direction"] == "ingress"]
            assert ingress and all(r["remote_ip_prefix"] not in (None, "0.0.0.0/0") for r in ingress)
            assert {r["port_range_min"] for r in ingress if r["protocol"] == "tcp"} == {22}
            assert len(router["interfaces_info"]) == 3
    proj, quota, groups = zone.os_many("gz", ("project", "show", f"gov-{zone.hrss}"),
                                       ("quota", "show", f"gov-{zone.hrss}"),
                                       ("server", "group", "list", "--all-projects"))
    assert set(proj["tags"]) >= {"govcloud:managed", f"govcloud:dept={zone.hrss}"}
    cores = next(q for q in quota if q["Resource"] == "cores")["Limit"] if isinstance(quota, list) else quota["cores"]
    assert int(cores) >= 1
    assert any(g["Name"].startswith(f"gov-{zone.prefix}-zsj-") and "anti-affinity" in str(g["Policy"]) for g in groups)


def test_second_plan_has_no_changes(zone: Zone) -> None:
    rc, out, err = zone.govcloud("provision", "plan", "--department", zone.hrss, "--department", zone.zsj)
    assert rc == 0, out + err
    assert "No changes" in out


def test_out_of_band_changes_are_planned_and_repaired(zone: Zone) -> None:
    dept = zone.hrss
    zone.os("gz", "security", "group", "rule", "create", "--ingress", "--protocol", "tcp", "--dst-port", "2222",
            "--remote-ip", "10.9.9.0/24", f"gov-{dept}-base")
    zone.os("st", "router", "remove", "subnet", f"gov-{dept}", f"gov-{dept}-data", json_out=False)
    zone.os("st", "subnet", "delete", f"gov-{dept}-data", json_out=False)
    rc, out, err = zone.govcloud("provision", "plan", "--department", dept)
    assert rc == 3, out + err
    assert "~ security_group gov-" + dept + "-base (rules -tcp:2222:10.9.9.0/24)" in out
    assert f"+ subnet gov-{dept}-data" in out and f"+ router_interface gov-{dept}-data" in out
    # a saved plan is refused once the cloud drifts again
    rc, out, err = zone.govcloud("provision", "plan", "--department", dept, "--out", str(zone.root / "drift.json"))
    zone.os("gz", "security", "group", "rule", "create", "--ingress", "--protocol", "tcp", "--dst-port", "2223",
            "--remote-ip", "10.9.9.0/24", f"gov-{dept}-base")
    rc, out, err = zone.govcloud("provision", "apply", str(zone.root / "drift.json"))
    assert rc == 2 and "changed since the plan was made" in err
    rc, out, err = zone.govcloud("provision", "apply", "--department", dept)
    assert rc == 0, out + err
    rules = zone.os("gz", "security", "group", "rule", "list", f"gov-{dept}-base", "--ingress")
    assert not [r for r in rules if r.get("Port Range") in ("2222:2222", "2223:2223")]
    assert len(zone.os("st", "subnet", "list", "--name", f"gov-{dept}-data")) == 1
    assert zone.govcloud("provision", "plan", "--department", dept)[0] == 0


def test_untagged_clash_is_reported_and_never_touched(zone: Zone) -> None:
    new = f"{zone.prefix}-new"
    (zone.root / "inventories" / "departments" / f"{new}.yaml").write_text(
        f"version: 1\ndepartment: {{id: {new}, name: new department}}\nsystems: []\n")
    theirs = zone.os("gz", "network", "create", "--project", "admin", f"gov-{new}-app")
    try:
        rc, out, err = zone.govcloud("provision", "plan", "--department", new)
        assert rc == 3
        assert f"network gov-{new}-app exists (id {theirs['id']}) but is not managed by govcloud: not touched" in err
        assert f"+ network gov-{new}-app" not in out and f"+ network gov-{new}-data" in out
        rc, out, err = zone.govcloud("provision", "apply", "--department", new)
        assert rc == 0, out + err
        after = zone.os("gz", "network", "show", theirs["id"])
        assert after["tags"] == [] and after["project_id"] == theirs["project_id"] and after["updated_at"] == theirs["updated_at"]
        assert len(zone.os("gz", "network", "list", "--name", f"gov-{new}-app")) == 1
    finally:
        zone.os("gz", "network", "delete", theirs["id"], json_out=False)


def test_prune_removes_a_department_that_left_the_inventory(zone: Zone) -> None:
    new = f"{zone.prefix}-new"
    (zone.root / "inventories" / "departments" / f"{new}.yaml").unlink()
    rc, out, err = zone.govcloud("provision", "plan", "--department", new)
    assert rc == 2 and "unknown department" in err  # without --prune a gone department is a typo
    rc, out, err = zone.govcloud("provision", "plan", "--prune", "--department", new)
    assert rc == 3 and f"- project gov-{new}" in out and f"- network gov-{new}-data" in out
    rc, out, err = zone.govcloud("provision", "apply", "--prune", "--department", new, input="n\n")
    assert rc != 0  # asked, and the answer was no
    rc, out, err = zone.govcloud("provision", "apply", "--prune", "--yes", "--department", new)
    assert rc == 0, out + err
    nets, projects = zone.os_many("gz", ("network", "list", "--tags", f"govcloud:dept={new}"), ("project", "list"))
    assert nets == []
    assert not [p for p in projects if p["Name"] == f"gov-{new}"]
    # the other departments were not touched
    assert zone.govcloud("provision", "plan", "--department", zone.hrss, "--department", zone.zsj)[0] == 0


def test_apply_converges_through_faults_without_duplicates(zone: Zone) -> None:
    """The one fake: a loopback proxy in front of Nova and Neutron fails 20% of requests (503, 502 after the
    service acted, a hang past the client timeout after it acted, 429 + Retry-After); no real service can be
    made to do that on demand."""
    from bench.apiproxy import ApiProxy
    from govcloud.adapters.openstack import RetryPolicy
    from govcloud.services.provision import ProvisionOptions, apply_plan, make_plan

    dept = f"{zone.prefix}-flt"  # a fresh department (a copy of zsj) so the run starts from nothing
    src = (zone.root / "inventories" / "departments" / "zsj.yaml").read_text()
    src = re.sub(r"\{name: ([a-z0-9-]+), address: 10\.240\.16\.", rf"{{name: {dept}-\1, address: 10.240.17.", src)
    (zone.root / "inventories" / "departments" / f"{dept}.yaml").write_text(src.replace(zone.zsj, dept))
    proxies: list[ApiProxy] = []
    overrides = []
    for region, cloud in (("gz", "gz"), ("st", "st")):
        c = zone.session.connect(cloud)
        kv = []
        for service in ("network", "compute"):
            endpoint = c.endpoint_for(service).rstrip("/")
            if service == "network" and not endpoint.endswith("/v2.0"):
                endpoint += "/v2.0"
            p = ApiProxy(endpoint, fault_rate=0.2, seed=zlib.crc32(f"{region}/{service}".encode()), hang_seconds=2.5)
            p.start()
            proxies.append(p)
            kv.append((f"{service}_endpoint_override", p.url))
        overrides.append((region, tuple(kv)))
    try:
        opts = ProvisionOptions(departments=(dept,), clouds_yaml=zone.session.clouds_yaml, timeout=2.0,
                                retry=RetryPolicy(attempts=8, base_delay=0.2, max_delay=2.0), overrides=tuple(overrides))
        plan, _inv, cloud = make_plan(zone.root, opts)
        assert plan.changes
        result = apply_plan(plan, cloud, opts, prune=False)
        cloud.close()
        assert result.ok, [(c.key, e.message) for c, e in result.failed]
    finally:
        for p in proxies:
            p.stop()
    faults = sum((p.faults for p in proxies), Counter())
    print(f"fault test: {sum(p.requests for p in proxies)} requests through the proxies, faults {dict(faults)}, "
          f"{result.retries} retries, {result.recovered} lost creates found instead of re-sent, {result.seconds:.1f} s")
    assert sum(faults.values()) >= 10 and set(faults) == {"503-before", "502-after", "timeout-after", "429"}, faults
    # converged: a clean plan (no proxy) has nothing to do ...
    rc, out, err = zone.govcloud("provision", "plan", "--department", dept)
    assert rc == 0, out + err
    # ... and nothing was made twice
    kinds = (("network", "list"), ("subnet", "list"), ("router", "list"), ("security", "group", "list"),
             ("server", "group", "list", "--all-projects"))
    for cloud in ("gz", "st"):
        for kind, items in zip(kinds, zone.os_many(cloud, *kinds), strict=True):
            listed = [i["Name"] for i in items if str(i["Name"]).startswith(f"gov-{dept}")]
            assert len(listed) == len(set(listed)), (cloud, kind, Counter(listed))
        c = zone.session.connect(cloud)
        for g in c.network.security_groups():
            if g.name.startswith(f"gov-{dept}"):
                rules = [(r.protocol, r.port_range_min, r.remote_ip_prefix) for r in c.network.security_group_rules(security_group_id=g.id)
                         if r.direction == "ingress"]
                assert len(rules) == len(set(rules))
