"""pytest helpers: bring the devcloud up once per session (or reuse a running one) and tear down only what we started.

Wiring in tests/conftest.py::

    from devcloud.testing import CloudSession, cloud_session

    @pytest.fixture(scope="session")
    def devcloud_cloud() -> Iterator[CloudSession]:
        yield from cloud_session()
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devcloud.paths import DevcloudPaths

UP_TIMEOUT = 900.0  # a cold install + first up takes ~2.5 min here; leave room on a slow machine


STALE_REPORTS: list[str] = []  # what the session's `up`s found stale; pytest prints them in its summary


def report_stale(line: str) -> None:
    """One `up`'s line about a stack a killed run left: on stderr now, and kept for the run's summary
    (pytest captures a fixture's stderr, so the summary is where a green run still shows it)."""
    STALE_REPORTS.append(line)
    print(line, file=sys.stderr, flush=True)


_CLAIMED: set[Path] = set()  # clouds (by DEVCLOUD_HOME) a test of this session built: the session owns them


def claim_cloud(paths: DevcloudPaths) -> None:
    """Mark the cloud at ``paths`` as this session's: a test builds it (its `up` is what it checks), and
    the session fixture that adopts it then takes it down at the end, as if it had started it."""
    _CLAIMED.add(paths.home)


class CloudUnavailable(RuntimeError):
    """The cloud could not be brought up (missing prerequisite, install or start failure)."""


def _devcloud(args: Sequence[str], paths: DevcloudPaths, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``python -m devcloud ARGS`` in a child (its services then outlive nothing of the test process)."""
    env = {**os.environ, "DEVCLOUD_HOME": str(paths.home)}
    pkg_parent = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, "-m", "devcloud", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def cloud_ready(paths: DevcloudPaths | None = None) -> bool:
    """True if a READY cloud is running (``devcloud status`` exits 0)."""
    from devcloud.cloud.stack import status

    return status(paths or DevcloudPaths.from_env()).ready


def ensure_cloud(paths: DevcloudPaths | None = None, *, timeout: float = UP_TIMEOUT) -> tuple[Path, bool]:
    """Reuse a READY cloud or run ``devcloud up`` (which installs what is missing).

    Returns ``(clouds.yaml path, started)``; ``started`` is True only if this call brought it up:
    from nothing, or over a dead or broken cloud an earlier run left (``up`` takes that down first
    and says so in one line, repeated here on stderr). A READY cloud is reused and left running.
    Raises CloudUnavailable with devcloud's own message (what failed, which log) otherwise.
    """
    paths = paths or DevcloudPaths.from_env()
    if cloud_ready(paths):
        return paths.clouds_yaml, paths.home in _CLAIMED
    r = _devcloud(["up"], paths, timeout)
    for line in r.stdout.splitlines():
        if line.startswith("cloud: stale "):
            report_stale(line)
    if r.returncode != 0:
        raise CloudUnavailable(f"devcloud up failed (exit {r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    # another session may have brought it up while this one waited for the lock: then it is not ours
    return paths.clouds_yaml, "already READY" not in r.stdout


def teardown_cloud(started: bool, paths: DevcloudPaths | None = None, *, timeout: float = 300) -> None:
    """``devcloud down`` if this session started the cloud (DEVCLOUD_KEEP=1 keeps it for the next run)."""
    if not started or os.environ.get("DEVCLOUD_KEEP") == "1":
        return
    r = _devcloud(["down"], paths or DevcloudPaths.from_env(), timeout)
    if r.returncode != 0:
        raise RuntimeError(f"devcloud down failed:\n{r.stdout}{r.stderr}")


@dataclass(frozen=True)
class CloudSession:
    clouds_yaml: Path
    started: bool
    paths: DevcloudPaths

    @property
    def openstack_cli(self) -> Path:
        """The `openstack` CLI from the OpenStack venv."""
        return self.paths.venv / "bin" / "openstack"

    @property
    def disposable(self) -> bool:
        """True if this session started the cloud and stops it at the end (which discards its state).

        ``devcloud up`` always builds a fresh cloud, so what a test leaves in a disposable cloud is
        gone with it. A test that runs after every other user of the cloud (``cloud_last``) may skip
        deleting its objects one API call at a time; a developer's running cloud is never disposable.
        """
        return self.started and os.environ.get("DEVCLOUD_KEEP") != "1"

    def env(self) -> dict[str, str]:
        """Environment for openstacksdk / the CLI: this clouds.yaml, no stray OS_* variables."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env["OS_CLIENT_CONFIG_FILE"] = str(self.clouds_yaml)
        return env

    def connect(self, cloud: str) -> Any:  # openstack.connection.Connection
        """openstacksdk connection from the test's interpreter (needs openstacksdk installed there)."""
        from openstack.config import OpenStackConfig
        from openstack.connection import Connection

        cfg = OpenStackConfig(config_files=[str(self.clouds_yaml)], load_envvars=False)
        return Connection(config=cfg.get_one(cloud=cloud))


def missing_prerequisite(msg: str) -> None:
    """The common rule: in CI a missing prerequisite fails, elsewhere it skips."""
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(f"prerequisite missing (CI=true): {msg}")
    pytest.skip(msg)


def require(ok: bool, reason: str) -> None:
    """``missing_prerequisite(reason)`` unless ``ok``."""
    if not ok:
        missing_prerequisite(reason)


def cloud_session(paths: DevcloudPaths | None = None) -> Iterator[CloudSession]:
    """Generator body for a session fixture: yields a CloudSession, tears down what it started."""
    paths = paths or DevcloudPaths.from_env()
    if os.geteuid() != 0:
        missing_prerequisite("devcloud needs root (apt, MariaDB/RabbitMQ state under DEVCLOUD_HOME)")
    try:
        clouds_yaml, started = ensure_cloud(paths)
    except (CloudUnavailable, subprocess.TimeoutExpired) as e:
        missing_prerequisite(str(e))
        raise  # unreachable: missing_prerequisite raises
    try:
        yield CloudSession(clouds_yaml, started, paths)
    finally:
        teardown_cloud(started, paths)


def discard_zones(session: CloudSession, prefix: str) -> None:
    """At a module's end: the landing zones of the ``<prefix>-...`` departments go, unless the cloud is
    this session's (disposable), whose `devcloud down` discards them with everything else.

    Deleting them one API call at a time cost 10-15 s per module. Servers are not left to it: the lab
    makes hosts of them, so each module deletes its own first.
    """
    if not session.disposable:
        purge_prefixed(session.connect, prefix)


def purge_prefixed(connect: Any, prefix: str) -> None:
    """Delete every object a test or benchmark made for departments named ``<prefix>-...`` in both regions.

    ``connect(cloud)`` returns an openstacksdk connection. Servers and ports go by ``<prefix>``,
    landing-zone objects by ``gov-<prefix>-`` (routers lose their interfaces first, networks their
    ports). Untagged objects are included on purpose: a peer tool's objects carry no tags.
    """
    want = f"gov-{prefix}-"
    for cloud in ("gz", "st"):
        c = connect(cloud)
        for s in c.compute.servers(all_projects=True):
            if s.name.startswith((prefix, want)):
                c.compute.delete_server(s, force=True)
        for r in c.network.routers():
            if r.name.startswith(want):
                for p in c.network.ports(device_id=r.id, device_owner="network:router_interface"):
                    for ip in p.fixed_ips:
                        c.network.remove_interface_from_router(r, subnet=ip["subnet_id"])
                c.network.delete_router(r)
        for p in c.network.ports():
            if (p.name or "").startswith((prefix, want)):
                c.network.delete_port(p)
        for n in c.network.networks():
            if n.name.startswith(want):
                for p in c.network.ports(network_id=n.id):
                    c.network.delete_port(p)
                c.network.delete_network(n)
        for g in c.network.security_groups():
            if g.name.startswith(want):
                c.network.delete_security_group(g)
        for k in c.compute.keypairs():
            if k.name.startswith(want):
                c.compute.delete_keypair(k)
        for g in c.compute.server_groups(all_projects=True):
            if g.name.startswith(want):
                c.compute.delete_server_group(g)
    c = connect("gz")
    for p in c.identity.projects():
        if p.name.startswith(want):
            c.identity.delete_project(p)
