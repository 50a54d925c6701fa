"""The devcloud OpenStack control plane, for real: CLI, boots per AZ, region isolation, status, down.

One session-scoped cloud (reused if already READY, brought down at the end only if this session
started it). When none runs, the first test builds it, over a `devcloud up` it killed half-way. Servers
booted here are deleted again. At the end a dead compute must make the cloud NOT READY, and the last
test stops the cloud and checks that no recorded process survives (a developer's cloud is brought back
up from the schema cache).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcloud.testing import CloudSession, missing_prerequisite

pytestmark = pytest.mark.integration

# inside the landing-zone pools of docs/lab-addressing.md, clear of what `govcloud provision` allocates first
TEST_CIDR = {"gz": "10.245.254.0/24", "st": "10.247.254.0/24"}
AZS = {"gz": ("gz-a", "gz-b"), "st": ("st-a",)}
PKG_PARENT = str(Path(__file__).resolve().parents[2])


@pytest.fixture(scope="module")
def cloud(devcloud_cloud: CloudSession) -> CloudSession:
    return devcloud_cloud


@pytest.fixture(scope="module")
def sdk(cloud: CloudSession) -> dict[str, Any]:
    try:
        import openstack  # noqa: F401
    except ImportError:
        missing_prerequisite("openstacksdk is not installed in the test interpreter")
    return {name: cloud.connect(name) for name in ("gz", "st")}


def _devcloud(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    e = dict(env if env is not None else os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (PKG_PARENT, e.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "devcloud", *args], env=e, capture_output=True, text=True, timeout=timeout)


def test_up_over_a_killed_up_cleans_it_and_builds_a_fresh_cloud(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """First of all (no test has asked for the cloud yet): a `devcloud up` SIGKILLed half-way (MariaDB,
    RabbitMQ and Keystone running, the catalog being registered), with every
    process it started (by the PIDs in their own PID files), is what a killed CI run leaves; the next `up`
    says so in one line, cleans it and builds a fresh cloud. That cloud is then the session's.

    A cloud already running (a developer's, a demo's) is not killed for this: the lifecycle test
    test_a_dead_compute_makes_the_cloud_not_ready_and_up_resets_it checks the reset on it instead.
    """
    from devcloud.cloud.layout import CloudLayout
    from devcloud.paths import DevcloudPaths
    from devcloud.procs import wait_for
    from devcloud.testing import claim_cloud, cloud_ready, report_stale

    paths = DevcloudPaths.from_env()
    if cloud_ready(paths):
        request.getfixturevalue("devcloud_cloud")
        pytest.skip("a running cloud was adopted: its reset is checked at the end, on a dead compute")
    log = tmp_path / "up.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (PKG_PARENT, os.environ.get("PYTHONPATH", "")) if p)}
    with log.open("w") as out:
        up = subprocess.Popen([sys.executable, "-m", "devcloud", "up"], env=env, stdout=out, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        wait_for(lambda: "keystone up" in log.read_text() or up.poll() is not None, timeout=300,
                 what="devcloud up to start Keystone")
    finally:
        with contextlib.suppress(ProcessLookupError):  # it ended by itself: the assertion below shows why
            os.killpg(up.pid, signal.SIGKILL)
        up.wait()
    assert up.returncode == -signal.SIGKILL, log.read_text()  # killed half-way, not finished
    reg = CloudLayout(paths).registry()
    killed = []
    for name in reg.names():
        if (pid := reg.pid(name)) is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
                killed.append(name)
            except ProcessLookupError:
                pass
    assert "mysqld" in killed and "rabbitmq" in killed, (killed, log.read_text())
    r = _devcloud("status")
    assert r.returncode == 1 and "NOT READY" in r.stdout, r.stdout
    claim_cloud(paths)  # from here the session owns what `up` builds, and takes it down at the end
    r = _devcloud("up")
    assert r.returncode == 0, r.stdout + r.stderr
    stale = [line for line in r.stdout.splitlines() if line.startswith("cloud: stale ")]
    assert len(stale) == 1 and stale[0].endswith(": cleaned"), r.stdout
    report_stale(stale[0])  # in the run's summary of what the ups found, beside the lab's
    assert _devcloud("status").returncode == 0
    assert request.getfixturevalue("devcloud_cloud").disposable


@pytest.fixture(scope="class")
def booted(sdk: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One server per AZ (gz-a, gz-b in RegionGZ; st-a in RegionST) on a per-region test network."""
    made: list[tuple[Any, str, Any]] = []  # (conn, kind, resource) in creation order
    servers: dict[str, Any] = {}
    try:
        for short, conn in sdk.items():
            net = conn.network.create_network(name=f"test-devcloud-{short}")
            made.append((conn, "network", net))
            conn.network.create_subnet(network_id=net.id, cidr=TEST_CIDR[short], ip_version=4, name=f"test-devcloud-{short}")
            flavor = conn.compute.find_flavor("m1.tiny")
            image = conn.image.find_image("fake-image")
            for az in AZS[short]:
                srv = conn.compute.create_server(
                    name=f"test-devcloud-{az}", flavor_id=flavor.id, image_id=image.id,
                    networks=[{"uuid": net.id}], availability_zone=az,
                )
                made.append((conn, "server", srv))
                servers[az] = srv
        for az, srv in servers.items():
            conn = sdk["st" if az.startswith("st") else "gz"]
            servers[az] = conn.compute.wait_for_server(srv, status="ACTIVE", interval=0.5, wait=180)
        yield servers
    finally:
        for conn, kind, res in reversed(made):
            if kind == "server":
                conn.compute.delete_server(res, ignore_missing=True)
                conn.compute.wait_for_delete(res, interval=0.5, wait=120)
            else:
                conn.network.delete_network(res, ignore_missing=True)  # also removes its subnet


def test_openstack_cli_server_list(cloud: CloudSession) -> None:
    for name in ("gz", "st", "devcloud-admin"):
        r = subprocess.run([str(cloud.openstack_cli), "--os-cloud", name, "server", "list", "-f", "json"],
                           env=cloud.env(), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().startswith("["), r.stdout


def test_catalog_has_both_regions_and_azs(sdk: dict[str, Any]) -> None:
    for short, conn in sdk.items():
        azs = {z.name for z in conn.compute.availability_zones()}
        assert set(AZS[short]) <= azs
        assert conn.network.find_network("public").is_router_external
        assert conn.compute.find_flavor("m1.small") is not None
    endpoints = {(e.region_id) for e in sdk["gz"].identity.endpoints(interface="public")}
    assert endpoints == {"RegionGZ", "RegionST"}


class TestServers:
    """Class scope: the servers are deleted again before the down/up test at the end of the module."""

    def test_boot_in_each_az_reaches_active(self, booted: dict[str, Any]) -> None:
        for az in ("gz-a", "gz-b", "st-a"):
            srv = booted[az]
            assert srv.status == "ACTIVE", (az, srv.status, srv.fault)
            assert srv.availability_zone == az
            assert srv.addresses, "the server got a Neutron fixed IP"

    def test_region_isolation(self, sdk: dict[str, Any], booted: dict[str, Any]) -> None:
        from openstack.exceptions import NotFoundException

        st_srv = booted["st-a"]
        with pytest.raises(NotFoundException):
            sdk["gz"].compute.get_server(st_srv.id)
        assert st_srv.id not in {s.id for s in sdk["gz"].compute.servers(all_projects=True)}
        assert sdk["st"].compute.get_server(st_srv.id).availability_zone == "st-a"
        gz_ids = {booted["gz-a"].id, booted["gz-b"].id}
        assert not gz_ids & {s.id for s in sdk["st"].compute.servers(all_projects=True)}


def test_status_and_up_are_idempotent(cloud: CloudSession) -> None:
    r = _devcloud("status")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "READY" in r.stdout and "nova-compute-st-a-cmp1" in r.stdout
    r = _devcloud("up")
    assert r.returncode == 0 and "already READY" in r.stdout, r.stdout + r.stderr


def test_errors_are_clear_without_traceback(cloud: CloudSession, tmp_path: Path) -> None:
    """A second home while the cloud runs: its ports are taken, which `up` must say plainly."""
    env = {**os.environ, "DEVCLOUD_HOME": str(tmp_path / "home"), "DEVCLOUD_VENV": str(cloud.paths.venv)}
    r = _devcloud("up", "--no-install", env=env)
    assert r.returncode == 1
    assert "already in use" in r.stderr and "Traceback" not in r.stderr, r.stderr
    env["DEVCLOUD_VENV"] = str(tmp_path / "no-venv")
    r = _devcloud("up", "--no-install", env=env)
    assert r.returncode == 1 and "devcloud install" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = _devcloud("--debug", "up", "--no-install", env=env)
    assert r.returncode == 1 and "Traceback" in r.stderr and "DevcloudError" in r.stderr
    r = _devcloud("status", env=env)
    assert r.returncode == 1 and "NOT READY" in r.stdout


def test_listens_on_loopback_only(cloud: CloudSession) -> None:
    """Every TCP/UDP socket a devcloud process listens on is bound to loopback."""
    import re

    from devcloud.cloud.layout import CloudLayout

    reg = CloudLayout(cloud.paths).registry()
    ours = set().union(*(_process_tree(p) for n in reg.names() if (p := reg.pid(n)) is not None))
    r = subprocess.run(["ss", "-H", "-l", "-n", "-p", "-t", "-u"], capture_output=True, text=True, check=True)
    seen = []
    for line in r.stdout.splitlines():
        pids = {int(x) for x in re.findall(r"pid=(\d+)", line)}
        if pids & ours:
            local = line.split()[4]
            seen.append(local)
            assert local.startswith(("127.0.0.1:", "[::1]:")), line  # epmd adds IPv6 loopback by itself
    assert "127.0.0.1:5000" in seen and "127.0.0.1:3306" in seen and "127.0.0.1:18774" in seen, seen


def _process_tree(pid: int) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        out.add(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.lifecycle
def test_a_dead_compute_makes_the_cloud_not_ready_and_up_resets_it(cloud: CloudSession) -> None:
    """A compute that died (SIGKILL: a real crash) makes the cloud NOT READY, naming it.

    On a developer's cloud, `up` then starts a fresh one (which must say so). The session's own cloud
    is left to test_down_leaves_no_process, next: its `up` over a killed `up` was checked first of all.
    """
    from devcloud.cloud.layout import CloudLayout

    reg = CloudLayout(cloud.paths).registry()
    pid = reg.pid("nova-compute-st-a-cmp1")
    assert pid is not None, reg.names()
    os.killpg(pid, signal.SIGKILL)
    r = _devcloud("status")
    assert r.returncode == 1, r.stdout
    unhealthy = next(line for line in r.stdout.splitlines() if line.startswith("NOT READY"))
    assert "nova-compute-st-a-cmp1" in unhealthy, r.stdout
    if cloud.disposable:
        return
    r = _devcloud("up")
    assert r.returncode == 0, r.stdout + r.stderr
    # the time to READY is a figure for devcloud/README.md, not an assertion; the cache must have been used
    assert "stale cloud state" in r.stdout and "schema restored from cache" in r.stdout, r.stdout
    r = _devcloud("status")
    assert r.returncode == 0, r.stdout


@pytest.mark.lifecycle
def test_down_leaves_no_process(cloud: CloudSession) -> None:
    """Last: stop everything and check that no recorded process (nor any child of one) survives.

    Then up again, for a developer's running cloud; a cloud this session started stays down (the
    session would stop it next; starting it again cost a minute and a half of the suite).
    """
    from devcloud.cloud.layout import CloudLayout

    reg = CloudLayout(cloud.paths).registry()
    names = reg.names()
    assert len(names) >= 19
    pids = set().union(*(_process_tree(p) for n in names if (p := reg.pid(n)) is not None))
    r = _devcloud("down")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [p for p in pids if _alive(p)] == []
    assert reg.names() == []
    r = _devcloud("status")
    assert r.returncode == 1, r.stdout
    # a developer's running cloud is expected up again; the session's own is stopped at its end anyway
    if cloud.disposable:
        return
    r = _devcloud("up")
    assert r.returncode == 0, r.stdout + r.stderr
