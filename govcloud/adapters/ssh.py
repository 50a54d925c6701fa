"""SSH to legacy hosts and targets (paramiko, strict host keys) and the data moves a migration makes.

- ``connect``: ``RejectPolicy`` and only the given known_hosts; an unknown or changed host key raises
  HostKeyError naming the host, the fingerprint it presented and the ones known_hosts expects.
- ``measure`` / ``manifest`` / ``incremental_manifest``: size, file count and one sha256 digest of a
  data tree, computed *on the host* (nothing is copied to the controller); the incremental one runs
  ``govcloud/migrate/hostmanifest.py`` with python3 there and re-reads only files changed since its last run.
- ``rsync_argv`` (pure): the rsync that runs ON the legacy host and pushes to the target over ssh with
  a per-migration key and strict host keys; ``parse_rsync_stats`` (pure) reads its ``--stats``.
- ``transfer_key``: generate an ed25519 key on the source, authorise it on the target with
  ``from="<source ip>",restrict`` for the transfer only, remove it afterwards (also on failure).

Remote hosts need a POSIX shell, bash, coreutils, findutils, python3, rsync and ssh-keygen (legacy Linux).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import logging
import re
import select
import shlex
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn, Self

import paramiko

# the values are the ports' (this module is one implementation of them)
from govcloud.adapters.ports import (
    CommandResult,
    Endpoint,
    Manifest,
    MigrationKey,
    RsyncSpec,
    RsyncStats,
)
from govcloud.errors import HostKeyError, SSHError

log = logging.getLogger(__name__)

DEFAULT_MANIFEST_CACHE = "/var/lib/govcloud/manifest-cache"  # on each host, outside the synced data
RSYNC_PARTIAL_OK = 24  # "some files vanished before they could be transferred": the source is live, a later sync catches up


# ------------------------------------------------------------------ connections

def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style fingerprint: ``ssh-ed25519 SHA256:...`` (what ``ssh-keygen -lf`` prints)."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode("ascii").rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def known_fingerprints(known_hosts: Path, entry: str) -> tuple[str, ...]:
    keys = paramiko.HostKeys(str(known_hosts)).lookup(entry) if known_hosts.is_file() else None
    return tuple(fingerprint(k) for k in (keys.values() if keys else ()))


class _StrictReject(paramiko.RejectPolicy):
    """RejectPolicy that says which key the unknown host presented."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> NoReturn:
        ep = self.endpoint
        raise HostKeyError(
            f"host {ep.label} is not in known_hosts {ep.known_hosts}: it presented {fingerprint(key)}; refusing to connect",
            hint="add the host's key to that known_hosts after checking it out of band (never accept it blindly)",
            host=ep.address, presented=fingerprint(key))


def connect(endpoint: Endpoint, *, timeout: float = 10.0) -> SSHSession:
    """A session with strict host keys. Raises HostKeyError (unknown or changed key) or SSHError."""
    if not endpoint.known_hosts.is_file():
        raise HostKeyError(f"known_hosts file {endpoint.known_hosts} not found (needed to check {endpoint.label})",
                           hint="pass the known_hosts that holds the hosts' keys", host=endpoint.address)
    client = paramiko.SSHClient()
    client.load_host_keys(str(endpoint.known_hosts))
    client.set_missing_host_key_policy(_StrictReject(endpoint))
    try:
        client.connect(endpoint.address, endpoint.port, username=endpoint.user,
                       key_filename=str(endpoint.key_file) if endpoint.key_file else None,
                       look_for_keys=False, allow_agent=False, timeout=timeout, banner_timeout=timeout,
                       auth_timeout=timeout)
    except paramiko.BadHostKeyException as exc:
        client.close()
        expected = known_fingerprints(endpoint.known_hosts, endpoint.known_hosts_entry)
        raise HostKeyError(
            f"host key of {endpoint.label} does not match known_hosts {endpoint.known_hosts}: it presented "
            f"{fingerprint(exc.key)}, expected {' or '.join(expected) or fingerprint(exc.expected_key)}; refusing to connect",
            hint="the host was reinstalled or someone is in the middle; verify the new key out of band before "
                 "updating known_hosts", host=endpoint.address, presented=fingerprint(exc.key), expected=expected) from exc
    except HostKeyError:
        client.close()
        raise
    except paramiko.AuthenticationException as exc:
        client.close()
        raise SSHError(f"ssh to {endpoint.user}@{endpoint.label} refused the key {endpoint.key_file}: {exc}",
                       hint="authorise the controller's key on the host", host=endpoint.address) from exc
    except (OSError, paramiko.SSHException, EOFError) as exc:  # EOFError: hung up mid-handshake (sshd starting)
        client.close()
        raise SSHError(f"cannot reach {endpoint.label} port {endpoint.port} over ssh: {str(exc) or type(exc).__name__}",
                       hint="check the address, the route and that sshd runs", host=endpoint.address) from exc
    return SSHSession(client, endpoint)


class SSHSession:
    """One connected host; ``run`` executes a shell command line and returns its status and output."""

    # sshd refuses channels beyond MaxSessions (10 by default) on one connection: stay below it
    MAX_CHANNELS = 8

    def __init__(self, client: paramiko.SSHClient, endpoint: Endpoint) -> None:
        self.client = client
        self.endpoint = endpoint
        self._channels = threading.BoundedSemaphore(self.MAX_CHANNELS)
        self._reconnecting = threading.Lock()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def run(self, command: str, *, check: bool = True, timeout: float = 600.0, input: str | None = None,
            secret: bool = False) -> CommandResult:
        """Run ``command`` (a shell line); ``check`` raises SSHError on a non-zero status. ``secret``
        keeps the command out of logs and errors (it carries key material).

        A connection that is lost (closed before the command, a channel that cannot be opened, or a
        command ended without an exit status because the transport died) is reconnected once and the
        command run again: every command govcloud sends is idempotent (and a reconnect checks the host
        key again).

        A command given ``input`` must read its stdin to the end (``$(cat)``, not one ``read``): its EOF
        is sent after the input, and an EOF that reaches sshd after the command has ended and its
        channel is closed makes sshd drop the connection. Without ``input`` stdin is /dev/null."""
        shown = "<command with key material>" if secret else command
        log.debug("ssh %s: %s", self.endpoint.label, shown)
        used = self.client
        try:
            status, out, err = self._run_once(command, shown, timeout, input)
        except _ConnectionLost as lost:
            log.warning("ssh %s: connection lost (%s); reconnecting once", self.endpoint.label, lost)
            self._reconnect(used)
            try:
                status, out, err = self._run_once(command, shown, timeout, input)
            except _ConnectionLost as again:
                raise SSHError(f"on {self.endpoint.label}: the ssh connection was lost twice running `{shown}`: {again}",
                               hint="the host or its sshd is overloaded or restarting; the step is retried on resume",
                               host=self.endpoint.address, command=shown) from again
        result = CommandResult(shown, status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
        if check and status != 0:
            raise SSHError(f"on {self.endpoint.label}: `{shown}` exited {status}: {_tail(result.stderr)}",
                           host=self.endpoint.address, command=shown, status=status, stderr=_tail(result.stderr))
        return result

    def _reconnect(self, failed: paramiko.SSHClient) -> None:
        """Replace the client that failed (once: threads sharing this session reconnect only once)."""
        with self._reconnecting:
            if self.client is not failed:
                return  # another thread already reconnected
            fresh = connect(self.endpoint)
            self.client = fresh.client
        failed.close()

    def _run_once(self, command: str, shown: str, timeout: float, input: str | None) -> tuple[int, bytes, bytes]:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise _ConnectionLost("the session is closed")
        with self._channels:
            try:
                chan = transport.open_session()
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise _ConnectionLost(f"cannot open a channel: {str(exc) or type(exc).__name__}") from exc
            try:
                if input is None:
                    # stdin from /dev/null on the host, and no EOF from us: paramiko sends a channel's EOF
                    # from this thread while its transport thread may already be answering the server's
                    # close of a command that finished at once; sshd then gets an EOF for a channel it has
                    # freed and drops the whole connection (1 command in 50 under load, each a reconnect)
                    chan.exec_command(f"exec </dev/null\n{command}")
                else:
                    # the command reads its stdin to the end (see ``run``), so it cannot end before our EOF
                    chan.exec_command(command)
                    chan.sendall(input.encode("utf-8"))
                    chan.shutdown_write()
                out, err = _drain(chan, timeout, self.endpoint.label, shown)
                status = chan.recv_exit_status()
            except (paramiko.SSHException, OSError, EOFError) as exc:
                # EOFError: paramiko found the socket gone (its transport thread may not have noticed yet)
                if isinstance(exc, EOFError) or _connection_gone(transport):
                    raise _ConnectionLost(f"the channel failed: {str(exc) or type(exc).__name__}") from exc
                raise SSHError(f"on {self.endpoint.label}: the ssh channel of `{shown}` failed: {str(exc) or type(exc).__name__}",
                               host=self.endpoint.address, command=shown) from exc
            finally:
                with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
                    chan.close()  # fails too when the connection died: what happened above is what counts
        if status == -1 and _connection_gone(transport):  # no exit status: the connection died under the command
            raise _ConnectionLost("the command ended without an exit status")
        return status, out, err


class _ConnectionLost(Exception):
    """Internal: the transport went away; ``SSHSession.run`` reconnects once."""


def _connection_gone(transport: paramiko.Transport, grace: float = 1.0) -> bool:
    """Did the connection die? paramiko closes a dying connection's channels just *before* it marks the
    transport inactive, so a closed channel can be the first sign: give the transport's thread a moment
    to end (a live transport costs ``grace``, only on a channel that failed or ended without a status)."""
    if transport.is_active():
        transport.join(grace)
    return not transport.is_active()


def _drain(chan: paramiko.Channel, timeout: float, label: str, shown: str) -> tuple[bytes, bytes]:
    """Read stdout and stderr together (reading one while the other fills would stall the channel) until
    the channel's EOF, then wait for the exit status (``recv_exit_status`` is then immediate).

    Not until the exit status is known: sshd may send the exit-status before the last data packets of
    the command's output (it reports the exit as soon as it reaps the child, and sends what is still in
    the pipe afterwards), so stopping once the status is known and nothing is buffered lost output on a
    loaded machine (an empty ``$HOME``, a missing stderr line). EOF comes after the last data. A channel
    closed without EOF (the transport died) ends the reading too; ``_run_once`` sees no exit status."""
    out: list[bytes] = []
    err: list[bytes] = []
    deadline = time.monotonic() + timeout
    while not _read_ready(chan, out, err):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SSHError(f"on {label}: `{shown}` did not finish within {timeout:.0f}s", host=label, command=shown)
        select.select([chan], [], [], min(remaining, 1.0))  # wakes on data, EOF and close
    # EOF (or close) but no status yet: the command closed its output and runs on
    if not chan.status_event.wait(max(0.0, deadline - time.monotonic())):
        raise SSHError(f"on {label}: `{shown}` did not finish within {timeout:.0f}s", host=label, command=shown)
    return b"".join(out), b"".join(err)


def _read_ready(chan: paramiko.Channel, out: list[bytes], err: list[bytes]) -> bool:
    """Append what is buffered on both streams; True once the channel is at EOF (or closed) and both
    buffers are empty: paramiko closes them on EOF, so ``recv`` then returns b'' without blocking."""
    while chan.recv_ready():
        out.append(chan.recv(65536))
    while chan.recv_stderr_ready():
        err.append(chan.recv_stderr(65536))
    if not (chan.eof_received or chan.closed):
        return False
    while data := chan.recv(65536):  # data that came with the EOF
        out.append(data)
    while data := chan.recv_stderr(65536):
        err.append(data)
    return True


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


# ------------------------------------------------------------------ data paths

@dataclass(frozen=True)
class PathSize:
    path: str
    bytes: int
    files: int


def measure_command(path: str) -> str:
    q = shlex.quote(path)
    return f"test -d {q} && du -sb -- {q} | cut -f1 && find {q} -type f | wc -l"


def parse_measure(path: str, stdout: str) -> PathSize:
    lines = stdout.split()
    if len(lines) != 2 or not all(x.isdigit() for x in lines):
        raise ValueError(f"unexpected du/find output for {path}: {stdout!r}")
    return PathSize(path, int(lines[0]), int(lines[1]))


def measure(session: SSHSession, path: str) -> PathSize:
    """Bytes (``du -sb``) and regular-file count of a data path; SSHError if it does not exist."""
    r = session.run(measure_command(path), check=False)
    if r.status != 0:
        raise SSHError(f"data path {path} does not exist or cannot be read on {session.endpoint.label}: "
                       f"{_tail(r.stderr) or 'not a directory'}", host=session.endpoint.address, command=r.command,
                       status=r.status)
    return parse_measure(path, r.stdout)


def manifest_command(path: str) -> str:
    q = shlex.quote(path)
    script = (f"set -euo pipefail; cd -- {q}; n=$(find . -type f | wc -l); "
              "d=$(find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum | sha256sum | cut -d' ' -f1); "
              'echo "$n $d"')
    return f"bash -c {shlex.quote(script)}"


def parse_manifest(path: str, stdout: str) -> Manifest:
    parts = stdout.split()
    if len(parts) != 2 or not parts[0].isdigit() or not re.fullmatch(r"[0-9a-f]{64}", parts[1]):
        raise ValueError(f"unexpected manifest output for {path}: {stdout!r}")
    return Manifest(path, parts[1], int(parts[0]))


def manifest(session: SSHSession, path: str, *, timeout: float = 3600.0) -> Manifest:
    """The tree digest of ``path`` computed on the host (file contents and relative names; not owners,
    modes or empty directories, which rsync -a carries but which do not make data differ): the full
    ``find | sort | sha256sum`` pipeline (``manifest_command``), kept as the reference definition."""
    r = session.run(manifest_command(path), check=False, timeout=timeout)
    if r.status != 0:
        raise SSHError(f"cannot compute the checksum manifest of {path} on {session.endpoint.label}: {_tail(r.stderr)}",
                       host=session.endpoint.address, command=r.command, status=r.status)
    return parse_manifest(path, r.stdout)


def host_manifest_source() -> str:
    """The stdlib-only program (``govcloud/migrate/hostmanifest.py``) shipped on stdin to ``python3 -``."""
    return (Path(__file__).resolve().parent.parent / "migrate" / "hostmanifest.py").read_text(encoding="utf-8")


def incremental_manifest_command(path: str, cache_dir: str | None = DEFAULT_MANIFEST_CACHE) -> str:
    """``python3 - PATH CACHE_DIR`` (the program comes on stdin; ``-`` as cache dir: no cache)."""
    return shlex.join(["python3", "-", path, cache_dir or "-"])


def parse_incremental_manifest(path: str, stdout: str) -> Manifest:
    try:
        doc = json.loads(stdout)
        digest, files = str(doc["digest"]), int(doc["files"])
        hashed_files, hashed_bytes = int(doc["hashed_files"]), int(doc["hashed_bytes"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"unexpected manifest output for {path}: {stdout[:200]!r}") from exc
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"unexpected manifest digest for {path}: {digest!r}")
    return Manifest(path, digest, files, hashed_files, hashed_bytes)


def incremental_manifest(session: SSHSession, path: str, *, cache_dir: str | None = DEFAULT_MANIFEST_CACHE,
                         timeout: float = 3600.0) -> Manifest:
    """The same digest as ``manifest``, computed on the host by ``hostmanifest.py`` with its per-tree
    hash cache: only files whose (inode, size, mtime, ctime) changed since the last run are read."""
    r = session.run(incremental_manifest_command(path, cache_dir), check=False, timeout=timeout,
                    input=host_manifest_source())
    if r.status != 0:
        raise SSHError(f"cannot compute the checksum manifest of {path} on {session.endpoint.label}: {_tail(r.stderr)}",
                       hint="the host needs python3 (3.9+) and read access to the tree",
                       host=session.endpoint.address, command=r.command, status=r.status)
    return parse_incremental_manifest(path, r.stdout)


# ------------------------------------------------------------------ rsync (pure builder + stats)

def rsync_ssh_command(spec: RsyncSpec) -> str:
    return shlex.join(["ssh", "-i", spec.identity, "-o", "StrictHostKeyChecking=yes",
                       "-o", f"UserKnownHostsFile={spec.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                       "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-p", str(spec.dest_port)])


def rsync_argv(spec: RsyncSpec) -> list[str]:
    """The exact argv (pure). Trailing slashes: the *contents* of source_path land in dest_path."""
    host = f"[{spec.dest_host}]" if ":" in spec.dest_host else spec.dest_host
    argv = ["rsync", "-a", "--delete", "--numeric-ids", "--stats", "-e", rsync_ssh_command(spec)]
    if spec.make_dest:
        argv += [f"--rsync-path=mkdir -p {shlex.quote(spec.dest_path)} && rsync"]
    if spec.bwlimit_kib:
        argv += [f"--bwlimit={spec.bwlimit_kib}"]
    if spec.checksum:
        argv += ["--checksum"]
    argv += [f"--exclude={x}" for x in spec.excludes]
    return argv + [spec.source_path.rstrip("/") + "/", f"{spec.dest_user}@{host}:{spec.dest_path.rstrip('/')}/"]


def rsync_command(spec: RsyncSpec) -> str:
    """The shell line run on the legacy host (C locale so ``--stats`` numbers parse the same everywhere)."""
    return "LC_ALL=C " + shlex.join(rsync_argv(spec))


_STATS = {
    "files": r"Number of files: ([\d,.]+)",
    "files_transferred": r"Number of regular files transferred: ([\d,.]+)",
    "total_size": r"Total file size: ([\d,.]+) bytes",
    "transferred_size": r"Total transferred file size: ([\d,.]+) bytes",
    "literal_data": r"Literal data: ([\d,.]+) bytes",
    "matched_data": r"Matched data: ([\d,.]+) bytes",
    "bytes_sent": r"Total bytes sent: ([\d,.]+)",
    "bytes_received": r"Total bytes received: ([\d,.]+)",
}


def parse_rsync_stats(output: str) -> RsyncStats:
    """Read ``rsync --stats`` (rsync 3.x; thousands separators allowed). ValueError if the block is missing."""
    values: dict[str, int] = {}
    for name, pattern in _STATS.items():
        m = re.search(pattern, output)
        if m is None:
            if name == "files_transferred":  # rsync < 3.1 says "Number of files transferred"
                m = re.search(r"Number of files transferred: ([\d,.]+)", output)
            if m is None:
                raise ValueError(f"no '{pattern.split(':')[0]}' line in rsync output (was --stats given?)")
        values[name] = int(re.sub(r"[,.]", "", m.group(1)))
    return RsyncStats(**values)


def push(source: SSHSession, spec: RsyncSpec, *, timeout: float = 24 * 3600.0) -> RsyncStats:
    """Run the rsync on the legacy host; raises SSHError with rsync's exit status and stderr."""
    r = source.run(rsync_command(spec), check=False, timeout=timeout)
    if r.status not in (0, RSYNC_PARTIAL_OK):
        raise SSHError(f"rsync on {source.endpoint.label} to {spec.dest_host}:{spec.dest_path} failed (exit {r.status}): "
                       f"{_tail(r.stderr)}", hint="see rsync(1) EXIT VALUES; the target keeps what was copied and the "
                       "next sync resumes", host=source.endpoint.address, command=r.command, status=r.status,
                       stderr=_tail(r.stderr))
    return parse_rsync_stats(r.stdout)


# ------------------------------------------------------------------ per-migration key

def _check_mig_id(mig_id: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", mig_id):
        raise ValueError(f"migration id {mig_id!r}: letters, digits, '_', '.', '-' only")
    return mig_id


def authorized_keys_line(public_key: str, source_ip: str, expires: datetime | None = None) -> str:
    """``from="<source ip>",restrict[,expiry-time="...Z"] <key>``: usable only from the legacy host, no
    forwarding, no pty; ``expires`` (UTC) is the safety net for a controller that dies before revoking
    (established sessions continue; OpenSSH >= 8.2 on the target, which new cloud servers have)."""
    ipaddress.ip_address(source_ip)  # ValueError on anything else (no patterns, no quotes)
    parts = public_key.split()
    if len(parts) < 2 or not parts[0].startswith("ssh-"):
        raise ValueError(f"not an OpenSSH public key: {public_key[:40]!r}")
    options = f'from="{source_ip}",restrict'
    if expires is not None:
        options += f',expiry-time="{expires.astimezone(UTC).strftime("%Y%m%d%H%M%S")}Z"'
    return f"{options} {' '.join(parts)}"


def known_hosts_lines(known_hosts: Path, entry: str) -> list[str]:
    """The controller's (already trusted) key lines for one host, to hand to the legacy host."""
    keys = paramiko.HostKeys(str(known_hosts)).lookup(entry) if known_hosts.is_file() else None
    if not keys:
        raise HostKeyError(f"host {entry} is not in known_hosts {known_hosts}", host=entry)
    return [f"{entry} {k.get_name()} {k.get_base64()}" for k in keys.values()]


def _home(session: SSHSession) -> str:
    result = session.run('printf %s "$HOME"')
    home = result.stdout.strip()
    if not home.startswith("/"):
        raise SSHError(f"cannot find the home directory of {session.endpoint.user} on {session.endpoint.label}: "
                       f"`printf %s \"$HOME\"` printed {home[:80]!r} (stderr {result.stderr.strip()[:200]!r})",
                       hint="the step is retried on resume; a repeat means the host's login environment is broken",
                       host=session.endpoint.address)
    return home


def create_key(source: SSHSession, mig_id: str) -> tuple[str, str, str]:
    """Generate the per-migration ed25519 key on the source; returns (private path, known_hosts path, public key)."""
    base = f"{_home(source)}/.ssh/govcloud-mig-{_check_mig_id(mig_id)}"
    q = shlex.quote(base)
    r = source.run(f"umask 077 && mkdir -p \"$(dirname {q})\" && rm -f {q} {q}.pub && "
                   f"ssh-keygen -q -t ed25519 -N '' -C govcloud-mig-{mig_id} -f {q} && cat {q}.pub")
    return base, f"{base}.known_hosts", r.stdout.strip()


def authorize(target: SSHSession, line: str) -> None:
    """Append ``line`` to the target user's authorized_keys once (idempotent)."""
    target.run('umask 077 && mkdir -p "$HOME/.ssh" && f="$HOME/.ssh/authorized_keys" && touch "$f" && '
               'line=$(cat) && (grep -qxF -- "$line" "$f" || printf "%s\\n" "$line" >> "$f")',
               input=line + "\n")


def revoke(target: SSHSession, key_body: str) -> None:
    """Remove every authorized_keys line carrying ``key_body`` (or a comment such as ``govcloud-mig-<id>``,
    what resume uses after a crash); rewritten in place (mode and owner kept)."""
    target.run('f="$HOME/.ssh/authorized_keys"; body=$(cat); [ -f "$f" ] || exit 0; '
               'grep -vF -- "$body" "$f" > "$f.govcloud-tmp" || true; cat "$f.govcloud-tmp" > "$f"; rm -f "$f.govcloud-tmp"',
               input=key_body + "\n")


def is_authorized(target: SSHSession, key_body: str) -> bool:
    r = target.run('body=$(cat); grep -qF -- "$body" "$HOME/.ssh/authorized_keys"', check=False, input=key_body + "\n")
    return r.status == 0


def remove_key_files(source: SSHSession, key: MigrationKey) -> None:
    q = shlex.quote(key.private_path)
    source.run(f"rm -f {q} {q}.pub {shlex.quote(key.known_hosts_path)}")


@contextlib.contextmanager
def transfer_key(source: SSHSession, target: SSHSession, *, mig_id: str, source_ip: str,
                 target_host_keys: Sequence[str], lifetime: timedelta = timedelta(hours=24)) -> Iterator[MigrationKey]:
    """A per-migration key, authorised on the target only for the ``with`` block (and at most ``lifetime``)
    and only from ``source_ip``;
    the target's host key lines go to a known_hosts of their own on the source. Removed on the way out,
    also when the block fails (a failing removal is raised unless another error is already on its way)."""
    priv, kh, pub = create_key(source, mig_id)
    key = MigrationKey(mig_id=mig_id, private_path=priv, public_key=pub, known_hosts_path=kh,
                       authorized_line=authorized_keys_line(pub, source_ip, datetime.now(UTC) + lifetime))
    in_error = False
    try:
        source.run(f"umask 077 && cat > {shlex.quote(kh)}", input="".join(f"{line}\n" for line in target_host_keys))
        authorize(target, key.authorized_line)
        yield key
    except BaseException:
        in_error = True
        raise
    finally:
        failed: list[str] = []
        steps: tuple[tuple[str, Callable[[], None]], ...] = (
            ("revoke on target", lambda: revoke(target, key.key_body)),
            ("remove key files on source", lambda: remove_key_files(source, key)))
        for what, fn in steps:
            try:
                fn()
            except (SSHError, OSError, paramiko.SSHException) as exc:
                log.error("per-migration key %s: %s failed: %s", mig_id, what, exc)
                failed.append(f"{what}: {exc}")
        if failed and not in_error:
            raise SSHError(f"per-migration key {mig_id} could not be fully removed: {'; '.join(failed)}",
                           hint=f"remove lines containing govcloud-mig-{mig_id} from the target's authorized_keys by hand",
                           host=target.endpoint.address)
