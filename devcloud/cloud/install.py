"""Install what the cloud needs: MariaDB + RabbitMQ from Debian, the OpenStack services in their own venv.

Idempotent and cheap when everything is there: apt is asked only for missing binaries, and pip
runs only when the install marker (hash of the requirements + the agentless driver) changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from devcloud.errors import DevcloudError
from devcloud.paths import DevcloudPaths

PKG_DIR = Path(__file__).resolve().parent.parent
REQUIREMENTS = PKG_DIR / "requirements-openstack.txt"
CONSTRAINTS = PKG_DIR / "constraints-openstack.txt"
AGENTLESS = PKG_DIR / "agentless_mech"

MARIADBD = Path("/usr/sbin/mariadbd")
RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
# binary that must exist -> Debian package providing it
APT_NEEDS = {
    MARIADBD: "mariadb-server",
    Path("/usr/bin/mariadb-install-db"): "mariadb-server",
    Path("/usr/bin/mariadb-admin"): "mariadb-client",
    RABBITMQ_SERVER: "rabbitmq-server",
}
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
_BUILD_JUNK = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")

Say = Callable[[str], None]


def missing_apt_packages() -> list[str]:
    return sorted({pkg for path, pkg in APT_NEEDS.items() if not path.exists()})


def install_apt(log: Path, say: Say) -> None:
    """apt-get install the missing packages without letting them start system-wide daemons."""
    missing = missing_apt_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise DevcloudError(f"need root to apt-get install {' '.join(missing)}")
    say(f"apt-get install {' '.join(missing)}")
    created_policy = False
    if not POLICY_RC_D.exists():
        # exit 101 = "action forbidden": invoke-rc.d will not start mariadb/rabbitmq system services
        POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
        created_policy = True
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "-y", "-q"]
    try:
        with open(log, "ab") as out:
            cmd = [*apt, "install", "--no-install-recommends", *missing]
            if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode != 0:
                # a fresh machine may have no package lists yet
                subprocess.run([*apt, "update"], stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
                if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode != 0:
                    raise DevcloudError(f"apt-get install {' '.join(missing)} failed", log)
    finally:
        if created_policy:
            POLICY_RC_D.unlink(missing_ok=True)
    still = missing_apt_packages()
    if still:
        raise DevcloudError(f"after apt-get install, still missing: {' '.join(still)}", log)


def install_marker() -> str:
    """What the venv was built from: requirements, the driver's source, the base interpreter."""
    h = hashlib.sha256(REQUIREMENTS.read_bytes() + CONSTRAINTS.read_bytes())
    for f in sorted(AGENTLESS.glob("devcloud_agentless_mech/*.py")) + [AGENTLESS / "pyproject.toml"]:
        h.update(f.relative_to(AGENTLESS).as_posix().encode() + f.read_bytes())
    h.update(sys.version.encode())
    return h.hexdigest()[:16]


def venv_ready(venv: Path) -> bool:
    marker = venv / ".devcloud-installed"
    return (
        (venv / "bin" / "python").exists()
        and (venv / "bin" / "uwsgi").exists()
        and marker.exists()
        and marker.read_text().strip() == install_marker()
    )


def base_python() -> str:
    """A real interpreter (not a venv's) to create the OpenStack venv from."""
    return getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable


def install_venv(venv: Path, log: Path, say: Say) -> None:
    """Create the venv and pip-install the pinned OpenStack services plus the agentless ML2 driver."""
    if venv_ready(venv):
        return
    verb = "updating" if (venv / "bin" / "python").exists() else "creating"
    say(f"{verb} {venv}: pip-installing the OpenStack services (log: {log})")
    with open(log, "ab") as out:

        def run(argv: list[str], what: str) -> None:
            out.write(f"\n$ {' '.join(argv)}\n".encode())
            out.flush()
            if subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                raise DevcloudError(f"{what} failed", log)

        if not (venv / "bin" / "python").exists():
            run([base_python(), "-m", "venv", str(venv)], "creating the OpenStack venv")
        pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
        run([*pip, "install", "-r", str(REQUIREMENTS)], "pip install of the OpenStack services")
        # --no-deps: the driver needs only neutron-lib/oslo.log, which neutron already pulled in.
        # Built from a copy so no build/ or egg-info lands in the source tree.
        with tempfile.TemporaryDirectory() as tmp:
            src = shutil.copytree(AGENTLESS, Path(tmp) / "agentless_mech", ignore=_BUILD_JUNK)
            run([*pip, "install", "--no-deps", "--force-reinstall", str(src)], "pip install of the agentless ML2 driver")
    (venv / ".devcloud-installed").write_text(install_marker() + "\n")


def install(paths: DevcloudPaths, say: Say) -> float:
    """Install everything missing; returns the seconds it took."""
    t0 = time.monotonic()
    paths.ensure()
    install_apt(paths.log / "install-apt.log", say)
    install_venv(paths.venv, paths.log / "install-pip.log", say)
    return time.monotonic() - t0
