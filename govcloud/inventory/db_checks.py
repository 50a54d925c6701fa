"""Checks of a host's ``databases`` beyond their schema: versions, ports and directories that clash.

Why a module of its own: a database moves by its engine's replication (docs/migration.md), so what
the inventory says about it must be exact before a migration relies on it: the major version (the
target may not be older), the port (replication and the app reach it there), and the data directory
(it must not also be copied as files by a ``data`` path).
"""

from __future__ import annotations

import re
from typing import Any

from govcloud.errors import Diagnostic
from govcloud.inventory.yamlio import PathElem, YamlDocument, format_path
from govcloud.model import DEFAULT_DB_PORT, DbEngine

#: the port the migrated application answers on (MigrateOptions.app_port): no database may take it
APP_PORT = 8080
#: the oldest major version whose replication the migration uses (slots and pg_basebackup -X stream;
#: GTID replication)
OLDEST = {"postgresql": (10,), "mariadb": (10, 0)}
_VERSION = {"postgresql": re.compile(r"^[1-9][0-9]?$"), "mariadb": re.compile(r"^[1-9][0-9]?\.[0-9]{1,2}$")}
_EXAMPLE = {"postgresql": '"15"', "mariadb": '"10.11"'}


def _under(path: str, parent: str) -> bool:
    a, b = path.rstrip("/") + "/", parent.rstrip("/") + "/"
    return a.startswith(b) or b.startswith(a)


def check_host_databases(doc: YamlDocument, hpath: tuple[PathElem, ...], host: dict[str, Any]) -> list[Diagnostic]:
    """Diagnostics for one host's ``databases`` (empty when it has none)."""
    out: list[Diagnostic] = []

    def error(path: tuple[PathElem, ...], message: str, hint: str) -> None:
        out.append(Diagnostic(doc.locate(path), format_path(path), message, hint))

    ssh_port = int(host.get("port", 22))
    ports: dict[int, str] = {}
    dirs: dict[str, str] = {}
    for k, db in enumerate(host.get("databases", [])):
        path: tuple[PathElem, ...] = (*hpath, "databases", k)
        engine: str = db["engine"]
        here = f"{engine} on {host['name']}"
        raw = db["version"]
        if isinstance(raw, float):
            error((*path, "version"), f"version {raw!r} of {here} is a number: YAML reads 10.10 as 10.1",
                  f"quote the version as you mean it, e.g. version: {_EXAMPLE[engine]}")
        else:
            text = str(raw)
            if not _VERSION[engine].match(text):
                error((*path, "version"), f"'{text}' is not a {engine} major version",
                      f"write the major version, e.g. version: {_EXAMPLE[engine]}")
            elif tuple(int(x) for x in text.split(".")) < OLDEST[engine]:
                oldest = ".".join(str(x) for x in OLDEST[engine])
                error((*path, "version"), f"{engine} {text} is too old to migrate by replication (needs {oldest} "
                      "or later)", f"upgrade {host['name']}'s {engine} first, or move it by dump and restore")
        port = int(db.get("port", DEFAULT_DB_PORT[DbEngine(engine)]))
        where = (*path, "port") if "port" in db else path
        if port == ssh_port:
            error(where, f"{here} uses port {port}, the host's SSH port", "give the database its own port")
        elif port == APP_PORT:
            error(where, f"{here} uses port {port}, the application's port", "give the database another port")
        elif port in ports:
            error(where, f"{here} uses port {port}, as does {ports[port]}", "two database servers on one host need "
                  "two ports")
        ports.setdefault(port, f"{engine} (databases[{k}])")
        data_dir: str = db["data_dir"]
        for j, files in enumerate(host.get("data", [])):
            if _under(data_dir, files):
                error((*path, "data_dir"), f"data directory {data_dir} of {here} overlaps the data path {files} "
                      f"(data[{j}])", "a database moves by replication, not as files: take its directory out of "
                      "data (or the data path out of the database's directory)")
        for other, who in dirs.items():
            if _under(data_dir, other):
                error((*path, "data_dir"), f"data directory {data_dir} overlaps {who}'s {other}",
                      "each database server has its own data directory")
        dirs.setdefault(data_dir, f"{engine} (databases[{k}])")
    return out
