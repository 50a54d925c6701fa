"""MariaDB from Debian's package, run as our own process: loopback, datadir under the devcloud state dir."""

from __future__ import annotations

import subprocess
from pathlib import Path

from devcloud.cloud import render
from devcloud.cloud.install import MARIADBD
from devcloud.cloud.layout import CloudLayout
from devcloud.cloud.topology import MYSQL_PORT
from devcloud.errors import DevcloudError
from devcloud.procs import wait_for

NAME = "mysqld"


def cnf(lay: CloudLayout) -> Path:
    return lay.etc / "mysql" / "my.cnf"


def datadir(lay: CloudLayout) -> Path:
    return lay.state / "mysql"


def errlog(lay: CloudLayout) -> Path:
    return lay.log / "mysqld.err"


def write_config(lay: CloudLayout) -> None:
    render.write(
        cnf(lay),
        "mariadb.cnf",
        datadir=datadir(lay),
        socket=lay.run / "mysqld.sock",
        pidfile=lay.run / "mysqld.pidfile",
        port=MYSQL_PORT,
        log=errlog(lay),
    )


def init_datadir(lay: CloudLayout) -> None:
    log = lay.log / "mysql-install.log"
    with open(log, "ab") as out:
        rc = subprocess.run(
            ["mariadb-install-db", f"--defaults-file={cnf(lay)}", "--auth-root-authentication-method=socket", "--skip-test-db"],
            stdout=out,
            stderr=subprocess.STDOUT,
        ).returncode
    if rc != 0:
        raise DevcloudError("mariadb-install-db failed", log)


def start(lay: CloudLayout) -> None:
    lay.registry().start(NAME, [str(MARIADBD), f"--defaults-file={cnf(lay)}"], log=lay.log / "mysqld.out")


def ping(lay: CloudLayout) -> bool:
    return (
        subprocess.run(
            ["mariadb-admin", f"--defaults-file={cnf(lay)}", "ping"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ).returncode
        == 0
    )


def wait_ready(lay: CloudLayout, timeout: float = 60) -> None:
    reg = lay.registry()

    def ok() -> bool:
        if not reg.alive(NAME):
            raise DevcloudError("MariaDB exited during start", errlog(lay))
        return ping(lay)

    try:
        wait_for(ok, timeout=timeout, interval=0.2, what="MariaDB")
    except TimeoutError as e:
        raise DevcloudError(str(e), errlog(lay)) from None


def sql(lay: CloudLayout, statements: str) -> None:
    """Run SQL as root over the unix socket (root authenticates by socket, no password anywhere)."""
    r = subprocess.run(
        ["mariadb", f"--defaults-file={cnf(lay)}", "-uroot"], input=statements.encode(), capture_output=True
    )
    if r.returncode != 0:
        raise DevcloudError(f"MariaDB SQL failed: {r.stderr.decode(errors='replace').strip()}", errlog(lay))


def create_databases(lay: CloudLayout, databases: tuple[str, ...], password: str) -> None:
    pw = password.replace("'", "''")
    stmts = [f"CREATE USER IF NOT EXISTS 'os'@'{h}' IDENTIFIED BY '{pw}';" for h in ("127.0.0.1", "localhost")]
    stmts += [f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb3;" for db in databases]
    stmts += [f"GRANT ALL PRIVILEGES ON *.* TO 'os'@'{h}';" for h in ("127.0.0.1", "localhost")]
    stmts.append("FLUSH PRIVILEGES;")
    sql(lay, "\n".join(stmts))


def stop(lay: CloudLayout) -> None:
    """Clean shutdown (needed before snapshotting the datadir)."""
    lay.registry().stop(NAME, timeout=60)


def db_url(password: str, db: str) -> str:
    return f"mysql+pymysql://os:{password}@127.0.0.1:{MYSQL_PORT}/{db}?charset=utf8"
