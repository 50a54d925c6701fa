"""The files beside the migration journal: its head file, its writers' lock, and read-only opening.

Why a head file: a hash chain cannot show that records were cut from its end (what is left is still a
valid chain), and the head kept inside the journal goes wherever the journal goes: truncated, emptied,
deleted or swapped for an older copy along with it. ``<journal>.head`` holds the last record's seq and
hash, replaced atomically (temp file, fsync, rename, fsync of the directory) after every committed
append, so ``audit verify`` finds a journal that no longer reaches its head without being told anything.

Why a lock file: appends come from several threads and processes. SQLite serialises their
transactions but releases its lock at COMMIT, before the head file is written; ``<journal>.lock``
(``flock``, held from ``BEGIN`` to the head write) keeps those two steps together, so the head file
never goes backwards and a crash can only leave it *behind* the journal, never ahead. Readers take it
shared while they read the main file directly (see ``connect_read_only``).

Optionally every new head also goes to syslog (``GOVCLOUD_AUDIT_SYSLOG=<facility>``), outside the
state directory; the message carries the seq and hash only, never a record's detail.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sqlite3
import syslog
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from govcloud.errors import InvalidInputError, JournalError, JournalMissingError
from govcloud.migrate.auditchain import Anchor

ENV_AUDIT_SYSLOG = "GOVCLOUD_AUDIT_SYSLOG"
HEAD_FORMAT = "govcloud-audit-head/1"
LOCK_TIMEOUT_SECONDS = 30.0  # the same patience as SQLite's busy timeout
SYSLOG_FACILITIES = ("auth", "authpriv", "user", "daemon", *(f"local{i}" for i in range(8)))
_HASH = re.compile(r"[0-9a-f]{64}")


def head_file(journal: Path) -> Path:
    return journal.with_name(journal.name + ".head")


def lock_file(journal: Path) -> Path:
    return journal.with_name(journal.name + ".lock")


def wal_file(journal: Path) -> Path:
    return journal.with_name(journal.name + "-wal")


# ------------------------------------------------------------------ the head file


def head_document(anchor: Anchor, journal_name: str, at: str) -> dict[str, Any]:
    """What the head file holds (pure: tested for its shape)."""
    return {"format": HEAD_FORMAT, "journal": journal_name, "seq": anchor.seq, "hash": anchor.hash, "at": at}


def parse_head(text: str) -> Anchor:
    """The anchor in a head file's text; ValueError saying what is wrong with it."""
    doc = json.loads(text)
    if not isinstance(doc, dict) or doc.get("format") != HEAD_FORMAT:
        raise ValueError(f"not a {HEAD_FORMAT} document")
    seq, digest = doc.get("seq"), doc.get("hash")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise ValueError(f"seq {seq!r} is not a record number")
    if not isinstance(digest, str) or not _HASH.fullmatch(digest):
        raise ValueError(f"hash {digest!r} is not a SHA-256 hex digest")
    return Anchor(seq, digest)


def read_head(path: Path) -> Anchor | None:
    """The anchor, ``None`` when there is no head file; JournalError when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise JournalError(f"cannot read the audit head file {path}: {exc}") from exc
    try:
        return parse_head(text)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise JournalError(f"the audit head file {path} is unreadable: {exc}") from exc


def write_head(path: Path, anchor: Anchor, at: str) -> None:
    """Replace the head file atomically and durably: a crash leaves the old one or the new one, whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    data = (json.dumps(head_document(anchor, path.name.removesuffix(".head"), at), sort_keys=True) + "\n").encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def syslog_facility(value: str | None) -> int | None:
    """The facility named by ``GOVCLOUD_AUDIT_SYSLOG`` (unset or empty: no export)."""
    if not value:
        return None
    if value.lower() not in SYSLOG_FACILITIES:
        raise InvalidInputError(f"{ENV_AUDIT_SYSLOG}={value}: not a syslog facility govcloud exports to",
                                hint=f"use one of {', '.join(SYSLOG_FACILITIES)}, or unset it")
    return int(getattr(syslog, f"LOG_{value.upper()}"))


def head_message(journal: Path, anchor: Anchor) -> str:
    """The syslog line for a new head (pure): enough to check a journal later, nothing from its records."""
    return f"audit head journal={journal} seq={anchor.seq} hash={anchor.hash}"


def export_head(facility: int, journal: Path, anchor: Anchor) -> None:
    syslog.openlog("govcloud-audit", syslog.LOG_PID, facility)
    syslog.syslog(syslog.LOG_INFO, head_message(journal, anchor))


# ------------------------------------------------------------------ the writers' lock


@dataclass
class FileLock:
    """A ``flock`` on a lock file, re-entrant within its holder, waiting at most LOCK_TIMEOUT_SECONDS.

    Each holder opens the file itself: flock locks belong to the open file, so two journals in two
    threads of one process exclude each other as two processes do."""

    path: Path
    fd: int
    depth: int = 0

    @classmethod
    def open(cls, path: Path, *, create: bool) -> FileLock:
        flags = os.O_RDWR | os.O_CREAT if create else os.O_RDONLY
        return cls(path, os.open(path, flags, 0o600))

    @contextlib.contextmanager
    def held(self, *, shared: bool = False) -> Iterator[None]:
        self.acquire(shared=shared)
        try:
            yield
        finally:
            self.release()

    def acquire(self, *, shared: bool = False) -> None:
        if self.depth == 0:
            mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
            deadline, pause = time.monotonic() + LOCK_TIMEOUT_SECONDS, 0.001
            while True:
                try:
                    fcntl.flock(self.fd, mode)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise JournalError(f"journal lock {self.path} is busy",
                                           hint="another govcloud holds it; retry") from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.05)
        self.depth += 1

    def release(self) -> None:
        self.depth -= 1
        if self.depth == 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)  # closing drops the lock


# ------------------------------------------------------------------ reading without writing


def connect_read_only(path: Path) -> tuple[sqlite3.Connection, FileLock | None]:
    """A connection that cannot create, migrate or modify the journal, nor leave files beside it.

    SQLite's ``mode=ro`` on a WAL journal creates ``-wal`` and ``-shm`` files when none exist; so with
    no ``-wal`` (no connection open: the whole journal is in its main file) the main file is read as
    ``immutable``, under the writers' lock held shared until ``close`` so that no writer's commit or
    checkpoint changes it meanwhile (a journal without a lock file was never opened by a writer that
    takes it). The returned lock (if any) is the caller's to close."""
    if not path.is_file():
        raise missing_journal(path)
    lock: FileLock | None = None
    with contextlib.suppress(FileNotFoundError, PermissionError):  # none yet, or not ours to read: no lock
        lock = FileLock.open(lock_file(path), create=False)
    try:
        if lock is not None:
            lock.acquire(shared=True)
        quiet = not wal_file(path).exists()
        if lock is not None and not quiet:  # a live WAL: SQLite's own locking keeps the reads consistent
            lock.close()
            lock = None
        uri = path.resolve().as_uri() + ("?mode=ro&immutable=1" if quiet else "?mode=ro")
        try:
            return sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30.0), lock
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open journal {path}: {exc}") from exc
    except BaseException:
        if lock is not None:
            lock.close()
        raise


def missing_journal(path: Path) -> JournalMissingError:
    """The one error every reader gives for a journal that is not there (exit 2), naming a head file
    left behind (a deleted journal, which ``audit verify`` reports as tampering)."""
    head = head_file(path)
    try:
        anchor = read_head(head)
    except JournalError:
        anchor = None
    if anchor is not None and anchor.seq > 0:
        hint = (f"its head file {head} records {anchor.seq} audit record(s): the journal was deleted or moved "
                "(`govcloud audit verify` reports it); restore it, or pass --journal PATH")
    else:
        hint = "pass --journal PATH (or set GOVCLOUD_JOURNAL), or run a migration first"
    return JournalMissingError(f"no migration journal at {path}", hint=hint)
