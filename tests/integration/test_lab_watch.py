"""The reconcile watcher makes the lab behave like a cloud: a server booted through openstacksdk
becomes an SSH host (strict host keys, the lab's known_hosts) within seconds without anyone calling
reconcile; a deleted one disappears; a killed watcher is restarted by `lab up`; explicit reconciles
do not fight it; it stays cheap while nothing changes.

Reuses the running lab and devcloud (never takes either down). Objects are named ``lab-watch-*``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcloud.lab import net
from devcloud.lab.api import Lab
from devcloud.lab.reconcile import WATCH_NAME, Watcher, connect, reconcile
from devcloud.lab.testing import cloud_available, lab_session, ssh_keygen
from devcloud.paths import DevcloudPaths
from devcloud.procs import process_starttime, wait_for
from devcloud.testing import require

pytestmark = pytest.mark.integration

PREFIX = "lab-watch-"
CIDR = "10.245.252.0/24"  # clear of test_lab (10.245.253.0/24) and test_devcloud_cloud (10.245.254.0/24)
PKG_PARENT = str(Path(__file__).resolve().parents[2])


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with lab_session(hosts_per_site=1) as lb:
        require(lb.watcher_pid() is not None, "the reconcile watcher did not start (see <lab>/reconcile-watch.log)")
        yield lb


@pytest.fixture(scope="module")
def gz(lab: Lab, devcloud_cloud: object) -> Iterator[Any]:
    paths = DevcloudPaths.from_env()
    require(cloud_available(paths), f"devcloud OpenStack not up (no {paths.clouds_yaml} or Keystone not answering)")
    conn = connect("gz", paths.clouds_yaml)
    _purge(conn)
    try:
        yield conn
    finally:
        _purge(conn)
        conn.close()


def _purge(c: Any) -> None:
    """This module's servers, ports, networks and keypairs (also those of an earlier run that died)."""
    for srv in c.compute.servers(all_projects=True):
        if str(srv.name).startswith(PREFIX):
            c.compute.delete_server(srv, force=True)
            c.compute.wait_for_delete(srv, interval=1, wait=120)
    for port in c.network.ports():
        if str(port.name).startswith(PREFIX):
            c.network.delete_port(port, ignore_missing=True)
    for nw in c.network.networks():
        if str(nw.name).startswith(PREFIX):
            c.network.delete_network(nw, ignore_missing=True)
    for kp in c.compute.keypairs():
        if str(kp.name).startswith(PREFIX):
            c.compute.delete_keypair(kp, ignore_missing=True)


def _ssh_ok(lab: Lab, key: Path, ip: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-i", str(key), *lab.ssh_options(), "-o", "ConnectTimeout=2", f"root@{ip}", "hostname"],
        capture_output=True, text=True, timeout=20, check=False,
    )


def _refusing_clouds_yaml(tmp_path: Path) -> Path:
    p = tmp_path / "refusing-clouds.yaml"
    p.write_text("clouds:\n" + "".join(
        f"  {c}:\n    auth: {{auth_url: 'http://127.0.0.1:9/v3', username: a, password: p, project_name: a,"
        f" user_domain_name: Default, project_domain_name: Default}}\n    region_name: {r}\n"
        for c, r in (("gz", "RegionGZ"), ("st", "RegionST"))
    ))
    return p


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_server_becomes_a_host_by_itself_and_goes_away(lab: Lab, gz: Any, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    pub = ssh_keygen(key, "lab-watch-test")
    name = f"{PREFIX}{os.getpid()}"
    gz.compute.create_keypair(name=name, public_key=pub)
    nw = gz.network.create_network(name=name)
    gz.network.create_subnet(network_id=nw.id, cidr=CIDR, ip_version=4, name=name)
    port = gz.network.create_port(network_id=nw.id, name=name)
    ip = port.fixed_ips[0]["ip_address"]
    srv = gz.compute.create_server(
        name=name, flavor_id=gz.compute.find_flavor("m1.tiny").id, image_id=next(iter(gz.image.images())).id,
        networks=[{"port": port.id}], key_name=name, availability_zone="gz-b",
    )
    srv = gz.compute.wait_for_server(srv, status="ACTIVE", interval=0.5, wait=180)
    t_active = time.monotonic()
    # nobody calls reconcile: the watcher makes the host; ssh with strict host keys, the lab's known_hosts
    wait_for(lambda: _ssh_ok(lab, key, ip).returncode == 0, timeout=30, interval=0.2, what=f"ssh to {name} ({ip})")
    t_host = time.monotonic() - t_active
    r = _ssh_ok(lab, key, ip)
    assert r.stdout.strip() == name, r
    h = lab.host(f"n-{srv.id}")
    assert (h.kind, h.site, h.ip) == ("nova", "gz-b", ip)
    assert f"{name},{ip} ssh-ed25519 " in lab.known_hosts.read_text()
    print(f"ACTIVE -> ssh ok in {t_host:.2f}s (watcher, no explicit reconcile)")
    assert t_host < 10, f"host appeared only {t_host:.1f}s after ACTIVE (goal ~2 s)"

    # explicit reconciles alongside the watcher: same list, nothing re-created, the host's sshd stays
    sshd = lab.files.registry().pid(f"sshd-{h.key}")
    for _ in range(3):
        res = reconcile(lab)
        assert h.key in res.kept and h.key not in res.created + res.replaced + res.removed, res
    assert lab.files.registry().pid(f"sshd-{h.key}") == sshd

    # the cloud down (Keystone on a closed port, for a second watcher stepping in this process):
    # a region never listed blocks applying; a region that answered once keeps its last list
    bad = _refusing_clouds_yaml(tmp_path)
    w = Watcher(lab, bad)
    assert w.step().state in ("cloud-unknown", "busy")
    w = Watcher(lab)
    wait_for(lambda: w.step().state == "unchanged", timeout=10, interval=0.2, what="a watcher step")
    w.clouds_yaml, w.conns = bad, {}
    out = w.step()
    assert out.state in ("unchanged", "busy"), out
    assert out.state == "busy" or set(out.errors) == {"gz", "st"}
    assert h.key in {x.key for x in lab.hosts()}

    gz.compute.delete_server(srv)
    gz.compute.wait_for_delete(srv, interval=0.5, wait=120)
    t_deleted = time.monotonic()
    wait_for(lambda: h.key not in {x.key for x in lab.hosts()}, timeout=30, interval=0.1, what=f"host {h.key} removed")
    t_gone = time.monotonic() - t_deleted
    assert net.host_ns(h.key) not in net.netns_list()
    assert f"{name},{ip} " not in lab.known_hosts.read_text()
    assert _ssh_ok(lab, key, ip).returncode == 255
    print(f"deleted -> host removed in {t_gone:.2f}s")
    assert t_gone < 10


def test_watcher_is_cheap_while_nothing_changes(lab: Lab) -> None:
    pid = lab.watcher_pid()
    assert pid is not None
    c0, t0 = _cpu_seconds(pid), time.monotonic()
    # 5 s: five of its 1 s polls (one server list per region each), 0.5 s of CPU at the limit
    wait_for(lambda: time.monotonic() - t0 >= 5, timeout=10, interval=0.5, what="5 s of watching")
    share = (_cpu_seconds(pid) - c0) / (time.monotonic() - t0)
    print(f"watcher CPU: {share * 100:.1f}% of one core over 5 s")
    assert share < 0.10


def test_kill_9_then_lab_up_restarts_the_watcher(lab: Lab) -> None:
    old = lab.watcher_pid()
    assert old is not None
    stamp = process_starttime(old)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: lab.watcher_pid() is None, timeout=10, interval=0.05, what="watcher dead")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (PKG_PARENT, os.environ.get("PYTHONPATH", "")) if p)}
    r = subprocess.run([sys.executable, "-m", "devcloud", "lab", "up", "--no-install"], env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    new = lab.watcher_pid()
    assert new is not None and (new, process_starttime(new)) != (old, stamp)
    assert f"reconcile watcher: pid {new}" in r.stdout
    # `lab up` again: idempotent, the same watcher keeps running
    r = subprocess.run([sys.executable, "-m", "devcloud", "lab", "up", "--no-install"], env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0 and lab.watcher_pid() == new, r.stderr


def test_a_second_watcher_refuses_to_start(lab: Lab) -> None:
    """A second copy (e.g. PID file lost) must not run beside the first: the singleton lock refuses it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (PKG_PARENT, os.environ.get("PYTHONPATH", "")) if p)}
    r = subprocess.run([sys.executable, "-m", "devcloud", "lab", "reconcile", "--watch"], env=env,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1 and "another reconcile watcher holds" in r.stderr, r.stderr
    assert lab.files.registry().alive(WATCH_NAME)


def test_a_lost_pid_file_is_healed_by_adopting_the_running_watcher(lab: Lab) -> None:
    """The PID file goes (a crash, a wiped run dir): `lab up` must not start a loser that overwrites it,
    it adopts the watcher that holds the singleton lock."""
    pid = lab.watcher_pid()
    assert pid is not None
    (lab.files.registry().run_dir / f"{WATCH_NAME}.pid").unlink()
    assert lab.watcher_pid() is None
    assert lab.ensure_watcher() == pid
    assert lab.watcher_pid() == pid and process_starttime(pid) is not None
