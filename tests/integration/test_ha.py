"""`govcloud ha deploy` and `ha status` on the lab's database hosts (issue 31): etcd, Patroni 4.1.5 and
PostgreSQL 15, deployed by ansible-runner over strict-host-key SSH onto the hosts the topology names,
exactly as onto any estate's.

The project is the shipped inventories with the service renamed ``pgha``: the lab's zone also holds
``pg`` for the home-made failover controller's cluster (tests/integration/test_failover.py, retired by
issue 31), and the two must not meet. The database hosts are made fresh for the module and removed
after it (removing a lab host stops every process in its namespace: etcd, Patroni, PostgreSQL).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcloud.testing import require

REPO = Path(__file__).resolve().parents[2]
PATRONI = Path("/opt/govcloud/patroni/bin/patroni")
NAMES = ("gz-a-db1", "gz-b-db1", "st-a-db1")
SERVICE = "pgha"
RUNS = int(os.environ.get("GOVCLOUD_DRILL_RUNS", "1"))


@dataclass(frozen=True)
class HaProject:
    lab: Any
    root: Path
    state: Path
    env: dict[str, str]
    dns_key: Path

    def govcloud(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "govcloud", "--root", str(self.root), *args],
                              env=self.env, capture_output=True, text=True, timeout=timeout, check=False)

    def drill(self, scenario: str) -> dict[str, Any]:
        r = self.govcloud("--output", "json", "ha", "drill", "--scenario", scenario, "--yes",
                          "--known-hosts", str(self.lab.known_hosts), "--ssh-key", str(self.lab.controller_key),
                          "--dns-key", str(self.dns_key), timeout=400)
        assert r.returncode == 0, r.stdout + r.stderr
        report: dict[str, Any] = json.loads(r.stdout)
        return report

    def deploy(self, *options: str) -> subprocess.CompletedProcess[str]:
        return self.govcloud(*options, "ha", "deploy", "--known-hosts", str(self.lab.known_hosts),
                             "--ssh-key", str(self.lab.controller_key), "--dns-key", str(self.dns_key))


@pytest.fixture(scope="module")
def ha_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaProject]:
    require(PATRONI.exists(), f"{PATRONI} (devcloud lab install puts the pinned Patroni there)")
    require(Path("/usr/bin/etcd").exists(), "etcd-server is not installed (devcloud lab install)")
    from devcloud.lab.dbhosts import create_db_hosts
    from devcloud.lab.dns import LabDns
    from devcloud.lab.testing import lab_session

    with lab_session() as lab:
        dns = LabDns(lab)
        dns.up()
        lab.remove_hosts(NAMES)  # a fresh host each: no etcd member or data directory a killed run left
        root = tmp_path_factory.mktemp("ha-root")
        shutil.copytree(REPO / "inventories", root / "inventories")
        (root / "govcloud.yaml").write_text("version: 1\n")
        topology = root / "inventories" / "topology.yaml"
        text, n = re.subn(r"(\n    name: )pg(\s)", rf"\g<1>{SERVICE}\g<2>", topology.read_text())
        assert n == 1
        topology.write_text(text)
        create_db_hosts(lab, root / "inventories")
        state = tmp_path_factory.mktemp("ha-state")
        env = {**os.environ, "GOVCLOUD_STATE_DIR": str(state)}
        env.pop("GOVCLOUD_DNS_KEY", None)
        try:
            yield HaProject(lab, root, state, env, dns.key_path)
        finally:
            lab.remove_hosts(NAMES)


@pytest.fixture(scope="module")
def deployed(ha_project: HaProject) -> subprocess.CompletedProcess[str]:
    """`ha deploy` once for the module (its first deployment); tests then share the running layer."""
    return ha_project.deploy()


def _psql(address: str, password: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(host=address, port=5432, user="postgres", password=password, dbname="postgres",
                         connect_timeout=5, autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def test_deploy_makes_the_shape_status_shows_it_and_a_rerun_changes_nothing(ha_project: HaProject,
                                                                           deployed: subprocess.CompletedProcess[str]) -> None:
    """Deploy: the gz cluster with a leader and a synchronous standby, the st standby cluster streaming
    from the name, every etcd member healthy, the name on the leader in every site; a write on the
    leader reaches st-a; the passwords reach the hosts' 0600 files and nothing else; a rerun is a no-op."""
    from devcloud.procs import wait_for

    r = deployed
    assert r.returncode == 0, r.stdout + r.stderr
    assert "gdgov: leader gz-a-db1, synchronous standby gz-b-db1; pgha.svc.gdgov.internal. -> 10.240.1.21" \
        in r.stdout, r.stdout

    s = ha_project.govcloud("--output", "json", "ha", "status", "--dns-key", str(ha_project.dns_key))
    assert s.returncode == 0, s.stdout + s.stderr
    status = json.loads(s.stdout)
    roles = {c["scope"]: {m["name"]: (m["role"], m["state"]) for m in c["members"]} for c in status["clusters"]}
    assert roles == {"gdgov": {"gz-a-db1": ("leader", "running"), "gz-b-db1": ("sync_standby", "streaming")},
                     "gdgov-st": {"st-a-db1": ("standby_leader", "streaming")}}, roles
    assert [(e["scope"], e["member"], e["healthy"]) for e in status["etcd"]] == [
        ("gdgov", "gz-a-db1", True), ("gdgov", "gz-b-db1", True), ("gdgov", "st-a-db1", True),
        ("gdgov-st", "st-a-db1", True)]
    assert {n["site"]: n["addresses"] for n in status["names"]} == {s: ["10.240.1.21"] for s in ("gz-a", "gz-b", "st-a")}

    secrets = yaml.safe_load((ha_project.state / "ha" / "gdgov.secrets.yaml").read_text())
    assert (ha_project.state / "ha" / "gdgov.secrets.yaml").stat().st_mode & 0o777 == 0o600
    _psql("10.240.1.21", secrets["superuser"], "CREATE TABLE IF NOT EXISTS probe (id int); INSERT INTO probe VALUES (31)")
    wait_for(lambda: _rows_on_standby(secrets["superuser"]) == [(31,)], timeout=30,
             what="the row written on gz-a's leader to reach st-a's standby cluster")

    for host in NAMES:
        conf = ha_project.lab.files.host(host) / "srv" / "govcloud-ha" / ("gdgov-st" if host.startswith("st") else "gdgov") \
            / "patroni.yml"
        st = conf.stat()
        assert (st.st_mode & 0o777, st.st_uid) == (0o600, _uid("postgres")), conf
    leaked = [str(p) for p in ha_project.state.rglob("*") if p.is_file() and p.name != "gdgov.secrets.yaml"
              and any(v.encode() in p.read_bytes() for v in secrets.values())]
    assert not leaked, f"a password reached {leaked}"
    assert not any(v in r.stdout + r.stderr + s.stdout for v in secrets.values())

    again = ha_project.deploy("--output", "json")  # one run (the name is published): the whole state, unchanged
    assert again.returncode == 0, again.stdout + again.stderr
    report = json.loads(again.stdout)
    assert [r["changed"] for r in report["runs"]] == [0], report["runs"]
    assert (report["leader"], report["name_switched"]) == ("10.240.1.21", False), report


def _rows_on_standby(password: str) -> list[tuple[Any, ...]] | None:
    try:
        return _psql("10.240.3.21", password, "SELECT id FROM probe")
    except Exception:  # noqa: BLE001 - not replicated yet (no table): polled again
        return None


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


class Writer:
    """Commits one row every 20 ms through a libpq host list (read-write only): what an application does
    across a switchover. ``acked`` holds the ids whose COMMIT returned."""

    def __init__(self, password: str) -> None:
        import threading

        self.password = password
        self.acked: list[int] = []
        self.errors = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg

        n = 0
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(host="10.240.1.21,10.240.2.21", port="5432,5432", user="postgres",
                                           password=self.password, dbname="postgres", connect_timeout=2,
                                           target_session_attrs="read-write", autocommit=True)
                n += 1
                conn.execute("INSERT INTO writes VALUES (%s)", (n,))
                self.acked.append(n)
            except Exception:  # noqa: BLE001 - the leader changing: reconnect and go on (counted)
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
            self.stop.wait(0.02)
        if conn is not None:
            conn.close()


def test_switchover_there_and_home_moves_the_name_and_loses_no_acknowledged_commit(
        ha_project: HaProject, deployed: subprocess.CompletedProcess[str]) -> None:
    """`ha switchover` (to the synchronous standby, then `--to` home) with a writer committing all along and
    `ha watch` running beside it: the name answers the new leader in every site when the command
    returns, every acknowledged commit is on the final leader, and the watcher stops cleanly."""
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    secrets = yaml.safe_load((ha_project.state / "ha" / "gdgov.secrets.yaml").read_text())
    _psql("10.240.1.21", secrets["superuser"], "CREATE TABLE IF NOT EXISTS writes (id int PRIMARY KEY)")
    watcher = subprocess.Popen([sys.executable, "-m", "govcloud", "--root", str(ha_project.root), "ha", "watch",
                                "--dns-key", str(ha_project.dns_key)], env=ha_project.env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    writer = Writer(secrets["superuser"])
    writer.thread.start()
    try:
        there = ha_project.govcloud("--output", "json", "ha", "switchover", "--yes", "--dns-key", str(ha_project.dns_key))
        assert there.returncode == 0, there.stdout + there.stderr
        moved = json.loads(there.stdout)
        assert (moved["old_leader"], moved["new_leader"], moved["address"]) == ("gz-a-db1", "gz-b-db1", "10.240.2.21")
        s = ha_project.govcloud("--output", "json", "ha", "status", "--dns-key", str(ha_project.dns_key))
        status = json.loads(s.stdout)
        assert {n["site"]: n["addresses"] for n in status["names"]} == {
            site: ["10.240.2.21"] for site in ("gz-a", "gz-b", "st-a")}, status["names"]
        roles = {m["name"]: m["role"] for m in status["clusters"][0]["members"]}
        assert roles == {"gz-b-db1": "leader", "gz-a-db1": "sync_standby"}, roles
        home = ha_project.govcloud("ha", "switchover", "--to", "gz-a-db1", "--yes", "--dns-key", str(ha_project.dns_key))
        assert home.returncode == 0 and "gz-b-db1 -> gz-a-db1" in home.stdout, home.stdout + home.stderr
        refused = ha_project.govcloud("ha", "switchover", "--dns-key", str(ha_project.dns_key))  # no --yes, no tty
        assert refused.returncode == 4 and "not confirmed" in refused.stderr, refused.stdout + refused.stderr
    finally:
        writer.stop.set()
        writer.thread.join(timeout=10)
        watcher.terminate()
        out, err = watcher.communicate(timeout=10)
    assert watcher.returncode == 0, out + err
    assert "error" not in out + err, out + err
    assert len(writer.acked) > 20, (len(writer.acked), writer.errors)
    rows = {r[0] for r in _psql("10.240.1.21", secrets["superuser"], "SELECT id FROM writes")}
    lost = sorted(set(writer.acked) - rows)
    assert not lost, f"acknowledged commits lost: {lost}"


def test_site_loss_of_the_leaders_site_fails_over_without_loss_then_it_rejoins_and_goes_home(
        ha_project: HaProject, deployed: subprocess.CompletedProcess[str]) -> None:
    """`ha drill --scenario site-loss:gz-a` (the accelerator not built yet: Patroni alone decides): gz-b's
    member leads within ttl + 5 s of the cut, no acknowledged commit is lost, never two writable
    members at once, every site's server answers the new leader; once the cut is undone gz-a rejoins
    as the synchronous standby (pg_rewind through Patroni), and `ha switchover --to gz-a-db1` takes it home.
    GOVCLOUD_DRILL_RUNS times (once in the suite, 3 times in the scale tier)."""
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    for run in range(RUNS):
        rep = ha_project.drill("site-loss:gz-a")
        print(f"\nsite-loss:gz-a run {run + 1}: RTO {rep['rto_s']} s, {rep['acked']} acknowledged, lost "
              f"{rep['lost']}, longest pause {rep['longest_pause_s']} s, new leader seen at "
              f"{rep['leader_seen_s']} s, name moved at {rep['name_moved_s']} s")
        assert (rep["old_leader"], rep["new_leader"], rep["lost"], rep["max_writable"]) == \
            ("gz-a-db1", "gz-b-db1", [], 1), rep
        assert rep["rto_s"] is not None and rep["rto_s"] <= 20 + 5, rep  # ttl + 5 s, Patroni alone
        assert rep["names_after"] == {site: ["10.240.2.21"] for site in ("gz-a", "gz-b", "st-a")}, rep["names_after"]
        assert rep["rejoined"] == {"gz-b-db1": "leader", "gz-a-db1": "sync_standby"}, rep["rejoined"]
        assert Path(rep["report_path"]).is_file()
        home = ha_project.govcloud("ha", "switchover", "--to", "gz-a-db1", "--yes", "--dns-key", str(ha_project.dns_key))
        assert home.returncode == 0 and "gz-b-db1 -> gz-a-db1" in home.stdout, home.stdout + home.stderr


@pytest.mark.scale  # about 30 s each (watched ttl + 5 s): the suite drills the leader's site loss
@pytest.mark.parametrize("scenario", ["partition:gz-a/st-a", "site-loss:gz-b"])
def test_a_partition_or_the_sync_standbys_loss_fails_nothing_over_and_writes_go_on(
        ha_project: HaProject, deployed: subprocess.CompletedProcess[str], scenario: str) -> None:
    """No failover where none is due: cut gz-a from st-a (each still reaches gz-b: the ring keeps its
    quorum), or lose gz-b (the synchronous standby: commits pause about wal_sender_timeout, then the
    primary goes on alone). gz-a leads throughout, never two writable members, nothing acknowledged is lost."""
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    for run in range(RUNS):
        rep = ha_project.drill(scenario)
        print(f"\n{scenario} run {run + 1}: leaders {rep['leaders_seen']}, {rep['acked']} acknowledged, lost "
              f"{rep['lost']}, longest pause {rep['longest_pause_s']} s")
        assert (rep["new_leader"], rep["leaders_seen"], rep["lost"], rep["max_writable"]) == \
            ("gz-a-db1", ["gz-a-db1"], [], 1), rep
        assert rep["rejoined"] == {"gz-a-db1": "leader", "gz-b-db1": "sync_standby"}, rep["rejoined"]
