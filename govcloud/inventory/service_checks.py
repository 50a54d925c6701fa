"""Checks of a system's services, hooks and ready check beyond their schema: names, ports, paths, references.

Why a module of its own: a migration stops, copies, starts and checks each declared service and runs
each hook on the host it names (docs/inventory.md, "Services"). A clash found there would be found
in the middle of a cutover window; found here, it is a line to fix before planning. The schema has
already checked each value's shape (absolute paths, unit names, port ranges); these rules relate
values to each other: two services binding one port, a hook on a host the system does not have.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from govcloud.errors import Diagnostic, Location
from govcloud.inventory.yamlio import PathElem, YamlDocument, format_path
from govcloud.model import DEFAULT_DB_PORT, DbEngine
from govcloud.model.services import (
    DEFAULT_CHECK_DEADLINE_S,
    DEFAULT_CHECK_INTERVAL_S,
    HookPoint,
)

NodePath = tuple[PathElem, ...]


@dataclass
class _Out:
    doc: YamlDocument
    items: list[Diagnostic] = field(default_factory=list)

    def error(self, path: NodePath, message: str, hint: str) -> None:
        self.items.append(Diagnostic(self.doc.locate(path), format_path(path), message, hint))

    def where(self, path: NodePath) -> Location:
        return self.doc.locate(path)


@dataclass(frozen=True)
class _Claim:
    """Who holds a port on a host, and where the inventory says so."""

    owner: str  # "service 'nginx'", "postgresql (databases[0])", "SSH"
    service: str | None  # the service's name, None for SSH and databases
    path: NodePath


def _under(path: str, parent: str) -> bool:
    """True if ``path`` is ``parent`` or inside it (by whole components)."""
    a, b = path.rstrip("/") + "/", parent.rstrip("/") + "/"
    return a.startswith(b)


def _overlap(a: str, b: str) -> bool:
    return _under(a, b) or _under(b, a)


def check_system_services(doc: YamlDocument, spath: NodePath, system: dict[str, Any]) -> list[Diagnostic]:
    """Diagnostics for one schema-valid system's services, hooks and ready check (empty when it has none)."""
    out = _Out(doc)
    for j, host in enumerate(system.get("hosts", [])):
        hpath: NodePath = (*spath, "hosts", j)
        _check_names(out, hpath, host)
        _check_ports(out, hpath, host)
        for k, service in enumerate(host.get("services", [])):
            _check_service(out, (*hpath, "services", k), host, service)
    _check_hooks(out, spath, system)
    _check_ready(out, spath, system)
    return out.items


def _check_names(out: _Out, hpath: NodePath, host: dict[str, Any]) -> None:
    seen: dict[str, NodePath] = {}
    for k, service in enumerate(host.get("services", [])):
        path: NodePath = (*hpath, "services", k, "name")
        name: str = service["name"]
        if name in seen:
            out.error(path, f"service '{name}' is declared twice on {host['name']} (first at {out.where(seen[name])})",
                      "declare each service once per host: merge the two entries or rename one")
        seen.setdefault(name, path)


def _listen_ports(spath: NodePath, service: dict[str, Any]) -> list[tuple[int, NodePath]]:
    """The ports a service binds, each once, with the place that first claims it (``ports`` before checks)."""
    found: dict[int, NodePath] = {}
    for i, port in enumerate(service.get("ports", [])):
        found.setdefault(int(port), (*spath, "ports", i))
    for c, check in enumerate(service.get("checks", [])):
        for kind in ("http", "tcp"):
            if kind in check:
                found.setdefault(int(check[kind]["port"]), (*spath, "checks", c, kind, "port"))
    return sorted(found.items())


def _check_ports(out: _Out, hpath: NodePath, host: dict[str, Any]) -> None:
    """No two services, nor a service and a database or SSH, listen on one port of the host."""
    claims: dict[int, _Claim] = {int(host.get("port", 22)): _Claim("SSH", None, (*hpath, "port"))}
    for k, db in enumerate(host.get("databases", [])):
        port = int(db.get("port", DEFAULT_DB_PORT[DbEngine(db["engine"])]))
        claims.setdefault(port, _Claim(f"{db['engine']} (databases[{k}])", None, (*hpath, "databases", k)))
    for k, service in enumerate(host.get("services", [])):
        spath: NodePath = (*hpath, "services", k)
        name: str = service["name"]
        for port, path in _listen_ports(spath, service):
            held = claims.get(port)
            if held is None:
                claims[port] = _Claim(f"service '{name}'", name, path)
                continue
            here = f"service '{name}' on {host['name']} listens on port {port}"
            if held.owner == "SSH":
                out.error(path, f"{here}, the host's SSH port",
                          "govcloud reaches the host over SSH there; a service's ports and http/tcp checks name "
                          "the ports the service itself binds")
            elif held.service is None:
                out.error(path, f"{here}, as does {held.owner}",
                          "a database moves by replication and is not a service: drop the port from the service, "
                          "or correct the database's port")
            else:
                out.error(path, f"{here}, as does {held.owner} (at {out.where(held.path)})",
                          "two services cannot bind one port: correct the port of one of them, or declare them "
                          "as one service")


def _check_service(out: _Out, spath: NodePath, host: dict[str, Any], service: dict[str, Any]) -> None:
    name: str = service["name"]
    checks: dict[str, NodePath] = {}
    for c, check in enumerate(service.get("checks", [])):
        cpath: NodePath = (*spath, "checks", c)
        if check["name"] in checks:
            out.error((*cpath, "name"), f"service '{name}' has two health checks named '{check['name']}' "
                      f"(first at {out.where(checks[check['name']])})", "give each check of a service its own name")
        checks.setdefault(check["name"], (*cpath, "name"))
        deadline = check.get("deadline_s", DEFAULT_CHECK_DEADLINE_S)
        interval = check.get("interval_s", DEFAULT_CHECK_INTERVAL_S)
        if interval > deadline:
            out.error((*cpath, "interval_s" if "interval_s" in check else "deadline_s"), f"health check '{check['name']}' of '{name}' waits {interval} s between "
                      f"attempts but gives up after {deadline} s", "make interval_s shorter than deadline_s")
    runtime: list[str] = service.get("runtime", [])
    for d, directory in enumerate(service.get("directories", [])):
        dpath: NodePath = (*spath, "directories", d, "path")
        where: str = directory["path"]
        if where.rstrip("/") == "":
            out.error(dpath, f"service '{name}' copies the whole file system (/)",
                      "name the directories of its software and configuration, e.g. /opt/tomcat and /etc/tomcat")
            continue
        for files in runtime:
            if _under(where, files):
                out.error(dpath, f"directory {where} of service '{name}' lies in its runtime path {files}: "
                          "nothing of it would be copied", "runtime paths are never copied: name only the pid "
                          "files, sockets and caches there, or drop the directory")
        for k, db in enumerate(host.get("databases", [])):
            if _overlap(where, db["data_dir"]):
                out.error(dpath, f"directory {where} of service '{name}' overlaps the data directory "
                          f"{db['data_dir']} of {db['engine']} (databases[{k}])",
                          "a database moves by replication, not as files: keep its directory out of the service's")


def _check_hooks(out: _Out, spath: NodePath, system: dict[str, Any]) -> None:
    """Every hook runs on one of the system's own hosts."""
    names = [h["name"] for h in system.get("hosts", [])]
    hooks: dict[str, Any] = system.get("hooks", {})
    for point in HookPoint:
        for k, hook in enumerate(hooks.get(point.value, [])):
            host: str = hook["host"]
            if host in names:
                continue
            path: NodePath = (*spath, "hooks", point.value, k, "host")
            if not names:
                hint = f"system '{system['id']}' lists no hosts: add the host under hosts: first"
            else:
                close = difflib.get_close_matches(host, names, n=1, cutoff=0.6)
                hint = (f"did you mean '{close[0]}'? " if close else "") + f"hosts of {system['id']}: {', '.join(names)}"
            out.error(path, f"{point.value} hook runs on host '{host}', which system '{system['id']}' does not have", hint)


def _check_ready(out: _Out, spath: NodePath, system: dict[str, Any]) -> None:
    """``ready_check`` names a health check some host of the system declares as ``<service>/<check>``."""
    ref = system.get("ready_check")
    if ref is None:
        return
    declared = sorted({f"{s['name']}/{c['name']}" for h in system.get("hosts", [])
                       for s in h.get("services", []) for c in s.get("checks", [])})
    if ref in declared:
        return
    if not declared:
        hint = ("declare a health check under a host's services[].checks, then name it here as <service>/<check>, "
                "e.g. ready_check: tomcat/http")
    else:
        close = difflib.get_close_matches(ref, declared, n=1, cutoff=0.6)
        hint = (f"did you mean '{close[0]}'? " if close else "") + f"declared checks: {', '.join(declared)}"
    out.error((*spath, "ready_check"), f"ready check '{ref}' names no health check of system '{system['id']}'", hint)
