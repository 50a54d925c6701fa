"""`govcloud hosts configure` on real Nova servers that the site lab turned into SSH hosts.

A test department gets its landing zone (govcloud provision), two servers booted with its keypair
(the operator key; one per site of gz, the fewest that show a host failing while another completes),
and the lab's reconciler makes each ACTIVE server a host (own sshd, host key,
/srv). The baseline then runs through ansible-runner with strict host keys: the first run changes
things, the second changes nothing, and a host that fails is named with its failed task while the
others complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from devcloud.procs import wait_for
from devcloud.testing import CloudSession, discard_zones

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MINI = REPO / "tests" / "data" / "mini" / "inventories"
ROOT_PREFIX = "/srv/govcloud-root"  # lab hosts share /etc with this machine: never write the real one


@pytest.fixture(scope="module")
def session(devcloud_cloud: CloudSession) -> CloudSession:
    return devcloud_cloud


@pytest.fixture(scope="module")
def lab(session: CloudSession) -> Iterator[Any]:
    from devcloud.lab.testing import lab_session

    with lab_session(session.paths, hosts_per_site=1) as lb:
        yield lb


def govcloud(root: Path, *args: str) -> tuple[int, str, str]:
    from govcloud.cli.main import cli

    r = CliRunner().invoke(cli, ["--root", str(root), *args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def servers(session: CloudSession, lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from devcloud.lab.reconcile import reconcile
    from devcloud.lab.testing import wait_ssh

    prefix = f"t4h{uuid.uuid4().hex[:4]}"
    dept = f"{prefix}-zsj"
    root = tmp_path_factory.mktemp("hosts")
    shutil.copytree(MINI, root / "inventories")
    (root / "govcloud.yaml").write_text("version: 1\n")
    (root / "inventories" / "departments" / "hrss.yaml").unlink()
    f = root / "inventories" / "departments" / "zsj.yaml"
    text = re.sub(r"\bzsj\b", dept, f.read_text())
    f.write_text(re.sub(r"\bzsj-", f"{dept}-", text).replace(f"{dept}-{dept}-", f"{dept}-"))
    old = {k: os.environ.get(k) for k in ("OS_CLIENT_CONFIG_FILE", "GOVCLOUD_STATE_DIR")}
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(session.clouds_yaml)
    os.environ["GOVCLOUD_STATE_DIR"] = str(root / "state")
    made: list[str] = []
    try:
        rc, out, err = govcloud(root, "provision", "apply", "--region", "gz", "--department", dept)
        assert rc == 0, out + err
        admin = session.connect("gz")
        project = admin.identity.find_project(f"gov-{dept}")
        conn = admin.connect_as_project({"id": project.id})
        net = conn.network.find_network(f"gov-{dept}-app")
        image = conn.image.find_image("fake-image")
        flavor = conn.compute.find_flavor("m1.tiny")
        names = [f"{prefix}-web-01", f"{prefix}-app-01"]
        for name, az in zip(names, ("gz-a", "gz-b")):
            s = conn.compute.create_server(name=name, image_id=image.id, flavor_id=flavor.id, networks=[{"uuid": net.id}],
                                           key_name=f"gov-{dept}", availability_zone=az,
                                           metadata={"govcloud:system": f"{dept}-idaas", "govcloud:role": name.split("-")[1]})
            made.append(s.id)
        for sid in made:
            conn.compute.wait_for_server(conn.compute.get_server(sid), status="ACTIVE", wait=180, interval=1)
        reconcile(lab, clouds_yaml=session.clouds_yaml)
        for name in names:
            wait_ssh(lab, name, key=root / "state" / "keys" / "ops_ed25519", timeout=60)
        yield {"root": root, "dept": dept, "names": names, "lab": lab}
    finally:
        admin = session.connect("gz")
        for sid in made:
            admin.compute.delete_server(sid, force=True)
        if made:
            wait_for(lambda: not [s for s in admin.compute.servers(all_projects=True) if s.id in made], timeout=120,
                     interval=1, what="test servers deleted")
            reconcile(lab, clouds_yaml=session.clouds_yaml)
        discard_zones(session, prefix)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def configure(servers: dict[str, Any], *, root: str = ROOT_PREFIX, limit: str = "") -> tuple[int, dict[str, Any], str]:
    lab = servers["lab"]
    rc, out, err = govcloud(servers["root"], "--output", "json", "hosts", "configure", "--known-hosts", str(lab.known_hosts),
                            "--control-path-dir", str(lab.paths.lab / "cp"), "--baseline-root", root,
                            "--limit", limit or f"dept_{servers['dept'].replace('-', '_')}")
    return rc, json.loads(out), err


def test_first_run_changes_second_run_changes_nothing(servers: dict[str, Any]) -> None:
    rc, doc, err = configure(servers)
    assert rc == 0, err
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert set(hosts) == set(servers["names"])
    assert all(h["changed"] > 0 and h["failed"] == 0 for h in hosts.values())
    assert not doc["artifacts"].startswith(str(REPO))
    lab = servers["lab"]
    conf = lab.exec(servers["names"][0], ["cat", f"{ROOT_PREFIX}/etc/ssh/sshd_config.d/50-govcloud.conf"]).stdout
    assert "PasswordAuthentication no" in conf and "PermitRootLogin prohibit-password" in conf
    etc_hosts = lab.exec(servers["names"][0], ["cat", f"{ROOT_PREFIX}/etc/hosts"]).stdout
    assert all(n in etc_hosts for n in servers["names"])
    rc, doc, err = configure(servers)
    assert rc == 0, err
    assert doc["changed"] == 0, doc["hosts"]


def test_a_failing_host_is_named_with_its_task_and_the_others_complete(servers: dict[str, Any]) -> None:
    lab = servers["lab"]
    bad = servers["names"][1]
    # a real failure: a plain file where the baseline needs its etc directory
    lab.exec(bad, ["sh", "-c", f"rm -rf {ROOT_PREFIX}/etc && mkdir -p {ROOT_PREFIX} && touch {ROOT_PREFIX}/etc"])
    try:
        rc, doc, err = configure(servers)
        assert rc == 1
        hosts = {h["name"]: h for h in doc["hosts"]}
        assert hosts[bad]["failed"] == 1 and hosts[bad]["failed_task"] == "Create the etc directory under the baseline root"
        assert f"{bad}: Create the etc directory under the baseline root" in err
        others = [h for n, h in hosts.items() if n != bad]
        assert others and all(h["failed"] == 0 and h["ok"] > 5 for h in others)
    finally:
        lab.exec(bad, ["rm", "-f", f"{ROOT_PREFIX}/etc"])


def test_writing_the_real_etc_of_a_lab_host_is_refused(servers: dict[str, Any]) -> None:
    """Lab hosts share /etc with this machine: the precheck must stop a baseline aimed at "/"."""
    name = servers["names"][0]
    rc, doc, err = configure(servers, root="/", limit=name)
    assert rc == 1
    (host,) = doc["hosts"]
    assert host["failed_task"] == "Assert the host does not share /etc with the controller when writing to /"
    assert host["changed"] == 0
