"""The SSH adapter against the real site lab: two legacy hosts made from a tiny inventory and one gz-a
site host. paramiko with strict host keys (a wrong or unknown key is refused by name), data measured
and checksummed on the hosts, rsync pushed from the legacy host with a per-migration key (full copy,
then only the delta), and the key gone from the target afterwards, also when the transfer fails.

Uses its own module lab fixture (reuses a running lab; never takes down one it did not start) and
only 10.240.30.x for its legacy hosts; it removes the hosts it made.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from devcloud.lab.api import Lab
from devcloud.lab.legacy import create_legacy
from devcloud.lab.testing import lab_session, ssh_keygen
from govcloud.adapters.ssh import (
    Endpoint, Manifest, MigrationKey, RsyncSpec, RsyncStats, SSHSession, connect, fingerprint, is_authorized,
    known_hosts_lines, manifest, measure, push, transfer_key,
)
from govcloud.errors import HostKeyError, SSHError

SRC_A, SRC_B, TARGET = "sr-leg-01", "sr-leg-02", "sr-gza-t1"
LEGACY = [(SRC_A, "10.240.30.10", "/srv/sr/data"), (SRC_B, "10.240.30.11", "/srv/sr/files")]
FILES, SIZE = 8, 256 * 1024


@dataclass
class Hosts:
    lab: Lab
    ip: dict[str, str]

    def endpoint(self, name: str, known_hosts: Path | None = None) -> Endpoint:
        return Endpoint(address=self.ip[name], known_hosts=known_hosts or self.lab.known_hosts,
                        key_file=self.lab.controller_key, name=name)

    def session(self, name: str) -> SSHSession:
        return connect(self.endpoint(name))


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    with lab_session(hosts_per_site=1) as lab:
        mine = [SRC_A, SRC_B, TARGET]
        for key in mine:  # fresh data every run (create_legacy keeps existing hosts' data)
            lab.remove_host(key)
        inv = tmp_path_factory.mktemp("inventory")
        (inv / "departments").mkdir()
        doc = {"version": 1, "department": {"id": "sr", "name": "ssh/rsync test"},
               "systems": [{"id": "sr-files", "hosts": [
                   {"name": n, "address": a, "port": 22, "user": "root", "role": "app", "data": [d]} for n, a, d in LEGACY]}]}
        (inv / "departments" / "sr.yaml").write_text(json.dumps(doc))
        try:
            create_legacy(lab, inv, files=FILES, size=SIZE)
            target = lab.add_host(TARGET, "gz-a")
            yield Hosts(lab, {SRC_A: LEGACY[0][1], SRC_B: LEGACY[1][1], TARGET: target.ip})
        finally:
            if lab.is_up():
                for key in mine:
                    lab.remove_host(key)


def test_paramiko_connects_with_strict_host_keys_and_measures_on_the_host(hosts: Hosts) -> None:
    with hosts.session(SRC_A) as s:
        assert s.run("hostname").stdout.strip() == SRC_A
        size = measure(s, "/srv/sr/data")
        assert size.files == FILES + 1 and size.bytes >= FILES * SIZE  # parts + MANIFEST.txt
        with pytest.raises(SSHError, match=f"data path /srv/sr/nope does not exist or cannot be read on {SRC_A}"):
            measure(s, "/srv/sr/nope")
        r = s.run("exit 7", check=False)
        assert r.status == 7


def test_a_dropped_connection_is_reconnected_once_with_the_host_key_checked_again(hosts: Hosts) -> None:
    """The sshd process serving our connection is killed from outside (what an overloaded or restarted
    sshd does to a long migration): the next command reconnects once and runs."""
    import os
    import signal

    from devcloud.procs import wait_for

    with hosts.session(SRC_A) as s:
        first = s.client
        server_side = int(s.run("echo $PPID").stdout.strip())  # the shell's parent: sshd's session process
        os.kill(server_side, signal.SIGKILL)  # same process table: the lab's hosts are namespaces
        transport = first.get_transport()
        wait_for(lambda: transport is None or not transport.is_active(), timeout=10, what="paramiko noticing the drop")
        assert s.run("hostname").stdout.strip() == SRC_A
        assert s.client is not first


def _fp(known_hosts: Path, ip: str) -> str:
    import paramiko

    keys = paramiko.HostKeys(str(known_hosts)).lookup(ip)
    assert keys is not None, f"{ip} not in {known_hosts}"
    return fingerprint(keys["ssh-ed25519"])


def test_a_wrong_host_key_is_refused_naming_host_and_fingerprints(hosts: Hosts, tmp_path: Path) -> None:
    ip = hosts.ip[TARGET]
    real = known_hosts_lines(hosts.lab.known_hosts, ip)[0]
    real_fp = _fp(hosts.lab.known_hosts, ip)
    fake_pub = ssh_keygen(tmp_path / "fake", "impostor")
    wrong = tmp_path / "known_hosts.wrong"
    wrong.write_text(f"{ip} {' '.join(fake_pub.split()[:2])}\n")
    fake_fp = _fp(wrong, ip)
    with pytest.raises(HostKeyError) as exc:
        connect(hosts.endpoint(TARGET, wrong))
    e = exc.value
    assert (e.host, e.presented, e.expected) == (ip, real_fp, (fake_fp,))
    assert f"host key of {TARGET} ({ip}) does not match known_hosts {wrong}" in e.message
    assert f"presented {real_fp}, expected {fake_fp}" in e.message and e.exit_code == 1
    unknown = tmp_path / "known_hosts.other"
    unknown.write_text("10.240.30.250 " + " ".join(fake_pub.split()[:2]) + "\n")
    with pytest.raises(HostKeyError) as exc2:
        connect(hosts.endpoint(TARGET, unknown))
    assert exc2.value.message == (f"host {TARGET} ({ip}) is not in known_hosts {unknown}: it presented {real_fp}; "
                                  "refusing to connect")
    assert real.startswith(f"{ip} ssh-ed25519 ")


def _push(hosts: Hosts, src: str, path: str, mig_id: str, *,
          source_ip: str | None = None) -> tuple[RsyncStats, MigrationKey, Manifest, Manifest]:
    """One transfer as the migration makes it; returns (stats, key, source manifest, target manifest)."""
    with hosts.session(src) as s, hosts.session(TARGET) as t:
        with transfer_key(s, t, mig_id=mig_id, source_ip=source_ip or hosts.ip[src],
                          target_host_keys=known_hosts_lines(hosts.lab.known_hosts, hosts.ip[TARGET])) as key:
            assert is_authorized(t, key.key_body)
            spec = RsyncSpec(source_path=path, dest_host=hosts.ip[TARGET], dest_path=path, identity=key.private_path,
                             known_hosts=key.known_hosts_path)
            stats = push(s, spec)
        return stats, key, manifest(s, path), manifest(t, path)


def test_rsync_pushed_from_the_legacy_host_moves_the_data_then_only_the_delta(hosts: Hosts) -> None:
    stats, key, src_m, dst_m = _push(hosts, SRC_A, "/srv/sr/data", "t-full")
    assert src_m == dst_m and src_m.files == FILES + 1
    assert stats.files_transferred == FILES + 1 and stats.literal_data == stats.total_size >= FILES * SIZE
    assert key.authorized_line.startswith(f'from="{hosts.ip[SRC_A]}",restrict,expiry-time="')
    # the key is gone from the target and from the source
    with hosts.session(TARGET) as t:
        assert not is_authorized(t, key.key_body)
        assert "govcloud-mig" not in t.run("cat /root/.ssh/authorized_keys").stdout
    with hosts.session(SRC_A) as s:
        q = shlex.quote(key.private_path)
        assert s.run(f"ls {q} {q}.pub {shlex.quote(key.known_hosts_path)}", check=False).status != 0
        # change 4 KiB inside one 256 KiB file (the source keeps running) and move its mtime on
        s.run("dd if=/dev/urandom of=/srv/sr/data/part-0003.bin bs=4096 seek=10 count=1 conv=notrunc status=none && "
              "touch -d '+5 seconds' /srv/sr/data/part-0003.bin")
    delta, _, src2, dst2 = _push(hosts, SRC_A, "/srv/sr/data", "t-delta")
    assert src2 == dst2 and src2.digest != src_m.digest
    assert delta.files_transferred == 1 and delta.total_size == stats.total_size
    assert 4096 <= delta.literal_data < 3 * 4096 + 2048  # rsync's delta: the changed block(s), not the file
    assert delta.bytes_sent < stats.bytes_sent / 20, (stats, delta)
    print(f"\nfull: {stats.bytes_sent} bytes sent ({stats.literal_data} literal); "
          f"delta after 4 KiB change: {delta.bytes_sent} bytes sent ({delta.literal_data} literal, {delta.matched_data} matched)")


def test_the_key_only_works_from_the_source_address(hosts: Hosts) -> None:
    with pytest.raises(SSHError, match=r"rsync on sr-leg-02 .* failed \(exit (12|255)\)") as exc:  # rsync reports ssh's 255 or its own 12
        _push(hosts, SRC_B, "/srv/sr/files", "t-from", source_ip="10.240.30.99")  # authorised for another source
    assert "Permission denied" in exc.value.stderr
    with hosts.session(TARGET) as t:
        assert "govcloud-mig" not in t.run("cat /root/.ssh/authorized_keys").stdout


def test_an_expired_key_is_refused_by_the_target(hosts: Hosts) -> None:
    """The safety net for a controller killed before it could revoke: sshd itself stops accepting the key."""
    with pytest.raises(SSHError, match=r"failed \(exit (12|255)\)") as exc:
        with hosts.session(SRC_B) as s, hosts.session(TARGET) as t:
            with transfer_key(s, t, mig_id="t-expired", source_ip=hosts.ip[SRC_B], lifetime=timedelta(minutes=-1),
                              target_host_keys=known_hosts_lines(hosts.lab.known_hosts, hosts.ip[TARGET])) as key:
                push(s, RsyncSpec(source_path="/srv/sr/files", dest_host=hosts.ip[TARGET], dest_path="/srv/sr/expired",
                                  identity=key.private_path, known_hosts=key.known_hosts_path))
    assert "Permission denied" in exc.value.stderr


def test_the_key_is_removed_when_the_transfer_fails(hosts: Hosts) -> None:
    with hosts.session(SRC_B) as s, hosts.session(TARGET) as t:
        with pytest.raises(RuntimeError, match="boom"):
            with transfer_key(s, t, mig_id="t-fail", source_ip=hosts.ip[SRC_B],
                              target_host_keys=known_hosts_lines(hosts.lab.known_hosts, hosts.ip[TARGET])) as key:
                assert is_authorized(t, key.key_body)
                raise RuntimeError("boom")
        assert not is_authorized(t, key.key_body)
        assert s.run(f"ls {shlex.quote(key.private_path)}", check=False).status != 0
        # and the second legacy host's data goes across with a fresh key
    stats, _, src_m, dst_m = _push(hosts, SRC_B, "/srv/sr/files", "t-b")
    assert src_m == dst_m and stats.files_transferred == FILES + 1


def test_a_journalled_warm_sync_records_facts_and_its_audit_verifies(hosts: Hosts, tmp_path: Path) -> None:
    """The engine's pattern on real hosts: intent before the transfer, facts and outcome after; the
    audit log of that run verifies with `govcloud audit verify` (exit 0) and fails once edited (exit 1)."""
    import os
    import sqlite3
    import subprocess
    import sys

    from govcloud.adapters.journal import Journal
    from govcloud.migrate.state import Action, Event, State

    path = tmp_path / "journal.sqlite"
    plan, system, data = "sr-plan", "sr-files", "/srv/sr/data"
    with Journal(path) as j:
        run = j.start_run(plan, 1)
        with j.wave_lock(plan, 1, run):
            j.ensure_system(plan, system, 1)
            for action, event in ((Action.PREFLIGHT, Event.PREFLIGHT_PASSED), (Action.PROVISION, Event.PROVISIONED)):
                j.outcome(j.intent(run, plan, system, action), event)  # stand-ins: provisioning is another layer
            intent = j.intent(run, plan, system, Action.WARM_SYNC, {"source": SRC_A, "target": TARGET, "path": data})
            stats, _, src_m, dst_m = _push(hosts, SRC_A, data, "t-journal")
            j.record_fact(run, plan, system, "warm_sync", "bytes_sent", stats.bytes_sent)
            j.record_fact(run, plan, system, "warm_sync", "literal_data", stats.literal_data)
            j.record_fact(run, plan, system, "warm_sync", "source_manifest", {data: src_m.digest})
            j.record_fact(run, plan, system, "warm_sync", "target_manifest", {data: dst_m.digest})
            assert j.outcome(intent, Event.SYNCED, {"bytes_sent": stats.bytes_sent}).state == State.SYNCED
        j.finish_run(run, "ok")
        assert j.latest_fact(plan, system, "source_manifest") == j.latest_fact(plan, system, "target_manifest")
        assert j.open_intents() == []
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "govcloud", "--root", str(tmp_path), "audit"]
    ok = subprocess.run([*cmd, "verify", "--journal", str(path)], capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0 and "audit log intact: 10 record(s)" in ok.stdout, ok.stdout + ok.stderr
    log = subprocess.run([*cmd, "log", "--journal", str(path), "--system", system], capture_output=True, text=True,
                         env=env, timeout=60)
    assert log.returncode == 0 and "migrate.warm_sync sr-files ok" in log.stdout, log.stderr
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE audit SET detail = replace(detail, 'sr-leg-01', 'sr-leg-09') WHERE action = 'migrate.warm_sync'")  # a quiet edit
    db.close()
    bad = subprocess.run([*cmd, "verify", "--journal", str(path)], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 1 and "error: edited: record" in bad.stderr and "migrate.warm_sync sr-files" in bad.stderr, bad.stderr
