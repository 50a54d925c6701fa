"""The checksum manifest of a data tree, computed ON the host with a per-tree hash cache (stdlib only).

This file is a program shipped to legacy hosts and targets (``python3 - PATH CACHE_DIR`` with this
source on stdin; see ``govcloud.adapters.ssh.manifest``); the controller never imports it except to
read its source, and the unit tests import it to check it. Why a cache: a full manifest of 1 GiB costs
seconds of sha256 on each side, and the cutover takes one on both sides *while the service is down*.
With the cache only files whose key (relative path, inode, size, mtime_ns, ctime_ns) changed since the
last manifest are read again, so the cutover pays for the delta, not the tree.

The digest is exactly the old definition (``docs/migration.md``):
``find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum``, i.e. sha256 over the
byte-sorted ``sha256sum`` lines ``<hex>  ./<relative name>\\n`` of every regular file (symlinks and
empty directories do not count; names with a backslash or newline are escaped as sha256sum does).

Safety rules: an entry whose mtime is within ``RACY_NS`` of the start of the scan that wrote the cache
is never reused (git's "racy clean" rule: a same-size rewrite in the same timestamp tick would keep
its key); ctime is part of the key, so a rewrite whose mtime was set back is re-read; a cache that does
not parse, has another version or names another tree (path, device, inode of the root) is ignored. The
cache lives outside the synced data (default ``/var/lib/govcloud/manifest-cache/<sha256 of path, device, inode>.json``);
a cache that cannot be written only costs speed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import time
from typing import Any

VERSION = 1
RACY_NS = 2_000_000_000
DEFAULT_CACHE_DIR = "/var/lib/govcloud/manifest-cache"
_CHUNK = 1 << 20

Key = tuple[int, int, int, int]  # inode, size, mtime_ns, ctime_ns


def identity(root: str) -> dict[str, Any]:
    """Which tree a cache belongs to: its absolute path and the device and inode of its top directory."""
    st = os.stat(root)
    return {"root": os.path.abspath(root), "dev": st.st_dev, "ino": st.st_ino}


def cache_file(tree: dict[str, Any], cache_dir: str) -> str:
    """One file per tree identity (hosts that share /var/lib but not the tree, as lab hosts do, never
    share a cache file)."""
    key = f"{tree['root']}\0{tree['dev']}\0{tree['ino']}"
    return os.path.join(cache_dir, hashlib.sha256(os.fsencode(key)).hexdigest() + ".json")


def load_cache(path: str, tree: dict[str, Any]) -> dict[bytes, tuple[Key, str]]:
    """The usable entries of a cache file (empty when missing, corrupt, old or of another tree)."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        if not isinstance(doc, dict) or doc.get("version") != VERSION or doc.get("tree") != tree:
            return {}
        out: dict[bytes, tuple[Key, str]] = {}
        for name, (ino, size, mtime, ctime, digest) in doc["entries"].items():
            if not (isinstance(digest, str) and len(digest) == 64):
                continue
            out[os.fsencode(name)] = ((int(ino), int(size), int(mtime), int(ctime)), digest)
        return out
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def _walk(root: str) -> list[tuple[bytes, os.stat_result]]:
    """Every regular file below root (not following symlinks): (b"./relative", lstat)."""
    out: list[tuple[bytes, os.stat_result]] = []
    stack = [b"."]
    base = os.fsencode(root)
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(base, rel)) as it:
            for e in it:
                name = rel + b"/" + e.name
                st = e.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(name)
                elif stat.S_ISREG(st.st_mode):
                    out.append((name, st))
    out.sort(key=lambda x: x[0])
    return out


def _hash(path: bytes) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _line(digest: str, name: bytes) -> bytes:
    if b"\\" in name or b"\n" in name:  # what sha256sum prints for such names
        return b"\\" + digest.encode() + b"  " + name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n") + b"\n"
    return digest.encode() + b"  " + name + b"\n"


def manifest(root: str, cache_dir: str | None = DEFAULT_CACHE_DIR) -> dict[str, Any]:
    """{files, digest, hashed_files, hashed_bytes, reused, cache} for the tree at ``root``."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root} is not a directory")
    started = time.time_ns()
    tree = identity(root)
    cpath = cache_file(tree, cache_dir) if cache_dir else ""
    cached = load_cache(cpath, tree) if cpath else {}
    base = os.fsencode(root)
    total = hashlib.sha256()
    entries: dict[str, list[Any]] = {}
    hashed_files = hashed_bytes = reused = 0
    for name, st in _walk(root):
        key: Key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        hit = cached.get(name)
        if hit is not None and hit[0] == key:
            digest = hit[1]
            reused += 1
        else:
            digest = _hash(os.path.join(base, name))
            hashed_files += 1
            hashed_bytes += st.st_size
        total.update(_line(digest, name))
        if st.st_mtime_ns < started - RACY_NS:  # racy entries are not kept: re-read next time
            entries[os.fsdecode(name)] = [*key, digest]
    cache_state = "none"
    if cpath:
        cache_state = "used" if cached else "cold"
        try:
            os.makedirs(cache_dir or ".", mode=0o700, exist_ok=True)
            tmp = f"{cpath}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"version": VERSION, "tree": tree, "written_ns": started, "entries": entries}, f)
            os.replace(tmp, cpath)
        except OSError as exc:
            cache_state = f"unwritable: {exc}"
    return {"files": hashed_files + reused, "digest": total.hexdigest(),
            "hashed_files": hashed_files, "hashed_bytes": hashed_bytes, "reused": reused, "cache": cache_state}


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: hostmanifest.py PATH [CACHE_DIR|-]", file=sys.stderr)
        return 2
    cache_dir = argv[2] if len(argv) == 3 and argv[2] != "-" else (None if len(argv) == 3 else DEFAULT_CACHE_DIR)
    try:
        result = manifest(argv[1], cache_dir)
    except OSError as exc:
        print(f"manifest of {argv[1]}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
