"""pytest helpers for tests that use the site lab (and, optionally, the devcloud's OpenStack).

    from devcloud.lab.testing import lab_session, require

    @pytest.fixture(scope="session")
    def lab():
        with lab_session(hosts_per_site=1) as lb:   # reuses a running lab, else starts + stops one
            yield lb
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from devcloud.lab.api import Lab
from devcloud.paths import DevcloudPaths
from devcloud.procs import wait_for
from devcloud.testing import require


def lab_prerequisites() -> list[str]:
    """What this machine lacks to run the lab (root, sshd, ip netns, unshare, rsync)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root")
    for exe in ("/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/ssh-keygen"):
        if not os.access(exe, os.X_OK):
            missing.append(exe)
    for exe in ("ip", "unshare", "nsenter", "rsync", "ss"):
        if shutil.which(exe) is None:
            missing.append(exe)
    return missing


def say_stale(line: str) -> None:
    """Where a session helper reports what an `up` found stale (see ``devcloud.testing.report_stale``)."""
    from devcloud.testing import report_stale

    report_stale(line)


@contextlib.contextmanager
def lab_session(paths: DevcloudPaths | None = None, hosts_per_site: int = 1) -> Iterator[Lab]:
    """The lab for a test session: reuse a live one (left running), else start and stop one.

    A lab a killed run left (state file and namespaces, its hosts' sshd dead) is not reused: `up`
    cleans it (one line on stderr) and builds a fresh one, which this session then owns.
    ``lab.started_here`` tells whether this session owns the lab (and takes it down at the end).
    """
    missing = lab_prerequisites()
    require(not missing, f"lab prerequisites missing: {', '.join(missing)} (devcloud.lab.install.ensure_packages)")
    lb = Lab(paths)
    try:
        lb.up(hosts_per_site, say=say_stale)
    except BaseException:
        if lb.last_up is not None and lb.last_up.owned:
            lb.down()  # half built by this session: leave nothing
        raise
    started = lb.last_up is not None and lb.last_up.owned
    lb.started_here = started
    try:
        yield lb
    finally:
        if started:
            lb.down()


def cloud_available(paths: DevcloudPaths | None = None, timeout: float = 2.0) -> bool:
    """clouds.yaml written and Keystone answering on 127.0.0.1:5000 (the cloud helper's devcloud)."""
    p = paths or DevcloudPaths.from_env()
    if not p.clouds_yaml.exists():
        return False
    try:
        with socket.create_connection(("127.0.0.1", 5000), timeout=timeout):
            return True
    except OSError:
        return False


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET without any proxy from the environment (lab addresses must never go to a proxy)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ssh(lab: Lab, host: str, *, key: Path | None = None, timeout: float = 30.0) -> None:
    """Poll until ``ssh host true`` succeeds with strict host keys."""
    wait_for(lambda: lab.ssh(host, "true", key=key, timeout=10).returncode == 0, timeout=timeout,
             interval=0.2, what=f"ssh to lab host {host}")


def leftovers() -> dict[str, Any]:
    """What of the lab still exists on the machine: namespaces, root links, routes (should be empty)."""
    from devcloud.lab import net

    return {
        "netns": net.lab_netns(),
        "links": net.root_lab_links(),
        "routes": [f"{r.get('type', 'unicast')} {r.get('dst')} {r.get('dev', '')}".strip() for r in net.root_lab_routes()],
    }


def ssh_keygen(path: Path, comment: str = "test") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def require_watcher(lab: Lab) -> None:
    """Tests that boot Nova servers rely on the lab's reconcile watcher (started by `lab up`) to turn
    them into SSH hosts, as a real cloud would make them reachable."""
    from devcloud.testing import require

    require(bool((lab.status().get("watcher") or {}).get("pid")),
            "the lab's reconcile watcher is not running (`devcloud lab up` starts it)")
