"""Legacy hosts and targets over SSH for the migration engine: its ``HostPort`` (``adapters.ports``).

One persistent paramiko session per host, shared by the engine's threads (channels are cheap;
processes and handshakes are not); a dead session is reopened, and the host key is checked again
on every new connection. Every paramiko failure leaves this module as an ``SSHError``, so the engine
knows one error type for "the host did not do it".
"""

from __future__ import annotations

import logging
import shlex
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import paramiko

from govcloud.adapters import ssh
from govcloud.adapters.ports import (
    CommandResult,
    Endpoint,
    Manifest,
    MigrationKey,
    RsyncSpec,
    RsyncStats,
)
from govcloud.errors import SSHError
from govcloud.model.services import OsSpec

log = logging.getLogger(__name__)

RSYNC_TRANSPORT_EXITS = (255, 12, 30, 35)  # ssh could not connect, connection lost, timeouts
RSYNC_ATTEMPTS = 3
# /proc/net is the reading process's network namespace: what `ss -ltn` shows, without needing iproute2
LISTEN_COMMAND = "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; true"
TCP_LISTEN = "0A"


def parse_listening(text: str) -> frozenset[int]:
    """The local ports of the LISTEN sockets in ``/proc/net/tcp{,6}`` lines (``sl local rem st ...``)."""
    ports = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[3] == TCP_LISTEN and ":" in parts[1]:
            try:
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
            except ValueError:
                continue
    return frozenset(ports)


def parse_os_release(text: str) -> OsSpec | None:
    """``ID`` and ``VERSION_ID`` of an os-release file as the topology keys images (None if either is missing)."""
    values = {}
    for line in text.splitlines():
        key, eq, value = line.strip().partition("=")
        if eq:
            values[key] = value.strip().strip('"').strip("'")
    family, version = values.get("ID", "").lower(), values.get("VERSION_ID", "")
    return OsSpec(family, version) if family and version else None


def public_key_line(private_key: Path | None) -> str:
    """``type base64`` of the public half of a private key file ("" when it cannot be read: the use
    of the key reports that, with its own message)."""
    if private_key is None:
        return ""
    try:
        k = paramiko.PKey.from_path(private_key)
    except (OSError, paramiko.SSHException, ValueError):
        return ""
    return f"{k.get_name()} {k.get_base64()}"


class SSHHosts:
    """The engine's hosts: sessions by address, opened on first use, closed by :meth:`close`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._host_locks: dict[str, threading.Lock] = {}
        self._sessions: dict[str, ssh.SSHSession] = {}

    def session(self, host: Endpoint) -> ssh.SSHSession:
        with self._lock:
            host_lock = self._host_locks.setdefault(host.address, threading.Lock())
        with host_lock:
            s = self._sessions.get(host.address)
            transport = s.client.get_transport() if s is not None else None
            if s is not None and transport is not None and transport.is_active():
                return s
            s = ssh.connect(host)
            with self._lock:
                self._sessions[host.address] = s
            return s

    def connect(self, host: Endpoint) -> None:
        self.session(host)

    def measure(self, host: Endpoint, path: str) -> int:
        return ssh.measure(self.session(host), path).bytes

    def manifest(self, host: Endpoint, path: str) -> Manifest:
        return ssh.incremental_manifest(self.session(host), path)

    def push(self, source: Endpoint, spec: RsyncSpec) -> RsyncStats:
        """rsync, again after a transport failure (:data:`RSYNC_TRANSPORT_EXITS`), at most
        :data:`RSYNC_ATTEMPTS` times: a network hiccup between two hosts must not fail a migration;
        rsync resumes with what already arrived."""
        for attempt in range(1, RSYNC_ATTEMPTS + 1):
            try:
                return ssh.push(self.session(source), spec)
            except SSHError as exc:
                if exc.status not in RSYNC_TRANSPORT_EXITS or attempt == RSYNC_ATTEMPTS:
                    raise
                log.warning("rsync to %s failed (exit %s), attempt %d of %d: %s", spec.dest_host, exc.status, attempt,
                            RSYNC_ATTEMPTS, exc.stderr)
                time.sleep(2.0 * attempt)  # backoff between attempts of a remote transfer: nothing to poll
        raise AssertionError("unreachable")

    def transfer_key(self, source: Endpoint, target: Endpoint, *, mig_id: str) -> AbstractContextManager[MigrationKey]:
        return self._transfer_key(source, target, mig_id)

    @contextmanager
    def _transfer_key(self, source: Endpoint, target: Endpoint, mig_id: str) -> Iterator[MigrationKey]:
        lines = ssh.known_hosts_lines(target.known_hosts, target.known_hosts_entry)
        with ssh.transfer_key(self.session(source), self.session(target), mig_id=mig_id, source_ip=source.address,
                              target_host_keys=lines) as key:
            yield key

    def revoke_key(self, source: Endpoint, target: Endpoint, *, mig_id: str) -> None:
        try:
            ssh.revoke(self.session(target), f"govcloud-mig-{mig_id}")
            base = f"$HOME/.ssh/govcloud-mig-{mig_id}"
            self.session(source).run(f'rm -f "{base}" "{base}.pub" "{base}.known_hosts"')
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise SSHError(f"revoking per-migration key {mig_id}: {exc}", host=target.address) from exc

    def run(self, host: Endpoint, command: str, *, timeout: float) -> CommandResult:
        return self.session(host).run(command, check=False, timeout=timeout)

    def listening_ports(self, host: Endpoint) -> frozenset[int]:
        r = self.session(host).run(LISTEN_COMMAND, check=False, timeout=30)
        if r.status != 0:
            raise SSHError(f"on {host.label}: cannot read the listening TCP ports (/proc/net/tcp): "
                           f"{r.stderr.strip()[-200:]}", host=host.address, command=r.command, status=r.status)
        return parse_listening(r.stdout)

    def os_release(self, host: Endpoint) -> OsSpec | None:
        r = self.session(host).run("cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release", check=False,
                                   timeout=30)
        return parse_os_release(r.stdout) if r.status == 0 else None

    def remove_paths(self, host: Endpoint, paths: Sequence[str], *, stop: str = "") -> None:
        s = self.session(host)
        if stop:
            s.run(f"{stop} >/dev/null 2>&1; true")
        s.run("rm -rf -- " + " ".join(shlex.quote(p) for p in paths))

    def close(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for s in sessions:
            s.close()
