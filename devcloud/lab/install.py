"""Install the lab's Debian packages (sshd, rsync, iproute2) without ever starting a system sshd."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

#: Debian packages the lab needs: sshd per host, ssh + rsync on every host (migrations push with
#: rsync from the legacy host), ip/bridge/veth, unshare/nsenter, ss and sysctl.
APT_PACKAGES: tuple[str, ...] = ("openssh-server", "openssh-client", "rsync", "iproute2", "util-linux", "procps")

#: the lab's PostgreSQL members (devcloud.lab.pg); the packages' own "main" cluster is never started here
PG_PACKAGES: tuple[str, ...] = ("postgresql-15", "postgresql-client-15")
#: BIND 9 for the lab's service-name servers (one per site; `devcloud lab dns up`) and its tools
DNS_PACKAGES: tuple[str, ...] = ("bind9", "bind9-utils", "bind9-dnsutils")

#: the real applications of the legacy machine room (devcloud.lab.legacyapps: an nginx static site,
#: DokuWiki on php-fpm) and curl for their smoke tests; installed without Recommends (no apache2)
APP_PACKAGES: tuple[str, ...] = ("nginx-light", "php8.2-fpm", "dokuwiki", "curl")

#: etcd for the highly available PostgreSQL's rings (docs/ha.md); the Debian unit is never started here
HA_PACKAGES: tuple[str, ...] = ("etcd-server", "etcd-client", "python3-venv")
#: Patroni in a virtualenv on the system Python, where the database hosts run it (Patroni runs as
#: postgres, which cannot read a Python under /root); Debian's own patroni (3.0) is too old
PATRONI_VENV = Path("/opt/govcloud/patroni")
PATRONI_REQUIREMENTS: tuple[str, ...] = ("patroni[etcd3]==4.1.5", "psycopg[binary]==3.3.9")

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def missing_packages(packages: tuple[str, ...] = APT_PACKAGES) -> list[str]:
    """Packages not installed according to dpkg."""
    missing = []
    for p in packages:
        r = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True, check=False
        )
        if "install ok installed" not in r.stdout:
            missing.append(p)
    return missing


def ensure_packages(packages: tuple[str, ...] = APT_PACKAGES, *, recommends: bool = True) -> list[str]:
    """apt-get install whatever is missing; returns what was installed.

    A temporary ``policy-rc.d`` (exit 101) stops the postinst from starting a system sshd on
    0.0.0.0:22 (or nginx on 0.0.0.0:80, php-fpm); an existing policy-rc.d is left as it is.
    """
    missing = missing_packages(packages)
    if not missing:
        return []
    made_policy = False
    if not POLICY_RC_D.exists():
        POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
        made_policy = True
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        log.info("apt-get install %s", " ".join(missing))
        upd = subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        if upd.returncode != 0:
            log.warning("apt-get update failed (rc %s); trying the install anyway", upd.returncode)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=600",
             *([] if recommends else ["--no-install-recommends"]), *missing],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    finally:
        if made_policy:
            POLICY_RC_D.unlink(missing_ok=True)
    return missing


def ensure_patroni(venv: Path = PATRONI_VENV) -> bool:
    """Create ``venv`` with Patroni's pinned release unless it is there already; True if installed now.

    Lab hosts share /opt with the machine, so one virtualenv serves every database host, as an
    estate's image or its own role would provide it (the deployment checks the version it finds)."""
    patroni = venv / "bin" / "patroni"
    wanted = PATRONI_REQUIREMENTS[0].split("==")[1]
    if patroni.exists():
        r = subprocess.run([str(patroni), "--version"], capture_output=True, text=True, check=False)
        if r.returncode == 0 and r.stdout.split()[-1:] == [wanted]:
            return False
    log.info("installing Patroni %s into %s", wanted, venv)
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *PATRONI_REQUIREMENTS],
                   check=True, stdout=subprocess.DEVNULL)
    venv.chmod(0o755)
    return True


if __name__ == "__main__":  # pragma: no cover - convenience for setup scripts
    logging.basicConfig(level=logging.INFO)
    print("installed:", ensure_packages() or "nothing (all present)")
