"""The host-side incremental manifest (govcloud/migrate/hostmanifest.py): same digest as the reference
pipeline, cache reuse, and the cases where a cache must not be trusted."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from govcloud.adapters.ssh import manifest_command, parse_manifest
from govcloud.migrate import hostmanifest
from govcloud.migrate.hostmanifest import cache_file, identity, manifest

HOUR_NS = 3600 * 1_000_000_000


def _reference(root: Path) -> str:
    out = subprocess.run(["sh", "-c", manifest_command(str(root))], check=True, capture_output=True, text=True).stdout
    return parse_manifest(str(root), out).digest


def _tree(tmp_path: Path, name: str = "data") -> Path:
    root = tmp_path / name
    (root / "sub dir").mkdir(parents=True)
    (root / "a.bin").write_bytes(os.urandom(200_000))
    (root / "sub dir" / "b.txt").write_text("beta\n")
    (root / "sub dir" / "é.txt").write_text("unicode\n")
    (root / "sub dir" / "back\\slash").write_text("escaped by sha256sum\n")
    (root / ".hidden").write_text("h\n")
    (root / "link").symlink_to("a.bin")  # not a regular file: not in the manifest
    _age(root)
    return root


def _age(root: Path) -> None:
    """Move every mtime an hour back (out of the racy window)."""
    old = time.time_ns() - HOUR_NS
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            os.utime(p, ns=(old, old))


def test_digest_equals_the_reference_pipeline_cold_and_warm(tmp_path: Path) -> None:
    root, cache = _tree(tmp_path), str(tmp_path / "cache")
    cold = manifest(str(root), cache)
    assert cold["digest"] == _reference(root) and cold["files"] == 5
    assert cold["hashed_files"] == 5 and cold["reused"] == 0
    warm = manifest(str(root), cache)
    assert warm["digest"] == cold["digest"] and warm["hashed_files"] == 0 and warm["reused"] == 5
    assert manifest(str(root), None)["digest"] == cold["digest"]  # no cache at all
    (root / "sub dir" / "b.txt").write_text("beta, longer\n")
    (root / "new").write_text("n\n")
    changed = manifest(str(root), cache)
    assert changed["digest"] == _reference(root) != cold["digest"]
    assert changed["hashed_files"] == 2 and changed["reused"] == 4
    empty = tmp_path / "empty"
    empty.mkdir()
    assert manifest(str(empty), cache)["digest"] == _reference(empty)


def test_same_size_rewrite_with_mtime_set_back_is_detected(tmp_path: Path) -> None:
    root, cache = _tree(tmp_path), str(tmp_path / "cache")
    before = manifest(str(root), cache)
    f = root / "sub dir" / "b.txt"
    st = f.stat()
    with f.open("r+b") as fh:  # same inode, same size, other content
        fh.write(b"BETA\n")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime back: only ctime tells
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    after = manifest(str(root), cache)
    assert after["hashed_files"] == 1 and after["digest"] != before["digest"]
    assert after["digest"] == _reference(root)


def test_racy_entries_are_always_reread(tmp_path: Path) -> None:
    root, cache = _tree(tmp_path), str(tmp_path / "cache")
    (root / "fresh").write_text("written just now\n")  # mtime within 2 s of the cache write
    manifest(str(root), cache)
    again = manifest(str(root), cache)
    assert again["hashed_files"] == 1 and again["reused"] == 5


def test_a_corrupt_or_foreign_cache_is_ignored(tmp_path: Path) -> None:
    root, cache = _tree(tmp_path), str(tmp_path / "cache")
    good = manifest(str(root), cache)["digest"]
    path = cache_file(identity(str(root)), cache)
    doc = json.loads(Path(path).read_text())
    # the same entries with wrong digests, claimed by another tree: must not be used
    doc["entries"] = {k: [*v[:4], "0" * 64] for k, v in doc["entries"].items()}
    doc["tree"] = {**doc["tree"], "ino": doc["tree"]["ino"] + 1}
    Path(path).write_text(json.dumps(doc))
    m = manifest(str(root), cache)
    assert m["digest"] == good and m["hashed_files"] == 5
    for junk in ("{not json", "[]", json.dumps({"version": hostmanifest.VERSION, "tree": identity(str(root)),
                                                 "entries": {"./a.bin": "x"}})):
        Path(path).write_text(junk)
        m = manifest(str(root), cache)
        assert m["digest"] == good and m["hashed_files"] == 5


def test_trees_sharing_a_cache_dir_do_not_share_a_cache_file(tmp_path: Path) -> None:
    a, b = _tree(tmp_path, "a"), _tree(tmp_path, "b")
    assert cache_file(identity(str(a)), "/c") != cache_file(identity(str(b)), "/c")


def test_main_prints_json_and_fails_on_a_missing_tree(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    src = Path(hostmanifest.__file__).read_text()
    r = subprocess.run(["python3", "-", str(root), str(tmp_path / "c")], input=src, capture_output=True, text=True,
                       check=True)
    assert json.loads(r.stdout)["digest"] == _reference(root)
    r = subprocess.run(["python3", "-", str(tmp_path / "missing"), "-"], input=src, capture_output=True, text=True)
    assert r.returncode == 1 and "missing" in r.stderr
