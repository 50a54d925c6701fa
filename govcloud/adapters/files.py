"""Files written for the operator (migration plans, saved provision plans): whole or not at all, never
through a symbolic link, and every OS error a :class:`~govcloud.errors.GovcloudError` that names the
path and the fix.

A write goes to a temporary file beside the target (created exclusively, so never through a link),
is flushed to disk, then renamed over the target: a crash leaves the old file or the new one, and a
rename replaces a link itself rather than the file it points to, so nothing lands outside the
target's directory. Before this module an unwritable ``--out`` ended as
``internal error: FileExistsError ... report it`` (issue 29).
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from pathlib import Path

from govcloud.errors import GovcloudError, InvalidInputError, RuntimeFailure

#: errno -> what to do; these are problems of the path asked for (exit 2), others of the machine (exit 1)
_PATH_FIXES = {
    errno.ENOENT: "its directory does not exist: create it first, or choose another path",
    errno.ENOTDIR: "a part of the path is a file, not a directory: choose another path",
    errno.EEXIST: "a part of the path is a file, not a directory: choose another path",
    errno.EISDIR: "it is a directory: name a file inside it",
    errno.EACCES: "no permission: choose a directory you may write, or change its permissions",
    errno.EPERM: "not permitted: choose a directory you may write, or change its permissions",
    errno.EROFS: "the file system is read-only: choose another path",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter one",
    errno.ELOOP: "too many symbolic links: name the real path",
}


def file_error(exc: OSError, path: Path, doing: str) -> GovcloudError:
    """The GovcloudError for ``exc`` raised while ``doing`` (e.g. "write") ``path``: what, where, how to fix."""
    reason = exc.strerror or type(exc).__name__
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
    message = f"cannot {doing} {path}: {reason}{where}"
    fix = _PATH_FIXES.get(exc.errno or 0)
    if fix is not None:
        return InvalidInputError(message, hint=fix)
    return RuntimeFailure(message, hint="free space on the disk (or fix the device) and run again"
                          if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "check the disk and run again")


def refuse_link(path: Path) -> None:
    """A symbolic link at ``path`` is refused, not followed: it could point anywhere (the inventories)."""
    if path.is_symlink():
        raise InvalidInputError(f"{path} is a symbolic link (to {os.readlink(path)}); govcloud writes only regular "
                                "files, never through a link", hint="remove the link, or choose another path")


def read_existing(path: Path, *, doing: str = "read") -> bytes | None:
    """The bytes at ``path``, None when there is no file; a link there is refused. ``doing`` names
    the purpose in an error ("write" when the file is read to be replaced)."""
    refuse_link(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise file_error(exc, path, doing) from exc


def atomic_write(path: Path, data: str | bytes, *, mode: int = 0o644, make_parents: bool = False) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename, so a crash never leaves half a file.

    ``make_parents`` creates missing directories (only for govcloud's own state and plan directories:
    a path from the command line names a directory that exists). Raises InvalidInputError for a bad
    path (a link, a missing or unwritable directory), RuntimeFailure for a full or failing disk.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    refuse_link(path)
    try:
        if make_parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if exc.filename and Path(exc.filename).parent == path.parent and Path(exc.filename) != path:
            exc.filename = str(path.parent)  # the temporary file's random name would say nothing
        raise file_error(exc, path, "write") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise file_error(exc, path, "write") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def keep_backup(path: Path, data: bytes) -> Path:
    """Keep ``data`` (what was at ``path``) as ``path.~N~``, N one more than the highest there (GNU
    numbered backups); created exclusively, so an existing file or a link is never written through."""
    pattern = re.compile(re.escape(path.name) + r"\.~(\d+)~")
    try:
        taken = [int(m.group(1)) for p in path.parent.iterdir() if (m := pattern.fullmatch(p.name))]
    except OSError as exc:
        raise file_error(exc, path.parent, "list") from exc
    n = max(taken, default=0)
    while True:
        n += 1
        backup = path.with_name(f"{path.name}.~{n}~")
        try:
            with open(backup, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            return backup
        except FileExistsError:
            continue  # made meanwhile: take the next number
        except OSError as exc:
            raise file_error(exc, backup, "write") from exc
