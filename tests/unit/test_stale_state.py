"""What a killed run leaves, and what each `up` makes of it (issue 28, item 3).

The verdicts are pure (devcloud.stale). The liveness checks they rest on run here for real but small:
PID files against start times, orphans of a SIGKILLed leader, the in-host PID-file check, the cloud
generation the lab's watcher follows. No stack is started and no namespace is touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from devcloud import stale
from devcloud.procs import (
    ProcessRegistry,
    _is_zombie,
    kill_pids,
    process_starttime,
    wait_for,
)

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def _gone(pid: int) -> bool:
    return process_starttime(pid) is None or _is_zombie(pid)


# ---------------------------------------------------------------- the one line


def test_the_lab_line_of_a_killed_run() -> None:
    f = stale.LabFacts(state_up=True, core_ns=True, namespaces=186, hosts=96, hosts_alive=0, watcher_alive=False)
    v = stale.judge_lab(f)
    assert v.action == stale.CLEAN and v.owned
    assert v.line == ("lab: stale state from a killed run (core namespace present, 0 of 96 host sshd alive, "
                      "watcher dead): cleaned")


def test_lines_are_one_line_and_name_the_stack() -> None:
    verdicts = [
        stale.judge_lab(stale.LabFacts(True, False, 0, 3, 0, False)),
        stale.judge_cloud(stale.CloudFacts(("a", "b"), (), True, False)),
        stale.judge_members("pg", {"gz-a": "stale"}, pidfile="postmaster.pid", process="postgres"),
        stale.judge_monitor({"exporter": "dead", "prometheus": "dead"}),
    ]
    for v, stack in zip(verdicts, ("lab", "cloud", "pg", "monitor")):
        assert v.action == stale.CLEAN and "\n" not in v.line
        assert v.line.startswith(f"{stack}: stale ") and v.line.endswith("): cleaned")


def test_some_shortens_long_lists() -> None:
    assert stale.some(["a", "b"]) == "a, b"
    assert stale.some([str(i) for i in range(7)]) == "0, 1, 2, 3 and 3 more"


# ---------------------------------------------------------------- the lab


@pytest.mark.parametrize(
    ("facts", "watch", "action", "line"),
    [
        # nothing there at all
        (stale.LabFacts(False, False, 0, 0, 0, False), True, stale.FRESH, ""),
        # a live lab (a demo's, a developer's): adopted, left running
        (stale.LabFacts(True, True, 7, 3, 3, True), True, stale.ADOPT, ""),
        # a live lab without a watcher: wanted -> restarted and said; not wanted -> nothing to say
        (stale.LabFacts(True, True, 7, 3, 3, False), True, stale.ADOPT,
         "lab: live lab adopted (3 of 3 host sshd alive); its reconcile watcher was dead: restarted"),
        (stale.LabFacts(True, True, 7, 3, 3, False), False, stale.ADOPT, ""),
        # a reboot: the state file survives in /var/tmp, the namespaces do not
        (stale.LabFacts(True, False, 0, 3, 0, False), True, stale.CLEAN,
         "lab: stale state from a killed run (core namespace missing, 0 of 3 host sshd alive, watcher dead): cleaned"),
        # namespaces without a state file saying up (killed mid-down, or the lab directory wiped)
        (stale.LabFacts(False, False, 9, 0, 0, False), True, stale.CLEAN,
         ("lab: stale state from a killed run (state file says down, 9 lab namespaces present, 0 of 0 host sshd "
          "alive, watcher dead): cleaned")),
        # partly dead: one host's sshd gone; the lab is rebuilt rather than trusted
        (stale.LabFacts(True, True, 8, 4, 3, True), True, stale.CLEAN,
         ("lab: stale state from a partly dead run (core namespace present, 3 of 4 host sshd alive, "
          "watcher alive): cleaned")),
        # the hosts killed, the watcher not: still partly dead
        (stale.LabFacts(True, True, 8, 4, 0, True), True, stale.CLEAN,
         ("lab: stale state from a partly dead run (core namespace present, 0 of 4 host sshd alive, "
          "watcher alive): cleaned")),
    ],
)
def test_judge_lab(facts: stale.LabFacts, watch: bool, action: str, line: str) -> None:
    v = stale.judge_lab(facts, watch=watch)
    assert (v.action, v.line) == (action, line)
    assert v.owned == (action != stale.ADOPT)


def test_a_lab_with_no_hosts_is_live_when_its_core_is_there() -> None:
    assert stale.lab_live(stale.LabFacts(True, True, 5, 0, 0, True))
    assert not stale.lab_live(stale.LabFacts(True, False, 0, 0, 0, True))
    assert not stale.lab_live(stale.LabFacts(False, True, 5, 0, 0, True))


# ---------------------------------------------------------------- the cloud


def test_judge_cloud() -> None:
    names = ("epmd", "keystone", "mysqld", "rabbitmq")
    assert stale.judge_cloud(stale.CloudFacts(names, names, True, True)).action == stale.ADOPT
    assert stale.judge_cloud(stale.CloudFacts((), (), False, False)).action == stale.FRESH
    killed = stale.judge_cloud(stale.CloudFacts(names, (), True, False))
    assert killed.line == ("cloud: stale cloud state from a killed run (0 of 4 recorded processes alive, "
                           "READY marker present): cleaned")
    # what test_up_resets_a_broken_cloud does: one compute SIGKILLed ("stale cloud state" is what it looks for)
    broken = stale.judge_cloud(stale.CloudFacts(names, names[:3], True, False))
    assert "stale cloud state" in broken.line and "partly dead" in broken.line
    assert "3 of 4 recorded processes alive, dead: rabbitmq" in broken.line
    # every process alive but `up` never finished (killed before the marker) or one not answering
    assert "not READY, no READY marker" in stale.judge_cloud(stale.CloudFacts(names, names, False, False)).line
    # only a marker (its PID files lost), or only orphans of a dead leader
    assert stale.judge_cloud(stale.CloudFacts((), (), True, False)).action == stale.CLEAN
    orphaned = stale.judge_cloud(stale.CloudFacts(("keystone",), (), False, False, orphans=2))
    assert "2 orphaned or unrecorded processes of this cloud" in orphaned.line and "partly dead" in orphaned.line


# ---------------------------------------------------------------- pg, dns, monitor


def test_judge_members() -> None:
    j = stale.judge_members
    assert j("pg", {"gz-a": "stopped", "gz-b": "stopped"}, pidfile="postmaster.pid", process="postgres").action == stale.FRESH
    assert j("pg", {"gz-a": "running", "gz-b": "stopped"}, pidfile="postmaster.pid", process="postgres").action == stale.ADOPT
    assert j("dns", {"gz-a": "running", "gz-b": "unknown"}, pidfile="named.pid", process="named").action == stale.ADOPT
    killed = j("pg", {"gz-a": "stale", "gz-b": "stale", "st-a": "stale"}, pidfile="postmaster.pid", process="postgres")
    assert killed.line == ("pg: stale state from a killed run (postmaster.pid left by a dead postgres on gz-a, gz-b, "
                           "st-a): cleaned")
    part = j("dns", {"gz-a": "stale", "gz-b": "running", "st-a": "running"}, pidfile="named.pid", process="named")
    assert part.line == ("dns: stale state from a partly dead run (named.pid left by a dead named on gz-a, running on "
                         "gz-b, st-a): cleaned")


def test_judge_monitor() -> None:
    j = stale.judge_monitor
    assert j({"exporter": "alive", "prometheus": "alive"}).action == stale.ADOPT
    assert j({"exporter": "none", "prometheus": "none"}).action == stale.FRESH
    assert j({"exporter": "dead", "prometheus": "dead"}).line == (
        "monitor: stale state from a killed run (exporter dead, prometheus dead): cleaned")
    assert j({"exporter": "alive", "prometheus": "dead"}).line == (
        "monitor: stale state from a partly dead run (exporter alive, prometheus dead): cleaned")
    assert j({"exporter": "alive", "prometheus": "none"}).action == stale.CLEAN


# ---------------------------------------------------------------- PID files: dead and recycled PIDs


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    p = subprocess.Popen(SLEEP, start_new_session=True)  # leads its group, as the registry's processes do
    yield p
    p.kill()
    p.wait()


def test_a_pid_file_naming_a_recycled_pid_is_dead(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    reg = ProcessRegistry(tmp_path)
    reg.adopt("svc", sleeper.pid)
    assert reg.alive("svc") and reg.pid("svc") == sleeper.pid
    # the same PID, another start time: what a PID file says after its process died and the PID came back
    (tmp_path / "svc.pid").write_text(f"{sleeper.pid} 1\n")
    assert reg.pid("svc") is None and not reg.alive("svc")
    assert reg.record("svc") == (sleeper.pid, "1")
    assert reg.orphans("anything") == []  # a recycled leader's number is someone else's group
    reg.stop("svc", timeout=1)  # never signals the other process
    assert not _gone(sleeper.pid) and reg.names() == []


def test_orphans_of_a_sigkilled_leader_are_found_and_killed(tmp_path: Path) -> None:
    marker = str(tmp_path / "home")
    reg = ProcessRegistry(tmp_path / "run")
    child = f'{sys.executable} -c "import time; time.sleep(60)" {marker}'
    script = f"{child} & echo $! > {tmp_path / 'child'}; exec {' '.join(SLEEP[:2])} 'import time; time.sleep(60)'"
    proc = reg.spawn("svc", ["/bin/sh", "-c", script], log=tmp_path / "log")
    wait_for(lambda: (tmp_path / "child").exists() and (tmp_path / "child").read_text().strip() != "", timeout=10)
    kid = int((tmp_path / "child").read_text())
    try:
        assert reg.orphans(marker) == []  # the leader lives: `stop` reaches its group
        os.kill(proc.pid, signal.SIGKILL)  # what `kill -9 PID` does: the leader alone
        proc.wait()
        assert reg.pid("svc") is None
        assert reg.orphans(marker) == [kid]
        assert reg.orphans(str(tmp_path / "elsewhere")) == []  # not naming our paths: not ours
        assert kill_pids(reg.orphans(marker), timeout=2) == 1
        wait_for(lambda: _gone(kid), timeout=5, what="the orphan gone")
    finally:
        kill_pids([kid], timeout=1)


def test_kill_pids_skips_what_is_not_running(sleeper: subprocess.Popen[bytes]) -> None:
    assert kill_pids([sleeper.pid, 2**22 + 7], timeout=2) == 1
    sleeper.wait(timeout=5)


# ---------------------------------------------------------------- the in-host PID-file check (pg, legacy pg)


def _check(pidfile: Path, word: str) -> int:
    from devcloud.lab.hosts import PIDFILE_CHECK

    return subprocess.run(["/bin/sh", "-c", PIDFILE_CHECK, "sh", str(pidfile), word], check=False).returncode


def test_pidfile_check(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    from devcloud.lab.hosts import PIDFILE_STATES

    f = tmp_path / "postmaster.pid"
    assert PIDFILE_STATES[_check(f, "time.sleep")] == "stopped"
    f.write_text(f"{sleeper.pid}\n/srv/pg/data\n1700000000\n5432\n")  # postmaster.pid: the PID on line 1
    assert PIDFILE_STATES[_check(f, "time.sleep")] == "running"
    assert PIDFILE_STATES[_check(f, "postgres")] == "stale"  # that PID is another program now
    dead = subprocess.Popen(["true"])
    dead.wait()
    f.write_text(f"{dead.pid}\n")
    assert PIDFILE_STATES[_check(f, "true")] == "stale"
    f.write_text("")
    assert PIDFILE_STATES[_check(f, "time.sleep")] == "stale"


# ---------------------------------------------------------------- which cloud the lab's watcher follows


def test_cloud_generation(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    from devcloud.cloud.layout import CloudLayout
    from devcloud.paths import DevcloudPaths

    lay = CloudLayout(DevcloudPaths(tmp_path))
    assert lay.generation() is None  # never up
    lay.state.mkdir(parents=True)
    lay.ready_marker.write_text("1\n")
    assert lay.generation() is None  # a marker, no process: a killed cloud; its servers never come back
    lay.registry().adopt("keystone", sleeper.pid)
    g = lay.generation()
    assert g is not None
    lay.ready_marker.unlink()
    assert lay.generation() is None  # taken down, or being rebuilt
    lay.ready_marker.write_text("2\n")  # the next `up`: written half a minute later at least
    os.utime(lay.ready_marker, ns=(g[1] + 30 * 10**9, g[1] + 30 * 10**9))
    assert lay.generation() not in (None, g)


def test_an_empty_password_file_left_by_a_killed_run_is_replaced(tmp_path: Path) -> None:
    from devcloud.cloud.layout import CloudLayout
    from devcloud.paths import DevcloudPaths

    lay = CloudLayout(DevcloudPaths(tmp_path))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "cloud-password").write_text("")
    pw = lay.password()
    assert len(pw) == 24 and lay.password() == pw
    assert (tmp_path / "cache" / "cloud-password").stat().st_mode & 0o777 == 0o600


class _Conn:
    """One region: lists what it holds; records each list's query."""

    def __init__(self, region: str, servers: list[Any]) -> None:
        self.config = SimpleNamespace(region_name=region)
        self.held = servers
        self.queries: list[dict[str, Any]] = []
        self.closed = 0
        self.compute = SimpleNamespace(servers=self._servers)

    def _servers(self, **q: Any) -> list[Any]:
        self.queries.append(q)
        return list(self.held)

    def close(self) -> None:
        self.closed += 1


def _server(sid: str) -> Any:
    return SimpleNamespace(id=sid, name=sid, status="SHUTOFF", availability_zone="gz-a", key_name=None,
                           user_id="u", addresses={})


def test_the_watcher_forgets_a_gone_cloud_and_lists_a_rebuilt_one_in_full(tmp_path: Path) -> None:
    from devcloud.lab.reconcile import Watcher

    (tmp_path / "clouds.yaml").write_text("clouds: {}\n")
    gen: dict[str, Any] = {"now": (1, 1)}
    conn = _Conn("RegionGZ", [_server("OLD")])
    lab = SimpleNamespace(paths=SimpleNamespace(clouds_yaml=tmp_path / "clouds.yaml"))
    w = Watcher(lab, connect_fn=lambda _c, _p: conn, clouds=("gz",), cloud=SimpleNamespace(generation=lambda: gen["now"]))
    servers, errors = w.current()
    assert errors == {} and [s.id for s in servers or []] == ["OLD"]
    assert [s.id for s in w.current()[0] or []] == ["OLD"] and "changes_since" in conn.queries[-1]
    gen["now"] = None  # `devcloud down` / `up` over it / every process killed: its servers are gone
    assert w.current() == ([], {})
    assert w.cache == {} and w.conns == {} and conn.closed == 1
    conn.held = []  # the fresh cloud: nothing of the old one, and a changes-since list would not say so
    gen["now"] = (2, 2)
    n = len(conn.queries)
    assert w.current() == ([], {})
    assert len(conn.queries) == n + 1 and "changes_since" not in conn.queries[-1]


def test_the_watcher_follows_devclouds_cloud_only_with_devclouds_clouds_yaml(tmp_path: Path) -> None:
    from devcloud.cloud.layout import CloudLayout
    from devcloud.lab.reconcile import Watcher
    from devcloud.paths import DevcloudPaths

    paths = DevcloudPaths(tmp_path)
    assert isinstance(Watcher(SimpleNamespace(paths=paths)).cloud, CloudLayout)
    assert isinstance(Watcher(SimpleNamespace(paths=paths), paths.clouds_yaml).cloud, CloudLayout)
    assert Watcher(SimpleNamespace(paths=paths), tmp_path / "other.yaml").cloud is None
    assert Watcher(SimpleNamespace(paths=SimpleNamespace(clouds_yaml=tmp_path / "c.yaml"))).cloud is None


# ---------------------------------------------------------------- who owns what `up` leaves


class _FakeLab:
    """Lab.up with the side effects replaced: what it does for each verdict."""

    def __init__(self, tmp_path: Path, facts: stale.LabFacts) -> None:
        from devcloud.lab.api import Lab
        from devcloud.paths import DevcloudPaths

        self.lab: Any = Lab(DevcloudPaths(tmp_path))
        self.calls: list[str] = []
        self.lab.survey = lambda: facts
        self.lab.down = lambda **kw: self.calls.append(f"down {kw}")
        self.lab._up = lambda n: self.calls.append("build") or []
        self.lab.ensure_watcher = lambda interval=1.0: self.calls.append("watcher") or 1


def test_lab_up_cleans_a_killed_lab_then_builds_and_owns_it(tmp_path: Path) -> None:
    f = _FakeLab(tmp_path, stale.LabFacts(True, True, 99, 96, 0, False))
    said: list[str] = []
    f.lab.up(1, say=said.append)
    assert f.calls == ["down {'keep_guard': True}", "build", "watcher"]
    assert said == [stale.judge_lab(f.lab.survey()).line]
    assert f.lab.last_up is not None and f.lab.last_up.owned


def test_lab_up_adopts_a_live_lab(tmp_path: Path) -> None:
    f = _FakeLab(tmp_path, stale.LabFacts(True, True, 9, 3, 3, True))
    said: list[str] = []
    f.lab.up(1, say=said.append)
    assert f.calls == ["build", "watcher"] and said == []
    assert f.lab.last_up is not None and not f.lab.last_up.owned


def test_monitor_survey_tells_killed_from_stopped(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    from devcloud import monitor
    from devcloud.paths import DevcloudPaths

    paths = DevcloudPaths(tmp_path)
    assert monitor.survey(paths) == {"exporter": "none", "prometheus": "none"}
    reg = monitor._registry(paths)
    reg.adopt(monitor.EXPORTER, sleeper.pid)
    (reg.run_dir / f"{monitor.PROMETHEUS}.pid").write_text(f"{os.getpid()} 1\n")  # a recycled PID
    assert monitor.survey(paths) == {"exporter": "alive", "prometheus": "dead"}
    assert stale.judge_monitor(monitor.survey(paths)).action == stale.CLEAN
    t0 = time.monotonic()
    monitor.clean(paths)
    assert time.monotonic() - t0 < 15 and reg.names() == []
    sleeper.wait(timeout=5)  # the live one of ours stopped by its PID; nothing else signalled
