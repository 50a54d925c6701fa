"""In-memory ports for the migration engine's unit tests: a cloud, hosts holding files, health and
Ansible. The journal is the real adapter (SQLite in tmp_path); names are the in-memory MemoryEndpoints.

These fakes stand in for the devcloud and the lab so the engine's decisions are tested in
milliseconds; the integration tests (tests/integration/test_migrate.py, test_example_wave.py) run the
same engine against the real parts. Faults a real part cannot produce on cue (a crash at a named
point, rsync's quick check missing a same-size rewrite) are injected here, and named where used.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from govcloud.adapters.ports import (
    CommandResult,
    Endpoint,
    Manifest,
    MigrationKey,
    RsyncSpec,
    RsyncStats,
    TargetHost,
)
from govcloud.errors import OpenStackError, SSHError
from govcloud.migrate.zones import (
    BootRequest,
    FlavorRef,
    LandingZone,
    QuotaSet,
    ServerInfo,
    SiteCapacity,
)
from govcloud.model.services import HttpProbe, OsSpec
from govcloud.services.migration.context import Ports
from tests.unit.endpoint_fake import MemoryEndpoints

SITES = {"gz": ("gz-a", "gz-b"), "st": ("st-a",)}
TARGET_NET = "10.250.0."  # the addresses FakeCloud gives the servers it boots
Tree = dict[str, bytes]  # relative file name -> content


class Crash(BaseException):
    """Stands in for SIGKILL at a crash point (a BaseException: no `except Exception` stops it)."""


@dataclass
class FakeHost:
    address: str
    trees: dict[str, Tree] = field(default_factory=dict)  # absolute path -> its files
    running: bool = False
    authorised: set[str] = field(default_factory=set)  # per-migration key ids
    reachable: bool = True
    listening: set[int] = field(default_factory=lambda: {8080})  # what /proc/net/tcp would list
    os: OsSpec | None = field(default_factory=lambda: OsSpec("debian", "12"))  # its /etc/os-release


class FakeHosts:
    """Hosts by address. ``push`` copies a tree only with a key authorised on the destination."""

    def __init__(self) -> None:
        self.by_address: dict[str, FakeHost] = {}
        self.pushes: list[RsyncSpec] = []
        self.revoked: list[str] = []
        self.skip_once: set[str] = set()  # "address:path/file": the next push misses it (quick-check fault)
        self.broken_start: set[str] = set()  # addresses whose services' start fails (exit 1, not running)
        self.commands: list[tuple[str, str]] = []  # (address, command) of every run, in order
        self.scripts: dict[str, CommandResult] = {}  # what a command (a hook, a check) answers; default exit 0
        self.target_scripts: dict[str, CommandResult] = {}  # the same, on the targets (FakeCloud's 10.250.0.x) only
        self.os_reads: list[str] = []  # addresses whose os-release was read

    def add(self, address: str, trees: dict[str, Tree], *, running: bool = False) -> FakeHost:
        self.by_address[address] = FakeHost(address, {p: dict(t) for p, t in trees.items()}, running)
        return self.by_address[address]

    def _host(self, ep: Endpoint | str) -> FakeHost:
        address = ep if isinstance(ep, str) else ep.address
        h = self.by_address.get(address)
        if h is None or not h.reachable:
            raise SSHError(f"cannot reach {address} port 22 over ssh: timed out", host=address)
        return h

    def connect(self, host: Endpoint) -> None:
        self._host(host)

    def measure(self, host: Endpoint, path: str) -> int:
        tree = self._host(host).trees.get(path)
        if tree is None:
            raise SSHError(f"{path} does not exist on {host.label}", host=host.address)
        return sum(len(v) for v in tree.values())

    def manifest(self, host: Endpoint, path: str) -> Manifest:
        tree = self._host(host).trees.get(path, {})
        lines = "".join(f"{hashlib.sha256(v).hexdigest()}  {k}\n" for k, v in sorted(tree.items()))
        return Manifest(path, hashlib.sha256(lines.encode()).hexdigest(), len(tree), len(tree),
                        sum(len(v) for v in tree.values()))

    def push(self, source: Endpoint, spec: RsyncSpec) -> RsyncStats:
        src = self._host(source).trees.get(spec.source_path, {})
        dst_host = self._host(spec.dest_host)
        mig_id = Path(spec.identity).name.removeprefix("govcloud-mig-")
        if mig_id not in dst_host.authorised:
            raise SSHError(f"rsync to {spec.dest_host}: Permission denied (publickey)", status=255)
        self.pushes.append(spec)
        dst = dst_host.trees.setdefault(spec.dest_path, {})
        sent = files = 0
        excluded = {x.lstrip("/") for x in spec.excludes}
        for name, data in src.items():
            if name in excluded:
                continue
            key = f"{spec.dest_host}:{spec.dest_path}/{name}"
            if key in self.skip_once and not spec.checksum:
                self.skip_once.discard(key)
                continue
            if dst.get(name) != data:
                dst[name] = data
                sent += len(data)
                files += 1
        for name in [n for n in dst if n not in src and n not in excluded]:
            del dst[name]
        return RsyncStats(len(src), files, sum(map(len, src.values())), sent, sent, 0, sent + 100, 50)

    @contextlib.contextmanager
    def _key(self, source: Endpoint, target: Endpoint, mig_id: str) -> Iterator[MigrationKey]:
        self._host(source)
        tgt = self._host(target)
        tgt.authorised.add(mig_id)
        try:
            yield MigrationKey(mig_id, f"/root/.ssh/govcloud-mig-{mig_id}", f"ssh-ed25519 AAAA{mig_id} govcloud-mig-{mig_id}",
                               f"/root/.ssh/govcloud-mig-{mig_id}.known_hosts", f"from=\"{source.address}\",restrict ...")
        finally:
            tgt.authorised.discard(mig_id)

    def transfer_key(self, source: Endpoint, target: Endpoint, *, mig_id: str) -> contextlib.AbstractContextManager[MigrationKey]:
        return self._key(source, target, mig_id)

    def revoke_key(self, source: Endpoint, target: Endpoint, *, mig_id: str) -> None:
        self._host(target).authorised.discard(mig_id)
        self.revoked.append(mig_id)

    def run(self, host: Endpoint, command: str, *, timeout: float) -> CommandResult:
        """A service control changes whether the host's services run (``start``/``stop``, the last word,
        or ``systemctl start|stop UNIT``); ``status`` answers it; any other command answers from
        ``scripts`` (default: exit 0)."""
        h = self._host(host)
        self.commands.append((host.address, command))
        words = command.split()
        action = words[1] if words[0] == "systemctl" and len(words) > 1 else words[-1]
        if host.address.startswith(TARGET_NET) and command in self.target_scripts:
            return self.target_scripts[command]
        if command in self.scripts:
            return self.scripts[command]
        if action == "start" and host.address in self.broken_start:
            return CommandResult(command, 1, "", "broken")
        if action in ("start", "stop"):
            h.running = action == "start"
        elif action in ("status", "is-active") or command.startswith("systemctl is-active"):
            return CommandResult(command, 0 if h.running else 3, "", "")
        return CommandResult(command, 0, "", "")

    def listening_ports(self, host: Endpoint) -> frozenset[int]:
        return frozenset(self._host(host).listening)

    def os_release(self, host: Endpoint) -> OsSpec | None:
        self.os_reads.append(host.address)
        return self._host(host).os

    def remove_paths(self, host: Endpoint, paths: Sequence[str], *, stop: str = "") -> None:
        h = self._host(host)
        if stop:
            h.running = False
        for p in paths:
            h.trees.pop(p, None)

    def close(self) -> None:
        return None


class FakeHealth:
    def __init__(self, hosts: FakeHosts) -> None:
        self.hosts = hosts
        self.sick: set[str] = set()  # addresses whose services answer unhealthy even when running
        self.probes: list[tuple[str, str]] = []  # (address, "http:PORT/PATH" or "tcp:PORT"), in order

    def _up(self, address: str) -> bool:
        h = self.hosts.by_address.get(address)
        return bool(h and h.running and address not in self.sick)

    def http(self, address: str, probe: HttpProbe, *, timeout: float) -> bool:
        self.probes.append((address, f"http:{probe.port}{probe.path}"))
        return self._up(address)

    def tcp(self, address: str, port: int, *, timeout: float) -> bool:
        self.probes.append((address, f"tcp:{port}"))
        return self._up(address)


class FakeCloud:
    """One landing zone per department and region; servers boot ACTIVE with a fresh address and become
    lab hosts (an sshd-ready machine) in ``hosts``."""

    def __init__(self, hosts: FakeHosts) -> None:
        self.hosts = hosts
        self.servers: dict[str, tuple[str, ServerInfo]] = {}  # id -> (region, server)
        self.boots: list[str] = []
        self.booted_images: dict[str, str] = {}  # server name -> image id
        self.deleted: list[str] = []
        self.error_next: set[str] = set()  # server names whose next boot goes to ERROR
        self.fail_boot: set[str] = set()  # server names whose create request fails
        # server names whose create also makes a second server: a lost response whose create was sent
        # again, then both landed (a fault a real Nova shows only under load, so it is injected here)
        self.late_duplicate: set[str] = set()
        self.quota = QuotaSet(200, 800_000, 100)
        self.keypair_public_key: str | None = None
        self.free = SiteCapacity(64, 262_144)
        self._ips = (f"{TARGET_NET}{n}" for n in itertools.count(10))
        self._ids = (f"srv-{n}" for n in itertools.count(1))

    def find_project_id(self, name: str) -> str | None:
        return f"p-{name}"

    def landing_zone(self, region: str, project_id: str, department: str) -> LandingZone:
        return LandingZone(project_id=project_id, network_id="net-1", security_groups=("base",), keypair="kp",
                           keypair_public_key=self.keypair_public_key, images={"fake-image": "img-1"},
                           flavors=(FlavorRef("gov.2c8g", "f-2", 2, 8192), FlavorRef("gov.4c16g", "f-4", 4, 16384)),
                           quota=self.quota, in_use=QuotaSet(0, 0, 0))

    def site_capacity(self, region: str) -> dict[str, SiteCapacity]:
        return {site: self.free for site in SITES[region]}

    def find_servers(self, region: str, tag: str) -> list[ServerInfo]:
        return [s for r, s in self.servers.values() if r == region and tag in s.tags]

    def boot_server(self, region: str, project_id: str, request: BootRequest) -> ServerInfo:
        if request.name in self.fail_boot:
            raise OpenStackError(f"create server {request.name}: 500 Internal Server Error")
        self.boots.append(request.name)
        self.booted_images[request.name] = request.image_id
        sid, ip = next(self._ids), next(self._ips)
        status = "ERROR" if request.name in self.error_next else "ACTIVE"
        self.error_next.discard(request.name)
        s = ServerInfo(sid, request.name, status, request.availability_zone, ip if status == "ACTIVE" else "",
                       request.tags, "No valid host was found." if status == "ERROR" else "")
        self.servers[sid] = (region, s)
        if request.name in self.late_duplicate:
            self.late_duplicate.discard(request.name)
            twin = replace(s, id=next(self._ids), ipv4=next(self._ips))
            self.servers[twin.id] = (region, twin)
        if status == "ACTIVE":
            self.hosts.add(ip, {})
        return replace(s, status="BUILD", ipv4="")

    def delete_server(self, region: str, server_id: str) -> None:
        self.deleted.append(server_id)
        self.servers.pop(server_id, None)

    def close(self) -> None:
        return None


class FakeConfigure:
    def __init__(self) -> None:
        self.runs: list[list[str]] = []
        self.hosts: list[TargetHost] = []
        self.fail: dict[str, str] = {}
        self.roles: set[str] = set()  # the project's Ansible roles

    def has_role(self, name: str) -> bool:
        return name in self.roles

    def configure(self, targets: Sequence[TargetHost]) -> dict[str, str]:
        self.runs.append([t.name for t in targets])
        self.hosts += targets
        return {t.name: self.fail[t.name] for t in targets if t.name in self.fail}


@dataclass
class World:
    hosts: FakeHosts
    health: FakeHealth
    cloud: FakeCloud
    configure: FakeConfigure
    endpoints: MemoryEndpoints
    faults: list[str] = field(default_factory=list)
    crash_at: str = ""  # "<point>[@<system>]": raise Crash there

    def fault(self, point: str, system: str) -> None:
        self.faults.append(f"{point}@{system}")
        name, _, only = self.crash_at.partition("@")
        if name == point and (not only or only == system):
            self.crash_at = ""
            raise Crash(point)

    def ports(self) -> Ports:
        return Ports(hosts=self.hosts, health=self.health, endpoints=self.endpoints, configure=self.configure,
                     open_cloud=lambda: self.cloud, fault=self.fault)


def world(tmp: Path) -> World:
    hosts = FakeHosts()
    return World(hosts, FakeHealth(hosts), FakeCloud(hosts), FakeConfigure(), MemoryEndpoints())
