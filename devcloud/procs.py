"""Start processes, record their PIDs, stop exactly those PIDs (never by name).

A PID file holds ``<pid> <starttime>`` where starttime is field 22 of /proc/<pid>/stat, so a
recycled PID is never mistaken for ours. Processes start in their own session so that a stop
reaches their whole process group (uwsgi workers, sshd session children).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path


def _starttime(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19]  # field 22 overall; fields[0] is field 3


class ProcessRegistry:
    """The processes one component started, one PID file each under ``run_dir``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def _pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        netns: str | None = None,
    ) -> int:
        """Start ``argv`` detached (own session), output appended to ``log``; record its PID.

        With ``netns`` the process runs inside that network namespace (``ip netns exec``).
        Refuses to start a second copy of a running ``name``.
        """
        return self.spawn(name, argv, log=log, env=env, cwd=cwd, netns=netns).pid

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        netns: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Like ``start`` but returns the Popen, so a short-lived task's exit status can be awaited."""
        if self.is_running(name):
            raise RuntimeError(f"{name} is already running (pid {self.pid(name)})")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                full,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        st = _starttime(proc.pid) or "0"
        self._pidfile(name).write_text(f"{proc.pid} {st}\n")
        return proc

    def adopt(self, name: str, pid: int) -> None:
        """Record a PID started elsewhere (e.g. a daemon that forked) as ours."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._pidfile(name).write_text(f"{pid} {_starttime(pid) or '0'}\n")

    def record(self, name: str) -> tuple[int, str] | None:
        """What the PID file says, ``(pid, starttime)``, whether or not that process still lives."""
        try:
            pid_s, st = self._pidfile(name).read_text().split()
            return int(pid_s), st
        except (OSError, ValueError):
            return None

    def pid(self, name: str) -> int | None:
        """The recorded PID if that very process is still alive, else None."""
        rec = self.record(name)
        if rec is None:
            return None
        return rec[0] if _starttime(rec[0]) == rec[1] else None

    def is_running(self, name: str) -> bool:
        return self.pid(name) is not None

    def alive(self, name: str) -> bool:
        """Running and not a zombie (a dead child of this very process stays in /proc until reaped)."""
        pid = self.pid(name)
        return pid is not None and not _is_zombie(pid)

    def forget(self, name: str) -> None:
        """Drop the PID file of a process that has exited (e.g. a finished one-shot task)."""
        if not self.alive(name):
            self._pidfile(name).unlink(missing_ok=True)

    def names(self, prefix: str = "") -> list[str]:
        if not self.run_dir.is_dir():
            return []
        return sorted(p.stem for p in self.run_dir.glob(f"{prefix}*.pid"))

    def stop(self, name: str, timeout: float = 30.0) -> None:
        """TERM the recorded process group, wait up to ``timeout``, then KILL; forget the PID."""
        pid = self.pid(name)
        if pid is not None:
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _starttime(pid) is not None and not _is_zombie(pid):
                time.sleep(0.1)
            if _starttime(pid) is not None:
                _signal_group(pid, signal.SIGKILL)
        self._pidfile(name).unlink(missing_ok=True)

    def stop_many(self, names: Sequence[str], timeout: float = 30.0) -> None:
        """TERM all of ``names`` at once, wait up to ``timeout`` for all, KILL the rest; forget them."""
        pids = {n: self.pid(n) for n in names}
        # descendants that left the group (setsid: Erlang's erl_child_setup, inet_gethost) go down too
        strays = {d: _starttime(d) for p in pids.values() if p is not None for d in _descendants(p)}
        for pid in pids.values():
            if pid is not None:
                _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
            p is not None and _starttime(p) is not None and not _is_zombie(p) for p in pids.values()
        ):
            time.sleep(0.1)
        for n, pid in pids.items():
            if pid is not None and _starttime(pid) is not None:
                _signal_group(pid, signal.SIGKILL)
            self._pidfile(n).unlink(missing_ok=True)
        # strays normally exit with their parent; give them a moment, then KILL (same starttime = same process)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_starttime(d) == st and not _is_zombie(d) for d, st in strays.items()):
            time.sleep(0.1)
        for d, st in strays.items():
            if st is not None and _starttime(d) == st and not _is_zombie(d):
                try:
                    os.kill(d, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def marked(self, env_line: str) -> list[int]:
        """Live processes whose environment holds exactly ``env_line`` (``KEY=VALUE``), outside the group
        and session of every recorded process that is still alive.

        A service gets such a line when it starts; a ``up`` killed between starting one and writing its
        PID file leaves it unrecorded, in its own session under init, holding a port the next ``up``
        needs. This finds it whether or not any recorded process died.
        """
        alive = {p for n in self.names() if (p := self.pid(n)) is not None}
        out: list[int] = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit() or int(d.name) == os.getpid():
                continue
            try:
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if f[0] == "Z" or int(f[2]) in alive or int(f[3]) in alive:
                continue
            if env_line in _environ(d).split("\n"):
                out.append(int(d.name))
        return sorted(out)

    def orphans(self, marker: str, env_marker: str | None = None) -> list[int]:
        """Live processes left behind by recorded ones that died (a SIGKILL reaches one process, not its
        group): in the dead one's process group or session (each recorded process leads both), started
        after it, with ``marker`` (e.g. the devcloud home) in their command line. ``stop`` cannot reach
        them: it signals only a recorded process that is still alive.

        A group or session number stays allocated while a member lives, so the kernel never gives it
        to a new process meanwhile; a recorded PID that now names another process (PID reuse) means
        our group was empty: such a leader is skipped, its number's group is the new process's.

        With ``env_marker``, also a daemon one of them spawned (its own session, parent init, so in
        no group of ours): started after the earliest dead one, with ``env_marker`` in its inherited
        environment. RabbitMQ's Erlang VM starts ``epmd -daemon`` when the epmd it was given dies;
        that epmd then holds the port the next ``up`` needs.
        """
        dead: dict[int, int] = {}
        for name in self.names():
            rec = self.record(name)
            if rec is None:
                continue
            now = _starttime(rec[0])
            if now is None or (now == rec[1] and _is_zombie(rec[0])):  # gone, or our unreaped child
                dead[rec[0]] = int(rec[1]) if rec[1].isdigit() else 0
        out: list[int] = []
        for d in Path("/proc").iterdir() if dead else ():
            if not d.name.isdigit() or int(d.name) in dead:
                continue
            try:
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if f[0] == "Z":
                continue
            leader = int(f[2]) if int(f[2]) in dead else int(f[3]) if int(f[3]) in dead else None
            if leader is not None and int(f[19]) >= dead[leader]:
                cmd = cmdline(int(d.name))
                if cmd is not None and marker in cmd:
                    out.append(int(d.name))
            elif env_marker and f[1] == "1" and int(f[19]) >= min(dead.values()) and env_marker in _environ(d):
                out.append(int(d.name))
        return sorted(out)

    def stop_all(self, prefix: str = "", timeout: float = 30.0) -> list[str]:
        """Stop every recorded process whose name starts with ``prefix``; returns the names."""
        names = self.names(prefix)
        for n in reversed(names):
            self.stop(n, timeout)
        return names


def _descendants(pid: int) -> set[int]:
    """All live descendants of ``pid`` (via /proc/<pid>/task/*/children)."""
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            for k in kids:
                if k not in out:
                    out.add(k)
                    todo.append(k)
    return out


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, sig)


def wait_for(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.2, what: str = "condition") -> None:
    """Poll ``predicate`` until true or raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _environ(proc: Path) -> str:
    """A process's environment as one string ("" when it cannot be read)."""
    try:
        return (proc / "environ").read_bytes().replace(b"\0", b"\n").decode(errors="replace")
    except OSError:
        return ""


def cmdline(pid: int) -> str | None:
    """The command line of ``pid``, arguments joined by spaces (None when gone; "" for a zombie)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None


def kill_pids(pids: Iterable[int], timeout: float = 5.0) -> int:
    """TERM all at once, wait (one deadline for all), KILL what is left. PID reuse is checked: a
    process is signalled only while its start time is the one seen first. Returns how many lived."""
    stamps = {p: _starttime(p) for p in set(pids)}
    live = {p: st for p, st in stamps.items() if st is not None}
    for p in live:
        _kill(p, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    alive = list(live)
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _starttime(p) == live[p] and not _is_zombie(p)]
    for p in alive:
        if _starttime(p) == live[p]:
            _kill(p, signal.SIGKILL)
    deadline = time.monotonic() + 2  # a KILLed process still holds its ports until it has exited
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _starttime(p) == live[p] and not _is_zombie(p)]
        time.sleep(0.02 if alive else 0)
    return len(live)


def _kill(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def process_starttime(pid: int) -> str | None:
    """Public form of the PID-reuse guard: field 22 of /proc/<pid>/stat, None when gone."""
    return _starttime(pid)
