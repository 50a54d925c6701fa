"""Build the service model (services, checks, hooks, OS, images) from schema- and cross-checked documents.

Why apart from loader.py: these sections are optional and nested several levels deep; keeping their
construction here keeps the loader a readable list of top-level steps. Everything is pure: the
documents are already parsed, and every value keeps its ``file:line:col`` for later diagnostics.
Defaults live in the model (govcloud.model.services), not here.
"""

from __future__ import annotations

from typing import Any

from govcloud.inventory.yamlio import PathElem, YamlDocument, format_path
from govcloud.model.services import (
    DEFAULT_CHECK_DEADLINE_S,
    DEFAULT_CHECK_INTERVAL_S,
    DEFAULT_COMMAND_TIMEOUT_S,
    DEFAULT_HOOK_TIMEOUT_S,
    DEFAULT_PROBE_TIMEOUT_S,
    CheckRef,
    CommandControl,
    CommandProbe,
    HealthCheck,
    Hook,
    HookPoint,
    HttpProbe,
    OsImage,
    OsSpec,
    Probe,
    Service,
    ServiceControl,
    ServiceDirectory,
    SystemdControl,
    TcpProbe,
)

NodePath = tuple[PathElem, ...]


def build_os(doc: YamlDocument, hpath: NodePath, host: dict[str, Any]) -> OsSpec | None:
    """The host's declared ``os`` (None when it declares none: its facts may tell at preflight)."""
    os = host.get("os")
    if os is None:
        return None
    path = (*hpath, "os")
    return OsSpec(os["family"], os["version"], doc.locate(path, key=True), format_path(path))


def build_services(doc: YamlDocument, hpath: NodePath, host: dict[str, Any]) -> tuple[Service, ...]:
    out = []
    for k, s in enumerate(host.get("services", [])):
        path: NodePath = (*hpath, "services", k)
        checks = tuple(_check(doc, (*path, "checks", c), x) for c, x in enumerate(s.get("checks", [])))
        dirs = tuple(ServiceDirectory(d["path"], tuple(d.get("exclude", []))) for d in s.get("directories", []))
        out.append(Service(s["name"], _control(s), checks, dirs, tuple(s.get("runtime", [])),
                           tuple(s.get("packages", [])), tuple(int(p) for p in s.get("ports", [])), doc.locate(path)))
    return tuple(out)


def _control(service: dict[str, Any]) -> ServiceControl:
    if "systemd" in service:
        return SystemdControl(service["systemd"])
    c = service["commands"]
    return CommandControl(c["start"], c["stop"], c.get("status"), float(c.get("timeout_s", DEFAULT_COMMAND_TIMEOUT_S)))


def _check(doc: YamlDocument, path: NodePath, check: dict[str, Any]) -> HealthCheck:
    probe: Probe
    if "http" in check:
        h = check["http"]
        probe = HttpProbe(int(h["port"]), h.get("path", "/"), int(h.get("status", 200)), h.get("body"))
    elif "tcp" in check:
        probe = TcpProbe(int(check["tcp"]["port"]))
    else:
        c = check["command"]
        probe = CommandProbe(c["run"], float(c.get("timeout_s", DEFAULT_PROBE_TIMEOUT_S)))
    return HealthCheck(check["name"], probe, float(check.get("deadline_s", DEFAULT_CHECK_DEADLINE_S)),
                       float(check.get("interval_s", DEFAULT_CHECK_INTERVAL_S)), doc.locate(path))


def build_hooks(doc: YamlDocument, spath: NodePath, system: dict[str, Any]) -> tuple[Hook, ...]:
    """Every hook of the system, point by point in the order of HookPoint, each point in file order."""
    hooks: dict[str, Any] = system.get("hooks", {})
    out = []
    for point in HookPoint:
        for k, h in enumerate(hooks.get(point.value, [])):
            out.append(Hook(point, h["host"], h["command"], float(h.get("timeout_s", DEFAULT_HOOK_TIMEOUT_S)),
                            doc.locate((*spath, "hooks", point.value, k))))
    return tuple(out)


def build_ready_check(system: dict[str, Any]) -> CheckRef | None:
    text = system.get("ready_check")
    return CheckRef.parse(text) if text is not None else None


def build_images(region: dict[str, Any]) -> tuple[OsImage, ...]:
    """A region's ``images: {family: {version: image}}`` as entries sorted by family and version."""
    images: dict[str, dict[str, str]] = region.get("images", {})
    return tuple(OsImage(family, version, image)
                 for family in sorted(images) for version, image in sorted(images[family].items()))
