"""How the engine drives a system's declared services, as pure decisions (no I/O).

Why a module of its own: the engine used to know one sample application by heart; now it reads every
host's ``services:`` (docs/inventory.md) and must agree everywhere on three things, decided here once:

- the order: a host's services stop in reverse list order and start in list order; across a system's
  hosts, those of role ``db`` stop last and start first (an application is stopped before the database
  it writes to, and the database runs before the application that needs it);
- the command of each action: ``systemctl start|stop|is-active <unit>`` for systemd, else the declared
  commands with their timeout;
- what is copied: each host's data paths and its services' directories, each minus the exclude
  patterns and minus every runtime path under it (pid files, sockets: never copied).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from govcloud.model import Host, System
from govcloud.model.services import (
    DEFAULT_COMMAND_TIMEOUT_S,
    CommandControl,
    Service,
    SystemdControl,
)

DB_ROLE = "db"
T = TypeVar("T")


class Control(str, Enum):
    START = "start"
    STOP = "stop"
    STATUS = "status"


@dataclass(frozen=True)
class ControlCommand:
    """One control action of one service: the shell line run on its host, and how long it may take."""

    service: str
    command: str
    timeout_s: float
    what: str  # for messages: "systemd unit nginx.service" or "command /opt/x/start.sh"


def control_command(service: Service, action: Control) -> ControlCommand | None:
    """The command of ``action`` for ``service``; None for ``status`` of a command service without one."""
    c = service.control
    if isinstance(c, SystemdControl):
        verb = {Control.START: "start", Control.STOP: "stop", Control.STATUS: "is-active --quiet"}[action]
        return ControlCommand(service.name, f"systemctl {verb} {shlex.quote(c.unit)}", DEFAULT_COMMAND_TIMEOUT_S,
                              f"systemd unit {c.unit}")
    assert isinstance(c, CommandControl)
    line = {Control.START: c.start, Control.STOP: c.stop, Control.STATUS: c.status}[action]
    if line is None:
        return None
    return ControlCommand(service.name, line, c.timeout_s, f"command `{line}`")


def service_order(host: Host, action: Control) -> tuple[Service, ...]:
    """A host's services in the order ``action`` takes them (stop: reverse list order)."""
    return tuple(reversed(host.services)) if action is Control.STOP else host.services


def host_groups(items: Sequence[T], role_of: Callable[[T], str], action: Control) -> list[list[T]]:
    """``items`` (hosts, or targets by their legacy host's role) in groups run one after the other; the
    members of a group run side by side. Start: the ``db`` hosts first; stop: the ``db`` hosts last."""
    db = [i for i in items if role_of(i) == DB_ROLE]
    other = [i for i in items if role_of(i) != DB_ROLE]
    groups = [db, other] if action is Control.START else [other, db]
    return [g for g in groups if g]


def has_services(system: System) -> bool:
    return any(h.services for h in system.hosts)


def systemd_units(host: Host) -> tuple[str, ...]:
    return tuple(s.control.unit for s in host.services if isinstance(s.control, SystemdControl))


# ------------------------------------------------------------------ what is copied


@dataclass(frozen=True)
class CopyJob:
    """One tree to rsync from the legacy host to the same path on its targets."""

    path: str
    excludes: tuple[str, ...] = ()


def _under(path: str, parent: str) -> bool:
    a, b = path.rstrip("/") + "/", parent.rstrip("/") + "/"
    return a.startswith(b)


def runtime_excludes(tree: str, runtime: Sequence[str]) -> tuple[str, ...]:
    """rsync patterns (anchored at ``tree``) for the runtime paths inside ``tree``."""
    root = tree.rstrip("/")
    return tuple("/" + p.rstrip("/")[len(root) + 1:] for p in runtime if _under(p, tree) and p.rstrip("/") != root)


def copy_jobs(host: Host) -> tuple[CopyJob, ...]:
    """The trees of ``host`` a sync copies: its data paths whole (their checksum manifests prove them
    equal, so nothing of them is left out), then each service directory that is not a data path, once,
    minus its exclude patterns and every runtime path under it."""
    runtime = tuple(p for s in host.services for p in s.runtime)
    declared: dict[str, tuple[str, ...]] = {}
    for s in host.services:
        for d in s.directories:
            if d.path not in host.data:
                declared.setdefault(d.path, d.exclude)
    return (*(CopyJob(p) for p in host.data),
            *(CopyJob(p, (*ex, *runtime_excludes(p, runtime))) for p, ex in declared.items()))


def directories(host: Host) -> tuple[str, ...]:
    """The service directories of ``host`` that are not data paths (synced, but not in the manifests)."""
    return tuple(j.path for j in copy_jobs(host) if j.path not in host.data)
