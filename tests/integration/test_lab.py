"""The site lab for real: netns hosts with their own sshd, strict host keys, site cuts, legacy hosts
with the sample app, host-to-host rsync, Nova servers becoming hosts, and a clean `down`.

One lab for the module (reused if already up; then the final `down` test is skipped, since the lab
is someone else's). Tests run in file order; the last one takes the lab down the way a crash would
leave it (state file gone) and checks nothing is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcloud.lab import net
from devcloud.lab.api import Lab, tcp_reachable
from devcloud.lab.legacy import create_legacy, generate_data
from devcloud.lab.testing import (
    cloud_available, http_get, lab_prerequisites, lab_session, leftovers, require, ssh_keygen, wait_ssh,
)
from devcloud.paths import DevcloudPaths
from devcloud.procs import wait_for

pytestmark = pytest.mark.integration

PKG_PARENT = str(Path(__file__).resolve().parents[2])
REPO = Path(__file__).resolve().parents[2]
INFRA = {"gz-a": "gz-a-h1", "gz-b": "gz-b-h1", "st-a": "st-a-h1"}
# clear of the example inventory's 10.240.16.10.. and of what the cloud tests use
LEGACY_HOSTS = [("lt-app-01", "10.240.31.200", ["/srv/lt/www", "/srv/lt/files"]), ("lt-db-01", "10.240.31.201", ["/srv/lt/db"])]
RECONCILE_CIDR = "10.245.253.0/24"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with lab_session(hosts_per_site=1) as lb:
        yield lb


def _devcloud(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PKG_PARENT, env.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "devcloud", "lab", *args], env=env, capture_output=True, text=True, timeout=timeout)


def _pid(lab: Lab, host: str) -> int:
    pid = lab.files.registry().pid(f"sshd-{lab.host(host).key}")
    assert pid is not None, f"{host} not running"
    return pid


def test_up_refuses_when_a_machine_route_overlaps_the_lab_range() -> None:
    """A real (harmless: blackhole) route inside 10.240.0.0/13: `up` must refuse and create nothing."""
    if Lab().is_up():
        pytest.skip("the lab is already up (the overlap check runs before a first build)")
    missing = lab_prerequisites()
    require(not missing, f"lab prerequisites missing: {missing}")
    subprocess.run(["ip", "route", "add", "blackhole", "10.244.200.0/24"], check=True)
    try:
        r = _devcloud("up", "--no-install")
    finally:
        subprocess.run(["ip", "route", "del", "blackhole", "10.244.200.0/24"], check=True)
    assert r.returncode == 1 and "10.244.200.0/24" in r.stderr and "overlaps" in r.stderr, r.stderr
    assert leftovers()["netns"] == []


def test_hosts_answer_over_openssh_with_strict_host_keys(lab: Lab) -> None:
    for site, name in INFRA.items():
        r = lab.ssh(name, "hostname; ip -4 -o addr show dev eth0; findmnt -n -o TARGET /srv")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == name
        assert f"{lab.host(name).ip}/24" in lines[1]
        assert lines[2] == "/srv"  # its own /srv (bind mount in its mount namespace)
    argv = lab.ssh_argv("gz-a-h1", "true")
    assert "StrictHostKeyChecking=yes" in argv and f"UserKnownHostsFile={lab.known_hosts}" in argv


def test_database_hosts_are_made_from_the_topology_in_their_sites(lab: Lab) -> None:
    """`devcloud lab db-hosts --from inventories/`: the hosts the shipped topology's ha.postgres names,
    each in its site at its address, answering ssh with strict host keys (issue 31: govcloud deploys
    the highly available PostgreSQL onto them as onto any estate's)."""
    names = ("gz-a-db1", "gz-b-db1", "st-a-db1")
    try:
        r = _devcloud("db-hosts", "--from", str(REPO / "inventories"))
        assert r.returncode == 0, r.stdout + r.stderr
        again = _devcloud("db-hosts", "--from", str(REPO / "inventories"))  # idempotent: the same hosts
        assert again.returncode == 0 and again.stdout == r.stdout, again.stdout + again.stderr
        for name, site, address in zip(names, ("gz-a", "gz-b", "st-a"), ("10.240.1.21", "10.240.2.21", "10.240.3.21")):
            h = lab.host(name)
            assert (h.site, h.ip, h.kind) == (site, address, "db")
            out = lab.ssh(name, "hostname; findmnt -n -o TARGET /srv")
            assert out.returncode == 0 and out.stdout.split() == [name, "/srv"], out.stdout + out.stderr
        # made again at once, as a test's fresh hosts are: the removed hosts' bridge ports (destroyed by the
        # kernel after their namespace) and the router's neighbour entries (their old MACs) must not
        # leave the new ones without eth0 or unreachable
        lab.remove_hosts(names)
        again = _devcloud("db-hosts", "--from", str(REPO / "inventories"))
        assert again.returncode == 0, again.stdout + again.stderr
        for name in names:
            out = lab.ssh(name, "hostname")
            assert out.returncode == 0 and out.stdout.split() == [name], out.stdout + out.stderr
    finally:
        for name in names:
            lab.remove_host(name)


def test_paramiko_reject_policy(lab: Lab, tmp_path: Path) -> None:
    import paramiko

    c = lab.paramiko_client("gz-b-h1")
    try:
        _, out, _ = c.exec_command("hostname")
        assert out.read().decode().strip() == "gz-b-h1"
        assert isinstance(c._policy, paramiko.RejectPolicy)  # noqa: SLF001 - what we promise callers
    finally:
        c.close()
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        lab.paramiko_client("gz-b-h1", known_hosts=empty)
    wrong = tmp_path / "wrong_known_hosts"
    other = lab.files.host("st-a-h1") / "etc" / "ssh_host_ed25519_key.pub"
    wrong.write_text(f"{lab.host('gz-b-h1').ip} {' '.join(other.read_text().split()[:2])}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        lab.paramiko_client("gz-b-h1", known_hosts=wrong)


def test_wrong_host_key_is_refused_by_openssh(lab: Lab, tmp_path: Path) -> None:
    wrong = tmp_path / "known_hosts"
    other = lab.files.host("gz-b-h1") / "etc" / "ssh_host_ed25519_key.pub"
    wrong.write_text(f"{lab.host('gz-a-h1').ip} {' '.join(other.read_text().split()[:2])}\n")
    argv = ["ssh", "-i", str(lab.controller_key), *lab.ssh_options(known_hosts=wrong), f"root@{lab.host('gz-a-h1').ip}", "true"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert r.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in r.stderr or "Host key verification failed" in r.stderr


def _matrix(lab: Lab) -> dict[str, bool]:
    out = {}
    for a, ha in INFRA.items():
        for b, hb in INFRA.items():
            if a != b:
                out[f"{a}->{b}"] = tcp_reachable(lab.host(hb).ip, 22, timeout=1.0, from_pid=_pid(lab, ha))
    out["controller->gz-a"] = tcp_reachable(lab.host("gz-a-h1").ip, 22, timeout=1.0)
    return out


def test_cut_and_restore_a_datacentre(lab: Lab) -> None:
    assert all(_matrix(lab).values())
    r = _devcloud("cut", "gz-a")
    assert r.returncode == 0, r.stderr
    try:
        assert lab.status()["sites"]["gz-a"]["cut"]
        m = _matrix(lab)
        assert m["gz-b->st-a"] and m["st-a->gz-b"], m
        assert not any(v for k, v in m.items() if "gz-a" in k), m  # incl. the controller: a real outage
    finally:
        r = _devcloud("restore", "gz-a")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: all(_matrix(lab).values()), timeout=15, what="all sites reachable after restore")
    wait_ssh(lab, "gz-a-h1")


def test_partition_breaks_one_path_only(lab: Lab) -> None:
    r = _devcloud("partition", "gz-a", "st-a")
    assert r.returncode == 0, r.stderr
    try:
        m = _matrix(lab)
        assert not m["gz-a->st-a"] and not m["st-a->gz-a"], m
        assert m["gz-a->gz-b"] and m["gz-b->gz-a"] and m["gz-b->st-a"] and m["st-a->gz-b"], m
        assert m["controller->gz-a"], m  # not an outage: the controller still sees both sides
    finally:
        r = _devcloud("heal")
    assert r.returncode == 0, r.stderr
    assert all(_matrix(lab).values())


@pytest.fixture(scope="module")
def legacy(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    inv = tmp_path_factory.mktemp("inventory")
    (inv / "departments").mkdir()
    doc = {
        "version": 1,
        "department": {"id": "lt", "name": "lab test"},
        "systems": [
            {"id": "lt-portal", "hosts": [
                {"name": n, "address": a, "port": 22, "user": "root", "role": "app", "data": d}
                for n, a, d in LEGACY_HOSTS
            ]},
            {"id": "lt-other", "hosts": [{"name": "lt-other-01", "address": "10.240.31.202", "data": ["/srv/o"]}]},
        ],
    }
    (inv / "departments" / "lt.yaml").write_text(json.dumps(doc))  # JSON is YAML
    r = _devcloud("legacy", "--from", str(inv), "--systems", "lt-portal", "--files", "4", "--file-size", "4096")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "lt-other-01" not in {h.key for h in lab.hosts()}
    # idempotent: a second run creates nothing and keeps the data
    again = create_legacy(lab, inv, ["lt-portal"], files=4, size=4096)
    assert again == []
    return [n for n, _, _ in LEGACY_HOSTS]


def test_legacy_host_serves_health_and_data(lab: Lab, legacy: list[str], tmp_path: Path) -> None:
    for name, addr, paths in LEGACY_HOSTS:
        h = lab.host(name)
        assert (h.ip, h.site, h.kind, h.meta["system"]) == (addr, "legacy", "legacy", "lt-portal")
        status, body = http_get(f"http://{addr}:8080/health")
        assert status == 200
        health = json.loads(body)
        assert health["status"] == "ok" and health["hostname"] == name and health["app"] == "lt-portal"
        assert all(health["data"][p]["files"] == 5 for p in paths)  # 4 parts + MANIFEST
        generate_data(tmp_path / name, f"{name}:{paths[0]}", files=4, size=4096)
        status, body = http_get(f"http://{addr}:8080{paths[0]}/part-0002.bin")
        assert status == 200 and body == (tmp_path / name / "part-0002.bin").read_bytes()
        assert http_get(f"http://{addr}:8080/etc/passwd")[0] == 404
    # the migration's view: stop/status/start over ssh with strict host keys
    ctl = "python3 /srv/app/sampleapp.py"
    assert lab.ssh("lt-app-01", f"{ctl} stop").returncode == 0
    assert lab.ssh("lt-app-01", f"{ctl} status").returncode == 3
    assert not tcp_reachable("10.240.31.200", 8080, timeout=1)
    r = lab.ssh("lt-app-01", f"{ctl} start")
    assert r.returncode == 0, r.stdout + r.stderr
    assert http_get("http://10.240.31.200:8080/health")[0] == 200  # survived the ssh session's end


def test_rsync_from_legacy_host_to_site_host(lab: Lab, legacy: list[str]) -> None:
    """What a migration does: a per-migration key on the legacy host, authorised on the target, rsync pushed."""
    src, dst = "lt-app-01", "gz-a-h1"
    r = lab.ssh(src, "rm -f /root/.ssh/mig && ssh-keygen -q -t ed25519 -N '' -C mig -f /root/.ssh/mig && cat /root/.ssh/mig.pub")
    assert r.returncode == 0, r.stderr
    pub = r.stdout.strip()
    assert lab.ssh(dst, f"echo '{pub}' >> /root/.ssh/authorized_keys").returncode == 0
    dst_ip = lab.host(dst).ip
    r = lab.ssh(src, f"rsync -a --delete -e 'ssh -i /root/.ssh/mig' /srv/lt/ root@{dst_ip}:/srv/lt-copy/", timeout=120)
    assert r.returncode == 0, r.stderr  # strict host keys inside the host: /etc/ssh/ssh_config -> lab known_hosts
    digest = "cd /srv/{} && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum"
    a = lab.ssh(src, digest.format("lt")).stdout
    b = lab.ssh(dst, digest.format("lt-copy")).stdout
    assert a and a == b
    # the same from a host whose known_hosts does not know the target is refused
    r = lab.ssh(src, f"ssh -i /root/.ssh/mig -o GlobalKnownHostsFile=/dev/null -o UserKnownHostsFile=/dev/null root@{dst_ip} true")
    assert r.returncode == 255 and "Host key verification failed" in r.stderr
    # revoke the per-migration key
    assert lab.ssh(dst, f"grep -vF '{pub}' /root/.ssh/authorized_keys > /root/.ssh/ak; mv /root/.ssh/ak /root/.ssh/authorized_keys").returncode == 0
    assert lab.ssh(src, f"ssh -i /root/.ssh/mig root@{dst_ip} true").returncode == 255


def test_nova_server_becomes_a_lab_host(lab: Lab, tmp_path: Path, devcloud_cloud: object) -> None:
    paths = DevcloudPaths.from_env()
    require(cloud_available(paths), f"devcloud OpenStack not up (no {paths.clouds_yaml} or Keystone not answering)")
    from devcloud.lab.reconcile import connect, reconcile, wait_for_hosts

    conn = connect("gz", paths.clouds_yaml)
    _remove_leftovers(conn)
    pub = ssh_keygen(tmp_path / "id_ed25519", "lab-reconcile-test")
    name = f"lab-reconcile-{os.getpid()}"
    made: list[tuple[str, object]] = []
    try:
        kp = conn.compute.create_keypair(name=name, public_key=pub)
        made.append(("keypair", kp))
        nw = conn.network.create_network(name=name)
        made.append(("network", nw))
        sub = conn.network.create_subnet(network_id=nw.id, cidr=RECONCILE_CIDR, ip_version=4, name=name)
        port = conn.network.create_port(network_id=nw.id, name=name)
        made.append(("port", port))
        srv = conn.compute.create_server(
            name=name, flavor_id=conn.compute.find_flavor("m1.tiny").id,
            image_id=next(iter(conn.image.images())).id, networks=[{"port": port.id}],
            key_name=name, availability_zone="gz-a",
        )
        made.append(("server", srv))
        srv = conn.compute.wait_for_server(srv, status="ACTIVE", wait=180)
        t0 = time.monotonic()
        res = reconcile(lab)
        t_reconcile = time.monotonic() - t0
        key = f"n-{srv.id}"
        # the lab's reconcile watcher may have made the host first: then this explicit pass keeps it
        assert key in res.created + res.kept, res
        h = lab.host(key)
        fixed = port.fixed_ips[0]["ip_address"]
        assert (h.hostname, h.ip, h.site, h.gateway) == (name, fixed, "gz-a", sub.gateway_ip)
        kh = lab.known_hosts.read_text()
        assert f"{name},{fixed} ssh-ed25519 " in kh
        r = subprocess.run(
            ["ssh", "-i", str(tmp_path / "id_ed25519"), *lab.ssh_options(), f"root@{fixed}", "hostname; ip -4 -o addr show dev eth0"],
            capture_output=True, text=True, timeout=30,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[0] == name and f"{fixed}/24" in r.stdout
        # the controller key is not authorised on Nova hosts (only the server's keypair)
        assert lab.ssh(key, "true").returncode == 255
        # reachable from the other sites' hosts too
        assert tcp_reachable(fixed, 22, from_pid=_pid(lab, "st-a-h1"))
        again = reconcile(lab)  # idempotent (other servers may come and go: other tests share the cloud)
        assert key in again.kept and key not in again.created + again.replaced
        assert [x.key for x in wait_for_hosts(lab, [srv.id], timeout=10)] == [key]
        print(f"reconcile created the host in {t_reconcile:.2f}s")
        conn.compute.delete_server(srv)
        conn.compute.wait_for_delete(srv, wait=120)
        made.remove(("server", srv))
        res = reconcile(lab)  # removes it, unless the watcher already did
        assert key in res.removed or key not in {x.key for x in lab.hosts()}
        assert key not in {x.key for x in lab.hosts()} and net.host_ns(key) not in net.netns_list()
        assert fixed not in lab.known_hosts.read_text()
    finally:  # best effort: a cleanup error must not hide the test's own failure
        for kind, obj in reversed(made):
            try:
                if kind == "server":
                    conn.compute.delete_server(obj, ignore_missing=True)
                    conn.compute.wait_for_delete(obj, wait=120)
                elif kind == "port":
                    conn.network.delete_port(obj, ignore_missing=True)
                elif kind == "network":
                    conn.network.delete_network(obj, ignore_missing=True)
                elif kind == "keypair":
                    conn.compute.delete_keypair(obj, ignore_missing=True)
            except Exception as e:  # noqa: BLE001
                print(f"cleanup of {kind} failed: {e}")
        try:
            reconcile(lab)
        except Exception as e:  # noqa: BLE001
            print(f"final reconcile failed: {e}")


def _remove_leftovers(conn: object) -> None:
    """Servers/ports/networks/keypairs of an earlier run that died before its cleanup."""
    c: Any = conn
    for srv in c.compute.servers(name="^lab-reconcile-"):
        c.compute.delete_server(srv, ignore_missing=True)
        c.compute.wait_for_delete(srv, wait=120)
    for port in c.network.ports():
        if str(port.name).startswith("lab-reconcile-"):
            c.network.delete_port(port, ignore_missing=True)
    for nw in c.network.networks():
        if str(nw.name).startswith("lab-reconcile-"):
            c.network.delete_network(nw, ignore_missing=True)
    for kp in c.compute.keypairs():
        if str(kp.name).startswith("lab-reconcile-"):
            c.compute.delete_keypair(kp, ignore_missing=True)


def test_down_leaves_nothing_behind_even_after_a_crash(lab: Lab, legacy: list[str]) -> None:
    if not lab.started_here:
        pytest.skip("the lab was already up before this module: not ours to take down")
    reg = lab.files.registry()
    pids = [reg.pid(n) for n in reg.names("sshd-")]
    app_pid = int((lab.files.host("lt-db-01") / "srv" / "app" / "sampleapp.pid").read_text())
    # a crash: the state file and the PID files are lost; down must work from the gcl- names alone
    lab.store.file.unlink()
    for p in lab.files.run.glob("*.pid"):
        p.unlink()
    r = _devcloud("down")
    assert r.returncode == 0, r.stderr
    assert leftovers() == {"netns": [], "links": [], "routes": []}
    for pid in [*pids, app_pid]:
        assert pid is not None and not _alive(pid), f"pid {pid} survived"
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    assert "10.240." not in out and "gcl-" not in out
    assert "gcl-" not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    assert not [n for n in subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout.split() if n.startswith("gcl-")]
    r = _devcloud("down")  # idempotent
    assert r.returncode == 0 and "0 namespaces" in r.stdout
    assert not lab.is_up()


def _alive(pid: int) -> bool:
    """Running (a zombie is dead: sshds started by this very process wait here to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
