"""The pure parts of the SSH adapter: the exact rsync argv, --stats parsing (fed by real local rsync
runs), the manifest and measure commands (run locally by bash and checked against Python), and the
restricted authorized_keys line."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from devcloud.testing import require

from govcloud.adapters.ports import RsyncSpec
from govcloud.adapters.ssh import (
    authorized_keys_line, host_manifest_source, incremental_manifest_command, manifest_command,
    parse_incremental_manifest, measure_command, parse_manifest, parse_measure,
    parse_rsync_stats, rsync_argv, rsync_command, rsync_ssh_command,
)

SPEC = RsyncSpec(source_path="/srv/pop/db", dest_host="10.244.5.10", dest_path="/srv/pop/db",
                 identity="/root/.ssh/govcloud-mig-m1", known_hosts="/root/.ssh/govcloud-mig-m1.known_hosts")


def test_rsync_argv_is_exact() -> None:
    ssh = ("ssh -i /root/.ssh/govcloud-mig-m1 -o StrictHostKeyChecking=yes "
           "-o UserKnownHostsFile=/root/.ssh/govcloud-mig-m1.known_hosts -o GlobalKnownHostsFile=/dev/null "
           "-o BatchMode=yes -o IdentitiesOnly=yes -p 22")
    assert rsync_ssh_command(SPEC) == ssh
    assert rsync_argv(SPEC) == [
        "rsync", "-a", "--delete", "--numeric-ids", "--stats", "-e", ssh,
        "--rsync-path=mkdir -p /srv/pop/db && rsync", "/srv/pop/db/", "root@10.244.5.10:/srv/pop/db/"]


def test_rsync_argv_variants_quote_and_bracket() -> None:
    spec = RsyncSpec(source_path="/srv/a b/", dest_host="fd00::5", dest_path="/srv/a b", identity="/k", known_hosts="/kh",
                     dest_user="mig", dest_port=2222, make_dest=False, bwlimit_kib=1000)
    argv = rsync_argv(spec)
    assert argv[-2:] == ["/srv/a b/", "mig@[fd00::5]:/srv/a b/"] and "--bwlimit=1000" in argv
    assert not any(a.startswith("--rsync-path") for a in argv) and argv[6].endswith("-p 2222")
    assert "--checksum" not in argv and "--checksum" in rsync_argv(RsyncSpec(**{**SPEC.__dict__, "checksum": True}))
    cmd = rsync_command(spec)
    assert cmd.startswith("LC_ALL=C rsync ") and shlex.split(cmd)[1:] == argv


def _rsync(src: Path, dst: Path, *extra: str) -> str:
    argv = ["rsync", "-a", "--delete", "--numeric-ids", "--stats", *extra, f"{src}/", f"{dst}/"]
    return subprocess.run(argv, check=True, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}).stdout


def test_stats_from_real_rsync_runs_show_full_then_delta(tmp_path: Path) -> None:
    require(shutil.which("rsync") is not None, "rsync not installed (devcloud lab install)")
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for i in range(8):
        (src / f"part-{i}.bin").write_bytes(os.urandom(65536))
    first = parse_rsync_stats(_rsync(src, dst))
    assert (first.files_transferred, first.total_size, first.literal_data) == (8, 8 * 65536, 8 * 65536)
    assert first.bytes_sent >= first.literal_data
    # one file rewritten with the same size in the same second: rsync's quick check (size + mtime) misses
    # it; the manifest comparison catches that and a --checksum pass sends it
    changed = src / "part-3.bin"
    st = changed.stat()
    changed.write_bytes(os.urandom(65536))
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns))
    missed = parse_rsync_stats(_rsync(src, dst))
    assert missed.files_transferred == 0
    assert parse_rsync_stats(_rsync(src, dst, "--checksum")).files_transferred == 1
    # a later change (the usual case): only that file is sent (locally rsync uses --whole-file: its full size)
    changed.write_bytes(os.urandom(65536))
    os.utime(changed, (st.st_atime + 10, st.st_mtime + 10))
    second = parse_rsync_stats(_rsync(src, dst))
    assert (second.files_transferred, second.transferred_size, second.literal_data) == (1, 65536, 65536)
    assert second.bytes_sent < first.bytes_sent / 4
    third = parse_rsync_stats(_rsync(src, dst))
    assert (third.files_transferred, third.literal_data) == (0, 0)


def test_stats_parsing_handles_thousands_separators_and_refuses_missing_stats() -> None:
    out = """
Number of files: 1,026 (reg: 1,024, dir: 2)
Number of created files: 0
Number of deleted files: 0
Number of regular files transferred: 11
Total file size: 1,073,741,824 bytes
Total transferred file size: 11,534,336 bytes
Literal data: 1,234,567 bytes
Matched data: 10,299,769 bytes
File list size: 0
Total bytes sent: 1,301,234
Total bytes received: 4,321
"""
    s = parse_rsync_stats(out)
    assert (s.files, s.files_transferred, s.total_size, s.literal_data, s.matched_data, s.bytes_sent, s.bytes_received) == (
        1026, 11, 1073741824, 1234567, 10299769, 1301234, 4321)
    with pytest.raises(ValueError, match="was --stats given"):
        parse_rsync_stats("sending incremental file list\n")


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "sub dir").mkdir(parents=True)
    (root / "a.bin").write_bytes(b"alpha" * 1000)
    (root / "sub dir" / "b.txt").write_text("beta\n")
    (root / "sub dir" / "é.txt").write_text("unicode\n")
    return root


def _python_manifest(root: Path) -> str:
    lines = []
    for p in sorted((str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()), key=lambda s: ("./" + s).encode()):
        lines.append(f"{hashlib.sha256((root / p).read_bytes()).hexdigest()}  ./{p}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def test_manifest_command_run_by_bash_equals_the_python_definition(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    out = subprocess.run(["sh", "-c", manifest_command(str(root))], check=True, capture_output=True, text=True).stdout
    m = parse_manifest(str(root), out)
    assert m.files == 3 and m.digest == _python_manifest(root)
    (root / "sub dir" / "b.txt").write_text("beta2\n")
    changed = parse_manifest(str(root), subprocess.run(["sh", "-c", manifest_command(str(root))], check=True,
                                                       capture_output=True, text=True).stdout)
    assert changed.digest != m.digest
    empty = tmp_path / "empty"
    empty.mkdir()
    e = parse_manifest(str(empty), subprocess.run(["sh", "-c", manifest_command(str(empty))], check=True,
                                                  capture_output=True, text=True).stdout)
    assert e.files == 0 and e.digest == hashlib.sha256(b"").hexdigest()
    r = subprocess.run(["sh", "-c", manifest_command(str(tmp_path / "missing"))], capture_output=True, text=True)
    assert r.returncode != 0


def test_incremental_manifest_command_equals_the_python_definition(tmp_path: Path) -> None:
    """What the engine runs (``python3 - PATH CACHE`` with hostmanifest.py on stdin), locally."""
    root = _tree(tmp_path)
    cmd = incremental_manifest_command(str(root), str(tmp_path / "cache"))
    assert cmd == f"python3 - {root} {tmp_path / 'cache'}"
    runs = [parse_incremental_manifest(str(root), subprocess.run(["sh", "-c", cmd], input=host_manifest_source(),
                                                                 check=True, capture_output=True, text=True).stdout)
            for _ in range(2)]
    assert {m.digest for m in runs} == {_python_manifest(root)} and runs[0].files == 3
    assert incremental_manifest_command("/d", None) == "python3 - /d -"
    with pytest.raises(ValueError):
        parse_incremental_manifest("/d", "Traceback ...")
    with pytest.raises(ValueError):
        parse_incremental_manifest("/d", '{"digest": "zz", "files": 1, "hashed_files": 0, "hashed_bytes": 0}')


def test_measure_command_and_parser(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    out = subprocess.run(["sh", "-c", measure_command(str(root))], check=True, capture_output=True, text=True).stdout
    size = parse_measure(str(root), out)
    assert size.files == 3 and size.bytes >= 5000 + 5 + 8
    assert subprocess.run(["sh", "-c", measure_command(str(tmp_path / "nope"))], capture_output=True).returncode != 0
    with pytest.raises(ValueError):
        parse_measure("/x", "du: cannot access")


def test_authorized_keys_line_is_restricted_to_the_source() -> None:
    pub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBd2 govcloud-mig-m1"
    assert authorized_keys_line(pub, "10.240.30.10") == f'from="10.240.30.10",restrict {pub}'
    until = datetime(2026, 11, 26, 14, 5, 9, tzinfo=timezone(timedelta(hours=8)))  # Beijing time
    assert authorized_keys_line(pub, "10.240.30.10", until) == (
        f'from="10.240.30.10",restrict,expiry-time="20261126060509Z" {pub}')
    for bad_ip in ("10.240.30.*", '1.2.3.4",command="sh', "host.example"):
        with pytest.raises(ValueError):
            authorized_keys_line(pub, bad_ip)
    with pytest.raises(ValueError, match="not an OpenSSH public key"):
        authorized_keys_line("garbage", "10.240.30.10")
