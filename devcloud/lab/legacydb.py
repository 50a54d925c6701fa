"""The database servers of legacy hosts (issue 13): Debian's PostgreSQL 15 and MariaDB 10.11 in the host.

A legacy host whose inventory entry declares ``databases`` runs each server in its own namespaces, on
its own address (and the namespace's loopback, where its sample app connects), with its data in the
declared directory, which must be under ``/srv`` (the host's own data root). Each server gets the
application's database ``app`` with a ``ledger`` table, and an ``app`` user whose password is
generated per host and kept 0600 in ``/srv/app/db-<engine>-<port>.secret`` (the sample app reads it;
nothing prints it). Replication settings are on from the start (``wal_level=replica``; binary log
with GTIDs), as a production server that is to be migrated by replication would have them.

Everything runs through the lab's console (``Lab.exec``); servers are stopped by the PID they wrote.
"""

from __future__ import annotations

import logging
import secrets
import shlex
import string
import subprocess
from dataclasses import dataclass
from pathlib import PurePosixPath

from devcloud.errors import DevcloudError
from devcloud.lab.api import Lab
from devcloud.lab.hosts import PIDFILE_CHECK, PIDFILE_STATES
from devcloud.procs import wait_for

log = logging.getLogger(__name__)

PG_BIN = "/usr/lib/postgresql/15/bin"
MARIADB = "/usr/sbin/mariadbd"
APP_DB = "app"
APP_USER = "app"
DEFAULT_PORT = {"postgresql": 5432, "mariadb": 3306}
LEDGER_DDL = "CREATE TABLE IF NOT EXISTS ledger (id BIGINT PRIMARY KEY, payload VARCHAR(64) NOT NULL)"


class LegacyDbError(DevcloudError):
    """A legacy database server could not be set up; the message names the host and the output."""


@dataclass(frozen=True)
class DbSpec:
    """One declared database server (the inventory's ``hosts[].databases[]``)."""

    engine: str  # postgresql | mariadb
    port: int
    data_dir: str
    version: str

    @property
    def key(self) -> str:
        return f"{self.engine}-{self.port}"

    @property
    def base(self) -> str:
        """Where the server's runtime files live: beside its data directory."""
        return str(PurePosixPath(self.data_dir).parent / f".{PurePosixPath(self.data_dir).name}-run")


def secret_path(db: DbSpec) -> str:
    return f"/srv/app/db-{db.key}.secret"


class LegacyDatabases:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def run(self, host: str, argv: list[str], *, check: bool = True, input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        r = self.lab.exec(host, argv, input=input, timeout=timeout)
        if check and r.returncode != 0:
            raise LegacyDbError(f"{host}: `{shlex.join(argv)[:200]}` failed (rc {r.returncode}): "
                                f"{(r.stderr or r.stdout).strip()[-600:]}")
        return r

    def _write(self, host: str, path: str, text: str, mode: str = "600", owner: str = "root") -> None:
        self.lab.write_file(host, path, text, mode=mode, owner=owner)

    def password(self, host: str, db: DbSpec) -> str:
        """The app user's password: generated once per host and server, kept 0600 in the host."""
        r = self.run(host, ["cat", secret_path(db)], check=False)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
        pw = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24))
        self.run(host, ["mkdir", "-p", "/srv/app"])
        self._write(host, secret_path(db), pw + "\n")
        return pw

    def up(self, host: str, address: str, db: DbSpec, *, timeout: float = 60) -> None:
        """Create (once), start (when stopped) and prepare the server; idempotent."""
        if not db.data_dir.startswith("/srv/"):
            raise LegacyDbError(f"{host}: data directory {db.data_dir} of {db.engine} is not under /srv "
                                "(the host's own data root)")
        pw = self.password(host, db)
        if db.engine == "postgresql":
            self._pg_up(host, address, db, pw, timeout)
        elif db.engine == "mariadb":
            self._maria_up(host, address, db, pw, timeout)
        else:
            raise LegacyDbError(f"{host}: unknown engine {db.engine!r}")

    # ------------------------------------------------------------ PostgreSQL
    def _as_pg(self, host: str, argv: list[str], *, input: str | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run(host, ["runuser", "-u", "postgres", "--", *argv], input=input, timeout=timeout)

    def _pg_state(self, host: str, db: DbSpec) -> str:
        """running | stopped | stale (postmaster.pid of a killed server; a recycled PID never counts)."""
        r = self.run(host, ["/bin/sh", "-c", PIDFILE_CHECK, "sh", f"{db.data_dir}/postmaster.pid", "postgres"],
                     check=False)
        return PIDFILE_STATES.get(r.returncode, "unknown")

    def _pg_up(self, host: str, address: str, db: DbSpec, pw: str, timeout: float) -> None:
        run_dir = db.base
        self.run(host, ["install", "-d", "-o", "postgres", "-g", "postgres", "-m", "700", db.data_dir, run_dir])
        if self.run(host, ["test", "-f", f"{db.data_dir}/PG_VERSION"], check=False).returncode != 0:
            pwfile = f"{run_dir}/initpw"
            self._write(host, pwfile, pw + "\n", owner="postgres")
            try:
                self._as_pg(host, [f"{PG_BIN}/initdb", "-D", db.data_dir, "-U", "postgres", "--auth-local=peer",
                                   "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"])
            finally:
                self.run(host, ["rm", "-f", pwfile])
            conf = (f"listen_addresses = '{address},127.0.0.1'\nport = {db.port}\n"
                    f"unix_socket_directories = '{run_dir}'\nwal_level = replica\nmax_wal_senders = 10\n"
                    "max_replication_slots = 10\nwal_keep_size = '256MB'\n")
            self._write(host, f"{db.data_dir}/govcloud.conf", conf, owner="postgres")
            self.run(host, ["/bin/sh", "-c", f"echo \"include 'govcloud.conf'\" >> {db.data_dir}/postgresql.conf"])
        state = self._pg_state(host, db)
        if state == "stale":  # killed: PostgreSQL recovers the data; its lock files would name a foreign PID
            log.warning("%s: %s was killed (stale postmaster.pid): starting it again", host, db.key)
            self.run(host, ["/bin/sh", "-c", 'rm -f "$1/postmaster.pid" "$2"/.s.PGSQL.*', "sh", db.data_dir, run_dir])
        if state != "running":
            self._as_pg(host, [f"{PG_BIN}/pg_ctl", "-D", db.data_dir, "-l", f"{run_dir}/postgres.log", "-w", "-t",
                               str(int(timeout)), "start"], timeout=timeout + 30)
        sql = (f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_USER}') THEN "
               f"CREATE ROLE {APP_USER} LOGIN; END IF; END $$;\n"
               f"ALTER ROLE {APP_USER} PASSWORD '{pw}';\n")
        self._as_pg(host, [f"{PG_BIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", run_dir, "-p",
                           str(db.port), "-d", "postgres"], input=sql)
        have = self._as_pg(host, [f"{PG_BIN}/psql", "-X", "-tA", "-h", run_dir, "-p", str(db.port), "-d", "postgres", "-c",
                                  f"SELECT 1 FROM pg_database WHERE datname = '{APP_DB}'"]).stdout.strip()
        if have != "1":
            self._as_pg(host, [f"{PG_BIN}/psql", "-X", "-q", "-h", run_dir, "-p", str(db.port), "-d", "postgres", "-c",
                               f"CREATE DATABASE {APP_DB} OWNER {APP_USER}"])
        self._as_pg(host, [f"{PG_BIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", run_dir, "-p", str(db.port), "-d",
                           APP_DB, "-c", f"SET ROLE {APP_USER}; {LEDGER_DDL}"])

    def pg_rows(self, host: str, db: DbSpec) -> set[int]:
        out = self._as_pg(host, [f"{PG_BIN}/psql", "-X", "-tA", "-h", db.base, "-p", str(db.port), "-d", APP_DB, "-c",
                                 "SELECT id FROM ledger"]).stdout
        return {int(x) for x in out.split()}

    # ------------------------------------------------------------ MariaDB
    def _maria_socket(self, db: DbSpec) -> str:
        return f"{db.base}/mysqld.sock"

    def _maria_running(self, host: str, db: DbSpec) -> bool:
        r = self.run(host, ["mariadb-admin", f"--socket={self._maria_socket(db)}", "-uroot", "ping"], check=False)
        return r.returncode == 0

    def _maria_up(self, host: str, address: str, db: DbSpec, pw: str, timeout: float) -> None:
        self.run(host, ["install", "-d", "-m", "700", db.data_dir, db.base])
        cnf = (f"[mariadbd]\ndatadir = {db.data_dir}\nsocket = {self._maria_socket(db)}\nport = {db.port}\n"
               f"bind-address = {address},127.0.0.1\npid-file = {db.base}/mariadbd.pid\n"
               f"log-error = {db.base}/mariadbd.log\nuser = root\nskip-name-resolve\n"
               f"server-id = {int(address.split('.')[-1]) * 100 + db.port % 100}\nlog-bin = {db.base}/binlog\n"
               "binlog-format = ROW\ngtid-strict-mode = 1\nlog-slave-updates = 1\ninnodb-buffer-pool-size = 32M\n")
        self._write(host, f"{db.base}/my.cnf", cnf, mode="644")
        if self.run(host, ["test", "-d", f"{db.data_dir}/mysql"], check=False).returncode != 0:
            self.run(host, ["mariadb-install-db", f"--defaults-file={db.base}/my.cnf", "--auth-root-authentication-method=socket",
                            "--skip-test-db"], timeout=180)
        if not self._maria_running(host, db):
            self.run(host, ["/bin/sh", "-c", 'setsid -f "$1" --defaults-file="$2" >/dev/null 2>&1 </dev/null', "sh",
                            MARIADB, f"{db.base}/my.cnf"])
            try:
                wait_for(lambda: self._maria_running(host, db), timeout=timeout, interval=0.2,
                         what=f"mariadbd on {host} port {db.port}")
            except TimeoutError as exc:
                tail = self.run(host, ["tail", "-5", f"{db.base}/mariadbd.log"], check=False).stdout
                raise LegacyDbError(f"{host}: {exc}: {tail.strip()[-400:]}") from None
        sql = (f"CREATE DATABASE IF NOT EXISTS {APP_DB};\n"
               f"CREATE USER IF NOT EXISTS '{APP_USER}'@'127.0.0.1' IDENTIFIED BY '{pw}';\n"
               f"ALTER USER '{APP_USER}'@'127.0.0.1' IDENTIFIED BY '{pw}';\n"
               f"GRANT ALL ON {APP_DB}.* TO '{APP_USER}'@'127.0.0.1';\n"
               f"USE {APP_DB};\n{LEDGER_DDL};\n")
        self.run(host, ["mariadb", f"--socket={self._maria_socket(db)}", "-uroot"], input=sql)

    def maria_rows(self, host: str, db: DbSpec) -> set[int]:
        out = self.run(host, ["mariadb", f"--socket={self._maria_socket(db)}", "-uroot", "-N", "-B", APP_DB, "-e",
                              "SELECT id FROM ledger"]).stdout
        return {int(x) for x in out.split()}

    def rows(self, host: str, db: DbSpec) -> set[int]:
        """The ledger ids the server holds (what the app's acknowledged commits are checked against)."""
        return self.pg_rows(host, db) if db.engine == "postgresql" else self.maria_rows(host, db)
