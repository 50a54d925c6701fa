"""PostgreSQL in the site lab, the way production runs it: primary in gz-a, sync standby in gz-b, async in st-a.

Each member is Debian's PostgreSQL 15 (``/usr/lib/postgresql/15/bin``) run as the ``postgres`` user
inside its own lab host (``pg-gza``, ``pg-gzb``, ``pg-sta``), data under that host's ``/srv/pg``,
listening on the host's lab address and its own ``/run/postgresql``. Everything is done through the
lab's out-of-band console (``Lab.exec``), so it works whether or not a site is cut; replication and
client traffic go over the lab network.

Per-member settings live in ``member.conf`` (address, name, ``synchronous_standby_names``,
``primary_conninfo``), rewritten here on every role change; ``postgresql.auto.conf`` is emptied after
every clone because ``pg_basebackup``/``pg_rewind`` copy the source's. A fenced former primary carries
``/srv/pg/fenced`` (its epoch); ``start`` refuses to start it as a primary, so it can only come back as
a standby (``rejoin``: ``pg_rewind``, falling back to a fresh ``pg_basebackup``).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shlex
import string
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devcloud import stale
from devcloud.errors import DevcloudError
from devcloud.lab import net
from devcloud.lab.api import Lab
from devcloud.lab.hosts import PIDFILE_CHECK, PIDFILE_STATES
from devcloud.procs import wait_for

log = logging.getLogger(__name__)

PG_BIN = Path("/usr/lib/postgresql/15/bin")
TEMPLATES = Path(__file__).parent / "templates" / "pg"
PORT = 5432
USER = "postgres"  # the lab uses one superuser role for clients, replication and pg_rewind (SCRAM over TCP)
DATABASE = "postgres"
BASE = "/srv/pg"  # inside the member's host
DATA = f"{BASE}/data"
PGPASS = f"{BASE}/pgpass"
LOG = f"{BASE}/postgres.log"
FENCED = f"{BASE}/fenced"
EPOCH = f"{BASE}/epoch"


class PgLabError(DevcloudError):
    """A lab PostgreSQL operation failed; the message names the member and the command's output."""


@dataclass(frozen=True)
class Member:
    """One PostgreSQL member: the datacentre it runs in and the lab host it runs on."""

    site: str
    host: str  # lab host key
    name: str  # cluster_name and application_name (no dashes: usable unquoted in synchronous_standby_names)
    mode: str  # its replication mode as a standby of the home primary: primary | sync | async


#: the home layout: primary gz-a, synchronous standby gz-b (same region), asynchronous st-a (Shantou)
MEMBERS: tuple[Member, ...] = (
    Member("gz-a", "pg-gza", "gz_a", "primary"),
    Member("gz-b", "pg-gzb", "gz_b", "sync"),
    Member("st-a", "pg-sta", "st_a", "async"),
)
HOME_PRIMARY = "gz-a"


def member(site: str) -> Member:
    for m in MEMBERS:
        if m.site == site:
            return m
    raise PgLabError(f"no lab PostgreSQL member in site {site!r} (members: {', '.join(m.site for m in MEMBERS)})")


def sync_partner(primary_site: str) -> Member | None:
    """The synchronous standby a primary in ``primary_site`` wants: the other member of its region."""
    region = primary_site.split("-")[0]
    return next((m for m in MEMBERS if m.site != primary_site and m.site.split("-")[0] == region), None)


def render(template: str, **values: str) -> str:
    return string.Template((TEMPLATES / template).read_text()).substitute(values)


@dataclass(frozen=True)
class Secret:
    user: str
    password: str

    def __repr__(self) -> str:  # never in logs or tracebacks
        return f"Secret(user={self.user!r}, password=***)"


class LabPostgres:
    """The lab's three-member PostgreSQL cluster (idempotent ``up``/``down``, ``status``, member ops)."""

    def __init__(self, lab: Lab | None = None) -> None:
        self.lab = lab or Lab()
        self.dir = self.lab.paths.lab / "pg"
        self.last_up: stale.Verdict | None = None  # what the last `up` found (fresh, adopt or clean)

    # ------------------------------------------------------------ secrets and addresses

    def secret(self) -> Secret:
        """The superuser password (generated once, 0600 under the lab directory; never logged)."""
        path = self.dir / "secret.json"
        if not path.exists():
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"user": USER, "password": secrets.token_urlsafe(24)}, f)
        d = json.loads(path.read_text())
        return Secret(str(d["user"]), str(d["password"]))

    def ip(self, site: str) -> str:
        return self.lab.host(member(site).host).ip

    def conninfo(self, site: str, *, with_password: bool = False) -> dict[str, Any]:
        """libpq keywords to reach ``site``'s member from the controller (password only when asked)."""
        sec = self.secret()
        d: dict[str, Any] = {"host": self.ip(site), "port": PORT, "user": sec.user, "dbname": DATABASE}
        if with_password:
            d["password"] = sec.password
        return d

    # ------------------------------------------------------------ running things in a member's host

    def run(self, site: str, argv: Sequence[str], *, check: bool = True, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        r = self.lab.exec(member(site).host, list(argv), timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise PgLabError(f"{site} ({member(site).host}): `{shlex.join(argv)[:200]}` failed "
                             f"(rc {r.returncode}): {(r.stderr or r.stdout).strip()[-600:]}")
        return r

    def as_pg(self, site: str, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run(site, ["runuser", "-u", "postgres", "--", "env", f"PGPASSFILE={PGPASS}", *argv], **kw)

    def psql(self, site: str, sql: str, *, check: bool = True, timeout: float = 30) -> str:
        """Run SQL on the member's own socket (the console; works while the site is cut)."""
        r = self.as_pg(site, [str(PG_BIN / "psql"), "-X", "-q", "-At", "-h", "/run/postgresql", "-p", str(PORT),
                              "-d", DATABASE, "-v", "ON_ERROR_STOP=1", "-c", sql], check=check, timeout=timeout)
        return r.stdout.strip()

    def write_file(self, site: str, path: str, text: str, *, mode: str = "600") -> None:
        """Write a file inside the member's host, owned by postgres."""
        self.run(site, ["/bin/sh", "-c", 'cat > "$1" && chown postgres:postgres "$1" && chmod "$2" "$1"', "sh",
                        path, mode], input=text)

    def read_file(self, site: str, path: str) -> str | None:
        r = self.run(site, ["cat", path], check=False)
        return r.stdout if r.returncode == 0 else None

    # ------------------------------------------------------------ state of one member

    def pid_state(self, site: str) -> str:
        """``running`` (postmaster.pid names a live postgres of this very host), ``stopped`` (no
        postmaster.pid) or ``stale`` (left by a killed server: its PID is gone, or is now another
        program's or another host's). Unlike ``pg_ctl status``, a recycled PID never counts as running;
        ``unknown`` when the check itself failed."""
        r = self.run(site, ["/bin/sh", "-c", PIDFILE_CHECK, "sh", f"{DATA}/postmaster.pid", "postgres"], check=False)
        return PIDFILE_STATES.get(r.returncode, "unknown")

    def running(self, site: str) -> bool:
        return self.pid_state(site) == "running"

    def has_data(self, site: str) -> bool:
        return self.run(site, ["test", "-f", f"{DATA}/PG_VERSION"], check=False).returncode == 0

    def is_standby_configured(self, site: str) -> bool:
        return self.run(site, ["test", "-f", f"{DATA}/standby.signal"], check=False).returncode == 0

    def fenced_epoch(self, site: str) -> int | None:
        txt = self.read_file(site, FENCED)
        if txt is None:
            return None
        try:
            return int(json.loads(txt)["epoch"])
        except (ValueError, KeyError, TypeError):
            return -1

    def epoch(self, site: str) -> int | None:
        txt = self.read_file(site, EPOCH)
        return int(txt.strip()) if txt and txt.strip().isdigit() else None

    def markers(self, site: str) -> dict[str, Any]:
        """Role and epoch markers of one member in a single console call (the controller reads them every cycle).

        ``running``, ``writable`` (running and not in recovery), ``epoch`` (the marker a promotion
        leaves), ``fenced_epoch`` (the fenced marker; -1 when unreadable).
        """
        script = ('if sh -c "$7" sh "$2/postmaster.pid" postgres; then echo running; '
                  'runuser -u postgres -- "$1/psql" -X -q -At -h /run/postgresql -p "$3" -d "$4" '
                  '-c "SELECT pg_is_in_recovery()" 2>/dev/null | sed "s/^/recovery=/"; fi; '
                  'printf "epoch=%s\\n" "$(cat "$5" 2>/dev/null)"; '
                  'printf "fenced=%s\\n" "$(tr -d "\\n" < "$6" 2>/dev/null)"')
        r = self.run(site, ["/bin/sh", "-c", script, "sh", str(PG_BIN), DATA, str(PORT), DATABASE, EPOCH, FENCED,
                            PIDFILE_CHECK], check=False, timeout=30)
        lines = r.stdout.splitlines()
        kv = dict(line.split("=", 1) for line in lines if "=" in line)
        running = "running" in lines
        epoch_txt = kv.get("epoch", "").strip()
        fenced: int | None = None
        if kv.get("fenced", "").strip():
            try:
                fenced = int(json.loads(kv["fenced"])["epoch"])
            except (ValueError, KeyError, TypeError):
                fenced = -1
        return {"site": site, "observed": r.returncode == 0, "running": running,
                "writable": running and kv.get("recovery", "").strip() == "f",
                "epoch": int(epoch_txt) if epoch_txt.isdigit() else None, "fenced_epoch": fenced}

    # ------------------------------------------------------------ member operations

    def write_member_conf(self, site: str, *, primary: str | None, sync_names: str = "") -> None:
        """member.conf for ``site``: as primary (``primary`` None) or as a standby streaming from ``primary``."""
        m = member(site)
        conninfo = ""
        if primary is not None:
            conninfo = (f"host={self.ip(primary)} port={PORT} user={USER} passfile={PGPASS} "
                        f"application_name={m.name} connect_timeout=2")
        self.write_file(site, f"{DATA}/member.conf",
                        render("member.conf", site=site, ip=self.ip(site), name=m.name, sync_names=sync_names,
                               conninfo=conninfo), mode="600")

    def _write_pgpass(self, site: str) -> None:
        sec = self.secret()
        lines = "".join(f"{self.ip(m.site)}:{PORT}:*:{sec.user}:{sec.password}\n" for m in MEMBERS)
        self.write_file(site, PGPASS, lines, mode="600")

    def _prepare_host(self, site: str) -> None:
        self.run(site, ["install", "-d", "-o", "postgres", "-g", "postgres", "-m", "700", BASE])
        self._write_pgpass(site)

    def start(self, site: str, *, timeout: float = 60) -> None:
        """Start the member (no-op when running). A fenced member without standby.signal is refused."""
        if self.running(site):
            return
        if self.fenced_epoch(site) is not None and not self.is_standby_configured(site):
            raise PgLabError(f"{site}: refusing to start a fenced former primary as a primary "
                             f"(epoch marker {FENCED}); rejoin it as a standby first")
        self.as_pg(site, [str(PG_BIN / "pg_ctl"), "-D", DATA, "-l", LOG, "-w", "-t", str(int(timeout)), "start"],
                   timeout=timeout + 30)

    def stop(self, site: str, *, mode: str = "fast", timeout: float = 60) -> bool:
        """Stop the member (``immediate``: crash-like, what fencing uses). False when it was not running."""
        if not self.running(site):
            return False
        self.as_pg(site, [str(PG_BIN / "pg_ctl"), "-D", DATA, "-m", mode, "-w", "-t", str(int(timeout)), "stop"],
                   timeout=timeout + 30)
        return True

    def fence(self, site: str, epoch: int, reason: str) -> bool:
        """Mark ``site`` fenced at ``epoch`` (written first) and stop it at once; True when it was running."""
        self.write_file(site, FENCED, json.dumps({"epoch": epoch, "at": time.time(), "reason": reason}) + "\n",
                        mode="644")
        return self.stop(site, mode="immediate")

    def promote(self, site: str, epoch: int, *, timeout: float = 30) -> bool:
        """Promote the standby in ``site`` and stamp it with ``epoch``; False when it already was a primary."""
        self.write_file(site, EPOCH, f"{epoch}\n", mode="644")
        if self.psql(site, "SELECT pg_is_in_recovery()") == "f":
            return False
        # a promoted standby must not wait for a synchronous standby it does not have yet
        self.write_member_conf(site, primary=None, sync_names="")
        self.as_pg(site, [str(PG_BIN / "pg_ctl"), "-D", DATA, "reload"])
        self.as_pg(site, [str(PG_BIN / "pg_ctl"), "-D", DATA, "-w", "-t", str(int(timeout)), "promote"],
                   timeout=timeout + 30)
        self.run(site, ["rm", "-f", FENCED])
        return True

    def set_sync(self, primary_site: str, sync_names: str) -> None:
        """The primary's ``synchronous_standby_names`` (``''``: none) and reload."""
        self.write_member_conf(primary_site, primary=None, sync_names=sync_names)
        self.as_pg(primary_site, [str(PG_BIN / "pg_ctl"), "-D", DATA, "reload"])

    def repoint(self, site: str, primary: str) -> None:
        """Point a running standby at ``primary`` (``primary_conninfo`` is reloadable) without restarting it."""
        self.write_member_conf(site, primary=primary)
        if self.running(site):
            self.as_pg(site, [str(PG_BIN / "pg_ctl"), "-D", DATA, "reload"])

    def _configure_clone(self, site: str, primary: str) -> None:
        self.write_file(site, f"{DATA}/postgresql.auto.conf", "# emptied by devcloud.lab.pg after a clone\n")
        self.write_member_conf(site, primary=primary)
        self.write_file(site, f"{DATA}/standby.signal", "", mode="600")

    def basebackup(self, site: str, primary: str, *, timeout: float = 300) -> None:
        """A fresh copy of ``primary`` in ``site`` (the data directory is replaced)."""
        self.stop(site, mode="immediate")
        self.run(site, ["rm", "-rf", DATA])
        self.as_pg(site, [str(PG_BIN / "pg_basebackup"), "-h", self.ip(primary), "-p", str(PORT), "-U", USER,
                          "-D", DATA, "-X", "stream", "-c", "fast", "-w"], timeout=timeout)
        self._configure_clone(site, primary)

    def rewind(self, site: str, primary: str, *, timeout: float = 300) -> str:
        """Make ``site`` a standby of ``primary``: pg_rewind, else a fresh base backup. Returns which one."""
        self.stop(site, mode="fast")
        # right after a promotion the new primary's pg_control still names the old timeline: checkpoint first
        self.psql(primary, "CHECKPOINT")
        method = "pg_rewind"
        if not self.has_data(site):
            method = "pg_basebackup"
        else:
            source = (f"host={self.ip(primary)} port={PORT} user={USER} dbname={DATABASE} "
                      f"passfile={PGPASS} connect_timeout=5")
            r = self.as_pg(site, [str(PG_BIN / "pg_rewind"), "-D", DATA, "--source-server", source],
                           check=False, timeout=timeout)
            if r.returncode != 0:
                log.warning("%s: pg_rewind from %s failed (%s); taking a fresh base backup", site, primary,
                            (r.stderr or r.stdout).strip()[-300:])
                method = "pg_basebackup"
        if method == "pg_basebackup":
            self.basebackup(site, primary, timeout=timeout)
        else:
            self._configure_clone(site, primary)
        return method

    def rejoin(self, site: str, primary: str, *, timeout: float = 300) -> str:
        """``site`` back as a streaming standby of ``primary`` (rewind or re-seed), marker cleared."""
        method = self.rewind(site, primary, timeout=timeout)
        self.start(site)
        self.run(site, ["rm", "-f", FENCED])
        self.wait_streaming(primary, [site])
        return method

    def wait_streaming(self, primary: str, standbys: Sequence[str], *, timeout: float = 60) -> None:
        names = {member(s).name for s in standbys}

        def ok() -> bool:
            out = self.psql(primary, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
                            check=False)
            return names <= set(out.split())

        wait_for(ok, timeout=timeout, interval=0.2, what=f"{', '.join(sorted(standbys))} streaming from {primary}")

    # ------------------------------------------------------------ the cluster

    def primary_site(self) -> str | None:
        """The running, writable member (None when none is)."""
        for m in MEMBERS:
            if self.running(m.site) and self.psql(m.site, "SELECT pg_is_in_recovery()", check=False) == "f":
                return m.site
        return None

    def up(self, *, timeout: float = 120, say: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Create and start the cluster in its home layout; an existing healthy cluster is left as it is.

        A cluster a killed run left (a member's postmaster.pid naming a dead or foreign process) is
        stale: said in one line (``say``, default: a warning in the log), taken down, its data purged
        (mid-write, and perhaps half a failover drill), and built fresh. ``self.last_up`` tells which.
        """
        if not self.lab.is_up():
            raise PgLabError("the lab is not up (run `devcloud lab up`)")
        from devcloud.lab.install import PG_PACKAGES, ensure_packages

        ensure_packages(PG_PACKAGES)  # policy-rc.d keeps apt from starting the packages' own cluster
        sec = self.secret()
        for m in MEMBERS:
            self.lab.add_host(m.host, m.site)  # idempotent: returns the existing identical host
        self.last_up = stale.judge_members("pg", {m.site: self.pid_state(m.site) for m in MEMBERS},
                                           pidfile="postmaster.pid", process="postgres")
        if self.last_up.action == stale.CLEAN:
            self.down(purge=True)
            for m in MEMBERS:  # the socket's lock file names the dead postmaster too: a new one refuses to start
                self.run(m.site, ["/bin/sh", "-c", "rm -f /run/postgresql/.s.PGSQL.*"])
            (say or log.warning)(self.last_up.line)
        for m in MEMBERS:
            self._prepare_host(m.site)
        home = HOME_PRIMARY
        primary = self.primary_site()
        if primary is None and not self.has_data(home):
            self._initdb(home, sec)
        if primary is None:
            primary = home
            self.start(home)
        for m in MEMBERS:
            if m.site == primary:
                continue
            if not self.has_data(m.site):
                self.basebackup(m.site, primary)
            self.start(m.site)
        partner = sync_partner(primary)
        want_sync = partner.name if partner is not None else ""
        cur = self.psql(primary, "SHOW synchronous_standby_names")
        if cur != want_sync:
            self.set_sync(primary, want_sync)
        self.wait_streaming(primary, [m.site for m in MEMBERS if m.site != primary], timeout=timeout)
        return self.status()

    def _initdb(self, site: str, sec: Secret) -> None:
        pwfile = f"{BASE}/initpw"
        self.write_file(site, pwfile, sec.password + "\n")
        try:
            self.as_pg(site, [str(PG_BIN / "initdb"), "-D", DATA, "-U", USER, "--data-checksums",
                              "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                              "--encoding=UTF8", "--locale=C.UTF-8"])
        finally:
            self.run(site, ["rm", "-f", pwfile])
        self.write_file(site, f"{DATA}/govcloud.conf", (TEMPLATES / "govcloud.conf").read_text(), mode="600")
        self.write_file(site, f"{DATA}/pg_hba.conf",
                        render("pg_hba.conf", user=USER, lab_net=str(net.LAB_NET)), mode="600")
        self.run(site, ["/bin/sh", "-c", f"echo \"include 'govcloud.conf'\" >> {DATA}/postgresql.conf"])
        self.write_member_conf(site, primary=None, sync_names="")
        self.write_file(site, EPOCH, "1\n", mode="644")

    def down(self, *, purge: bool = False) -> list[str]:
        """Stop every member (``purge``: also delete the data). Idempotent; returns the members stopped."""
        stopped = []
        for m in MEMBERS:
            try:
                self.lab.host(m.host)
            except net.LabError:
                continue
            if self.stop(m.site, mode="fast"):
                stopped.append(m.site)
            if purge:
                self.run(m.site, ["rm", "-rf", BASE])
        return stopped

    def status(self) -> dict[str, Any]:
        """Per member: host, address, running, role, epoch/fenced markers; the primary's replication rows."""
        members: list[dict[str, Any]] = []
        primary = None
        for m in MEMBERS:
            row: dict[str, Any] = {"site": m.site, "host": m.host, "name": m.name, "home_mode": m.mode}
            try:
                row["ip"] = self.ip(m.site)
            except net.LabError:
                row.update(ip=None, running=False, role="absent")
                members.append(row)
                continue
            row["running"] = self.running(m.site)
            row["fenced_epoch"] = self.fenced_epoch(m.site)
            row["epoch"] = self.epoch(m.site)
            if row["running"]:
                rec = self.psql(m.site, "SELECT pg_is_in_recovery()", check=False)
                row["role"] = "standby" if rec == "t" else "primary" if rec == "f" else "unknown"
                if row["role"] == "primary":
                    primary = m.site
            else:
                row["role"] = "stopped"
            members.append(row)
        replication: list[dict[str, Any]] = []
        if primary is not None:
            out = self.psql(primary, "SELECT application_name, state, sync_state, "
                                     "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), -1)::bigint "
                                     "FROM pg_stat_replication ORDER BY 1", check=False)
            for line in out.splitlines():
                name, state, sync, lag = line.split("|")
                replication.append({"name": name, "state": state, "sync_state": sync, "lag_bytes": int(lag)})
        epoch = next((m.get("epoch") for m in members if m["site"] == primary), None)
        return {"primary": primary, "epoch": epoch, "members": members, "replication": replication}


def describe(st: dict[str, Any]) -> str:
    """One line in the words `govcloud failover status` uses: ``pg: primary gz-a at epoch 1``."""
    if st.get("primary") is None:
        return "pg: no writable member"
    return f"pg: primary {st['primary']} at epoch {st.get('epoch') if st.get('epoch') is not None else '?'}"
