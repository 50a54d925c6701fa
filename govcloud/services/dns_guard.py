"""The guard next to each site's name server: withdraw it from clients while it may be stale (docs/dns.md).

Why a process per site, beside ``named``: the rule (``govcloud.dns.guard``) must act while the site is
cut off, when no controller can reach it. Every tick the guard asks its own server and the others
for their generations (signed queries, which a withdrawn server still answers), probes the witness,
and applies the decision:

- withdraw / serve: the server's client ACL file says ``none`` or ``any``, and ``named`` reloads it
  (SIGHUP to the PID it wrote). Clients are refused by a withdrawn server and ask the next one in
  their ``resolv.conf``;
- repair: the same difference a switch's repair sends (``govcloud.dns.stale.repair_for``), read by
  a signed AXFR from the newest server and applied in one update guarded by the stale generation.

Every change of state is one log line, and the state is published to a small JSON file for
``devcloud lab dns status``. The key never leaves ``DnsClient``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from govcloud.adapters.dns import NameServers
from govcloud.dns.guard import GuardAction, GuardDecision, GuardPolicy, GuardView, PeerState, decide
from govcloud.dns.stale import repair_for
from govcloud.errors import DnsError, InvalidInputError
from govcloud.model import DnsServer

log = logging.getLogger(__name__)
CONFIRM_BEHIND_S = 0.1  # a switch in flight lands on every server well within this


@dataclass(frozen=True)
class GuardServer:
    site: str
    region: str
    address: str
    port: int = 53

    @property
    def server(self) -> DnsServer:
        return DnsServer(self.site, self.address, self.port)


@dataclass(frozen=True)
class GuardConfig:
    """What one guard watches and controls (a JSON file written next to the server's configuration)."""

    site: str
    zone: str
    servers: tuple[GuardServer, ...]
    acl_file: Path
    named_pid_file: Path
    key_file: Path
    witness: tuple[str, int] | None = None
    status_file: Path | None = None
    policy: GuardPolicy = field(default_factory=GuardPolicy)
    probe_timeout_s: float = 0.3

    @property
    def own(self) -> GuardServer:
        return next(s for s in self.servers if s.site == self.site)

    @property
    def peers(self) -> tuple[GuardServer, ...]:
        return tuple(s for s in self.servers if s.site != self.site)


def load_guard_config(path: Path) -> GuardConfig:
    """The guard's JSON configuration; InvalidInputError names the file and the field that is wrong."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read the guard configuration: {exc.strerror}",
                                hint="write it with `devcloud lab dns up`") from None
    except ValueError as exc:
        raise InvalidInputError(f"{path}: not valid JSON ({exc})", hint="fix or regenerate the file") from None
    try:
        servers = tuple(GuardServer(str(s["site"]), str(s["region"]), str(s["address"]), int(s.get("port", 53)))
                        for s in doc["servers"])
        witness = doc.get("witness")
        p = doc.get("policy", {})
        config = GuardConfig(
            site=str(doc["site"]), zone=str(doc["zone"]), servers=servers, acl_file=Path(doc["acl_file"]),
            named_pid_file=Path(doc["named_pid_file"]), key_file=Path(doc["key_file"]),
            witness=None if witness is None else (str(witness[0]), int(witness[1])),
            status_file=Path(doc["status_file"]) if doc.get("status_file") else None,
            policy=GuardPolicy(lease_s=float(p.get("lease_s", 2.0)), repair_after_s=float(p.get("repair_after_s", 1.5)),
                               interval_s=float(p.get("interval_s", 0.5))),
            probe_timeout_s=float(doc.get("probe_timeout_s", 0.3)))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InvalidInputError(f"{path}: guard configuration field {exc} is missing or malformed",
                                hint="expected site, zone, servers[{site, region, address}], acl_file, "
                                     "named_pid_file, key_file") from None
    if config.site not in {s.site for s in servers}:
        raise InvalidInputError(f"{path}: site {config.site!r} is not among the servers "
                                f"({', '.join(s.site for s in servers)})", hint="list the guard's own server too")
    return config


class ClientAccess(Protocol):
    """Whether the local server answers clients (the guard's one lever on it)."""

    def serving(self) -> bool: ...
    def set_serving(self, serving: bool) -> None: ...


def acl_text(serving: bool) -> str:
    return ("# written by the govcloud DNS guard: who this server answers besides govcloud's signed queries\n"
            f"acl govcloud_clients {{ {'any' if serving else 'none'}; }};\n")


@dataclass
class AclFileAccess:
    """The ACL file ``named.conf`` includes, reloaded by SIGHUP to the PID ``named`` wrote."""

    acl_file: Path
    pid_file: Path

    def serving(self) -> bool:
        try:
            return "{ any; }" in self.acl_file.read_text(encoding="utf-8")
        except OSError:
            return False

    def set_serving(self, serving: bool) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.acl_file.parent, prefix=".acl.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(acl_text(serving))
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.acl_file)
        pid = self._named_pid()
        if pid is not None:
            os.kill(pid, signal.SIGHUP)  # named re-reads its configuration (the zone's data stays)

    def _named_pid(self) -> int | None:
        try:
            text = self.pid_file.read_text().strip()
            cmd = Path(f"/proc/{text}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return int(text) if text.isdigit() and cmd and cmd[0].endswith(b"named") else None


def tcp_reachable(address: str, port: int, timeout: float) -> bool:
    """A connection made, or refused (the host answered with a reset): the host is reachable."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


@dataclass
class Guard:
    config: GuardConfig
    client: NameServers
    access: ClientAccess
    witness_probe: Callable[[], bool] = field(default=lambda: False)
    clock: Callable[[], float] = time.monotonic
    last_contact: float | None = None
    behind_since: float | None = None
    last: GuardDecision | None = None
    pause: Callable[[float], None] = time.sleep  # the second look's wait (a test passes its own)

    def observe(self) -> GuardView:
        cfg = self.config
        with ThreadPoolExecutor(max_workers=len(cfg.servers) + 1) as pool:
            witness = pool.submit(self.witness_probe)
            gens = {s.site: pool.submit(self.client.generation, s.server, cfg.zone) for s in cfg.servers}
            now = self.clock()
            peers = tuple(PeerState(s.site, s.region, gens[s.site].result()) for s in cfg.peers)
            return GuardView(now, cfg.own.region, gens[cfg.site].result(), peers, witness.result(),
                             self.access.serving(), self.last_contact, self.behind_since)

    def tick(self) -> GuardDecision:
        view = self.observe()
        d = decide(view, self.config.policy)
        if d.action is GuardAction.WITHDRAW and d.behind and self.behind_since is None:
            # a switch reaches the servers a few milliseconds apart (the first one alone: it arbitrates the
            # zone's generation, docs/dns.md): a server first seen behind is looked at once more, shortly
            # after, so that a switch in flight does not withdraw it from its clients for a whole tick
            self.pause(CONFIRM_BEHIND_S)
            view = self.observe()
            d = decide(view, self.config.policy)
        if d.in_contact:
            self.last_contact = view.now
        self.behind_since = (self.behind_since or view.now) if d.behind else None
        if d.action is GuardAction.SERVE:
            self.access.set_serving(True)
        elif d.action is GuardAction.WITHDRAW:
            self.access.set_serving(False)
        elif d.action is GuardAction.REPAIR:
            self.access.set_serving(False)
            self._repair(d, view)
        if d.action is not GuardAction.KEEP:
            log.warning("%s: %s: %s", self.config.site, d.action.value, d.reason)
        self.last = d
        self._publish(d, view)
        return d

    def _repair(self, d: GuardDecision, view: GuardView) -> None:
        cfg = self.config
        assert d.source is not None and view.own_generation is not None
        source = next(s for s in cfg.servers if s.site == d.source)
        newest = next(p.generation for p in view.peers if p.site == d.source)
        assert newest is not None
        try:
            fix = repair_for(cfg.site, self.client.records(source.server, cfg.zone),
                             self.client.records(cfg.own.server, cfg.zone), view.own_generation, newest)
            result = self.client.repair(cfg.own.server, cfg.zone, fix.stale_generation, fix.wanted, fix.remove,
                                        fix.generation)
        except DnsError as exc:
            log.warning("%s: repair from %s failed: %s", cfg.site, d.source, exc.message)
            return
        log.warning("%s: repaired from %s: %d name(s) set, %d removed, generation %d -> %d (%s)", cfg.site,
                    d.source, len(fix.wanted), len(fix.remove), fix.stale_generation, fix.generation, result.rcode)

    def _publish(self, d: GuardDecision, view: GuardView) -> None:
        path = self.config.status_file
        if path is None:
            return
        doc = {"site": self.config.site, "serving": self.access.serving(), "action": d.action.value,
               "reason": d.reason, "generation": view.own_generation, "in_contact": d.in_contact,
               "at": time.time(), "pid": os.getpid()}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".guard.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(tmp, path)

    def run(self, stop: threading.Event) -> None:
        """Tick every ``interval_s`` until ``stop`` is set (SIGTERM sets it)."""
        while not stop.is_set():
            started = self.clock()
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the guard must outlive one bad tick; the next one retries
                log.exception("%s: tick failed", self.config.site)
            stop.wait(max(0.0, self.config.policy.interval_s - (self.clock() - started)))
