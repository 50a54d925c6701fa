"""What runs on a legacy host and how to move it: services, their controls and health checks, hooks, OS.

Why a module of its own: a migration used to know one sample application by heart; now every host
declares its services (docs/inventory.md, "Services"), and the engine drives each the same way: stop
and start it by its control, copy its directories (never its runtime files), install its packages on
the target, and wait for its health checks. These frozen values are all the engine may rely on, so
they carry their defaults here, once, and their ``source`` so a later step can point at the YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from govcloud.errors import Location

#: defaults, in seconds, for what the inventory may leave out (docs/inventory.md lists them)
DEFAULT_COMMAND_TIMEOUT_S = 120.0  # start / stop / status of a command-controlled service
DEFAULT_CHECK_DEADLINE_S = 60.0  # how long a health check may take to pass
DEFAULT_CHECK_INTERVAL_S = 2.0  # pause between two attempts of a health check
DEFAULT_PROBE_TIMEOUT_S = 10.0  # one attempt of a command health check
DEFAULT_HOOK_TIMEOUT_S = 300.0  # one hook command
_NOWHERE = Location("?")


@dataclass(frozen=True)
class OsSpec:
    """A host's operating system as the topology keys its images: distribution (lowercase) and version.

    ``version`` is a string compared exactly ("12", "9", "22.04"): images are built per release.
    """

    family: str
    version: str
    source: Location = field(default=_NOWHERE, compare=False)
    path: str = field(default="", compare=False)  # e.g. systems[0].hosts[1].os, for diagnostics

    def __str__(self) -> str:
        return f"{self.family} {self.version}"


@dataclass(frozen=True)
class OsImage:
    """One entry of a region's ``images``: the Glance image a target of this OS boots."""

    family: str
    version: str
    image: str

    def serves(self, os: OsSpec) -> bool:
        return self.family == os.family and self.version == os.version


@dataclass(frozen=True)
class SystemdControl:
    """A service that systemd runs: ``systemctl start|stop|is-active <unit>``."""

    unit: str


@dataclass(frozen=True)
class CommandControl:
    """A service run by its own scripts; ``status`` exits 0 while it runs (none: trust the checks)."""

    start: str
    stop: str
    status: str | None = None
    timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S


ServiceControl = SystemdControl | CommandControl


class CheckKind(str, Enum):
    HTTP = "http"
    TCP = "tcp"
    COMMAND = "command"


@dataclass(frozen=True)
class HttpProbe:
    """GET ``path`` on ``port``: healthy when the status is ``status`` and the body holds ``body`` (if set)."""

    port: int
    path: str = "/"
    status: int = 200
    body: str | None = None


@dataclass(frozen=True)
class TcpProbe:
    """Healthy when a TCP connection to ``port`` is accepted."""

    port: int


@dataclass(frozen=True)
class CommandProbe:
    """Healthy when ``run`` exits 0 on the service's host within ``timeout_s``."""

    run: str
    timeout_s: float = DEFAULT_PROBE_TIMEOUT_S


Probe = HttpProbe | TcpProbe | CommandProbe


@dataclass(frozen=True)
class HealthCheck:
    """A named probe, tried every ``interval_s`` until it passes or ``deadline_s`` has passed."""

    name: str
    probe: Probe
    deadline_s: float = DEFAULT_CHECK_DEADLINE_S
    interval_s: float = DEFAULT_CHECK_INTERVAL_S
    source: Location = field(default=_NOWHERE, compare=False)

    @property
    def kind(self) -> CheckKind:
        if isinstance(self.probe, HttpProbe):
            return CheckKind.HTTP
        if isinstance(self.probe, TcpProbe):
            return CheckKind.TCP
        return CheckKind.COMMAND

    @property
    def port(self) -> int | None:
        """The port the probe connects to (the service listens there); None for a command."""
        return None if isinstance(self.probe, CommandProbe) else self.probe.port


@dataclass(frozen=True)
class ServiceDirectory:
    """A directory of a service's software or configuration, copied like data minus ``exclude``.

    ``exclude`` holds rsync patterns relative to ``path`` (e.g. ``logs/``, ``*.tmp``).
    """

    path: str
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Service:
    """One service on a legacy host: how to control, check and move it.

    ``runtime`` paths (pid files, sockets, caches) are never copied, even under a directory or a
    host data path; ``packages`` are installed on the target by its role before anything is copied.
    """

    name: str
    control: ServiceControl
    checks: tuple[HealthCheck, ...] = ()
    directories: tuple[ServiceDirectory, ...] = ()
    runtime: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()  # listen ports besides those of the http/tcp checks
    source: Location = field(default=_NOWHERE, compare=False)

    def listen_ports(self) -> tuple[int, ...]:
        """Every port the service binds: its ``ports`` and those of its http and tcp checks."""
        found = set(self.ports) | {c.port for c in self.checks if c.port is not None}
        return tuple(sorted(found))

    def check(self, name: str) -> HealthCheck | None:
        return next((c for c in self.checks if c.name == name), None)


class HookPoint(str, Enum):
    """Where in a migration a hook runs; a failing ``smoke_test`` rolls the system back."""

    BEFORE_CUTOVER = "before_cutover"
    AFTER_CUTOVER = "after_cutover"
    SMOKE_TEST = "smoke_test"
    BEFORE_ROLLBACK = "before_rollback"


@dataclass(frozen=True)
class Hook:
    """A command run on one of the system's hosts at ``point``; its output goes to the journal."""

    point: HookPoint
    host: str
    command: str
    timeout_s: float = DEFAULT_HOOK_TIMEOUT_S
    source: Location = field(default=_NOWHERE, compare=False)


@dataclass(frozen=True)
class CheckRef:
    """``<service>/<check>``: a system's ready check, passing on every host whose service declares it."""

    service: str
    check: str

    @classmethod
    def parse(cls, text: str) -> CheckRef:
        service, _, check = text.partition("/")
        return cls(service, check)

    def __str__(self) -> str:
        return f"{self.service}/{self.check}"
