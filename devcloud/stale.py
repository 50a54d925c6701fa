"""What an earlier run left behind, judged from observed facts (pure: the `up`s observe and act).

Every `up` (``devcloud up``, ``lab up``, ``lab pg up``, ``lab dns up``, ``monitor up``) first looks at
what is there: PID files (a process counts as alive only when it is the very process recorded and
really ours: start time, command line, namespace), namespaces, state files, markers. One verdict:

* ``fresh``: nothing there; bring it up (what runs afterwards was started by this caller).
* ``adopt``: a live stack: every recorded process alive and ours. It is left as it is, and left
  running afterwards by a session that found it.
* ``clean``: a stack that is dead or partly dead (a SIGKILL, a reboot, a crash): take it down fully,
  then bring it up fresh. ``line`` says so in one line; what runs afterwards is the caller's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

FRESH, ADOPT, CLEAN = "fresh", "adopt", "clean"


@dataclass(frozen=True)
class Verdict:
    action: str  # fresh | adopt | clean
    line: str = ""  # the one line `up` prints ("" when there is nothing to say)

    @property
    def owned(self) -> bool:
        """True when what runs after `up` was started by this caller (built fresh, or rebuilt)."""
        return self.action != ADOPT


def some(items: Sequence[str], limit: int = 4) -> str:
    """``a, b, c`` or ``a, b, c, d and 5 more``."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def stale_line(stack: str, facts: Sequence[str], *, killed: bool, noun: str = "state") -> str:
    """``lab: stale state from a killed run (core namespace present, ...): cleaned``."""
    how = "a killed run" if killed else "a partly dead run"
    return f"{stack}: stale {noun} from {how} ({', '.join(facts)}): cleaned"


# ---------------------------------------------------------------- the cloud


@dataclass(frozen=True)
class CloudFacts:
    recorded: tuple[str, ...]  # names with a PID file under run/cloud
    alive: tuple[str, ...]  # of those, the very process still running (start time matches), not a zombie
    ready_marker: bool  # state/cloud/READY: the last `up` finished
    ready: bool  # `devcloud status` READY: every service alive and answering, marker written
    orphans: int = 0  # live processes a kill left: of recorded ones that died (their session, our paths),
    # or carrying this cloud's environment line with no PID file naming them


def judge_cloud(f: CloudFacts) -> Verdict:
    if f.ready:
        return Verdict(ADOPT)
    if not (f.recorded or f.ready_marker or f.orphans):
        return Verdict(FRESH)
    dead = [n for n in f.recorded if n not in f.alive]
    facts = [f"{len(f.alive)} of {len(f.recorded)} recorded processes alive"]
    if dead and f.alive:
        facts.append(f"dead: {some(dead)}")
    if f.alive and not dead:
        facts.append("not READY")
    if f.orphans:
        facts.append(f"{f.orphans} orphaned or unrecorded processes of this cloud")
    facts.append("READY marker present" if f.ready_marker else "no READY marker")
    return Verdict(CLEAN, stale_line("cloud", facts, killed=not (f.alive or f.orphans), noun="cloud state"))


# ---------------------------------------------------------------- the lab


@dataclass(frozen=True)
class LabFacts:
    state_up: bool  # state.json says up
    core_ns: bool  # the core router namespace exists
    namespaces: int  # gcl- namespaces present
    hosts: int  # hosts in the state file
    hosts_alive: int  # of those, sshd alive (recorded PID and start time) with its namespace present
    watcher_alive: bool  # the reconcile watcher (PID file, or the holder of its singleton lock)


def lab_live(f: LabFacts) -> bool:
    """Up and alive: state up, core present, every host's sshd running (the watcher aside)."""
    return f.state_up and f.core_ns and f.hosts_alive == f.hosts


def judge_lab(f: LabFacts, *, watch: bool = True) -> Verdict:
    if not (f.state_up or f.namespaces or f.hosts or f.hosts_alive or f.watcher_alive):
        return Verdict(FRESH)
    if lab_live(f):
        if f.watcher_alive or not watch:
            return Verdict(ADOPT)
        # every host runs, so no kill took the lab: only its watcher died; `up` restarts it
        return Verdict(ADOPT, f"lab: live lab adopted ({f.hosts_alive} of {f.hosts} host sshd alive); "
                              "its reconcile watcher was dead: restarted")
    if f.state_up:
        facts = [f"core namespace {'present' if f.core_ns else 'missing'}"]
    else:
        facts = [f"state file says down, {f.namespaces} lab namespaces present"]
    facts += [f"{f.hosts_alive} of {f.hosts} host sshd alive", f"watcher {'alive' if f.watcher_alive else 'dead'}"]
    return Verdict(CLEAN, stale_line("lab", facts, killed=not (f.hosts_alive or f.watcher_alive)))


# ---------------------------------------------------------------- servers inside lab hosts (pg, dns)

RUNNING, STOPPED, STALE = "running", "stopped", "stale"


def judge_members(stack: str, states: Mapping[str, str], *, pidfile: str, process: str) -> Verdict:
    """Servers that write a PID file (PostgreSQL's postmaster.pid, named.pid), one per site.

    ``states``: site -> ``running`` (the PID file names a live server of that very host), ``stopped``
    (no PID file: never started, or stopped cleanly) or ``stale`` (a PID file left by a process that
    is gone, or whose PID now belongs to something else). Any stale one: the stack was killed, and
    its data may be mid-write: clean the whole stack. Stopped ones alone are started by `up` as now.
    """
    stale = [s for s, v in states.items() if v == STALE]
    running = [s for s, v in states.items() if v == RUNNING]
    if not stale:
        return Verdict(ADOPT if running else FRESH)
    facts = [f"{pidfile} left by a dead {process} on {some(stale)}"]
    if running:
        facts.append(f"running on {some(running)}")
    return Verdict(CLEAN, stale_line(stack, facts, killed=not running))


# ---------------------------------------------------------------- the monitoring stack

ALIVE, DEAD, NONE = "alive", "dead", "none"


def judge_monitor(states: Mapping[str, str]) -> Verdict:
    """``states``: short name -> ``alive`` | ``dead`` (PID file left, process gone or not ours) | ``none``."""
    values = set(states.values())
    if values <= {ALIVE} and values:
        return Verdict(ADOPT)
    if values <= {NONE}:
        return Verdict(FRESH)
    facts = [f"{name} {'not recorded' if v == NONE else v}" for name, v in states.items()]
    return Verdict(CLEAN, stale_line("monitor", facts, killed=ALIVE not in values))
