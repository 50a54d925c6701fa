"""Legacy machine rooms from an inventory: one lab host per inventory host, with its software and data.

Each host gets the inventory's address in the ``legacy`` site (10.240.16.0/20), the controller key
authorised, deterministic generated files in each of its data paths (which must be under /srv, the
host's own data root) and the software its services declare, started by their declared ``start``
commands (lab hosts have no systemd): a real Debian application when the services' packages call for
one (``devcloud.lab.legacyapps``: an nginx static site, or DokuWiki on php-fpm), else the lab's sample
application (``/srv/app``, port 8080). A host that declares no services gets the sample app too.
"""

from __future__ import annotations

import json
import random
import shutil
import urllib.request
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from devcloud.lab import legacyapps as apps
from devcloud.lab import net
from devcloud.lab.api import Lab
from devcloud.lab.install import APP_PACKAGES, missing_packages
from devcloud.lab.legacydb import DEFAULT_PORT, DbSpec, LegacyDatabases
from devcloud.lab.nameservers import ZONE
from devcloud.lab.state import HostSpec
from devcloud.procs import wait_for

APP_PORT = 8080
SAMPLEAPP = Path(__file__).with_name("sampleapp.py")
LEGACY = net.site("legacy")


@dataclass(frozen=True)
class LegacyService:
    """What the lab needs of a declared service: its commands, packages and HTTP checks."""

    name: str
    start: str
    stop: str
    status: str | None = None
    timeout_s: float = 120.0
    packages: tuple[str, ...] = ()
    http: tuple[tuple[int, str, str | None], ...] = ()  # (port, path, body) of each http check

    @classmethod
    def from_yaml(cls, doc: dict[str, Any]) -> LegacyService:
        cmd = doc.get("commands") or {}
        http = tuple((int(c["http"]["port"]), str(c["http"].get("path", "/")), c["http"].get("body"))
                     for c in doc.get("checks", []) or [] if isinstance(c, dict) and "http" in c)
        return cls(str(doc.get("name", "?")), str(cmd.get("start", "")), str(cmd.get("stop", "")),
                   str(cmd["status"]) if cmd.get("status") else None, float(cmd.get("timeout_s", 120.0)),
                   tuple(str(p) for p in doc.get("packages", []) or []), http)


@dataclass(frozen=True)
class LegacyHost:
    system: str
    department: str
    name: str
    address: str
    port: int
    user: str
    role: str
    data: tuple[str, ...]
    depends_on: tuple[str, ...] = ()
    databases: tuple[DbSpec, ...] = ()
    services: tuple[LegacyService, ...] = ()

    @property
    def app(self) -> str:
        """The software the lab lays out: "wiki", "site" or "sampleapp" (legacyapps.app_kind)."""
        return apps.app_kind(p for s in self.services for p in s.packages) or "sampleapp"


def read_departments(root: Path) -> list[dict[str, Any]]:
    """The department documents of an inventory (``departments/*.yaml`` under ``root``).

    Kept to this one function on purpose: it can be swapped for ``govcloud.inventory`` when
    devcloud may depend on govcloud; tests feed it tiny inventories that need no topology.
    """
    d = root / "departments" if (root / "departments").is_dir() else root
    files = sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml"))
    if not files:
        raise net.LabError(f"no department YAML files under {root}")
    return [yaml.safe_load(f.read_text(encoding="utf-8")) for f in files]


def legacy_hosts(departments: Iterable[dict[str, Any]], systems: Sequence[str] = ()) -> list[LegacyHost]:
    """Every inventory host (of ``systems`` if given), validated for the legacy site."""
    wanted = set(systems)
    out: list[LegacyHost] = []
    seen_sys: set[str] = set()
    for doc in departments:
        dept = str(doc.get("department", {}).get("id", "?"))
        for s in doc.get("systems", []) or []:
            sid = str(s["id"])
            if wanted and sid not in wanted:
                continue
            seen_sys.add(sid)
            for h in s.get("hosts", []) or []:
                out.append(
                    LegacyHost(
                        system=sid, department=dept, name=str(h["name"]), address=str(h["address"]),
                        port=int(h.get("port", 22)), user=str(h.get("user", "root")), role=str(h.get("role", "app")),
                        data=tuple(str(p) for p in h.get("data", []) or []),
                        depends_on=tuple(str(d) for d in s.get("depends_on", []) or []),
                        databases=tuple(DbSpec(str(d["engine"]), int(d.get("port", DEFAULT_PORT.get(str(d["engine"]), 0))),
                                               str(d["data_dir"]), str(d["version"])) for d in h.get("databases", []) or []),
                        services=tuple(LegacyService.from_yaml(x) for x in h.get("services", []) or []),
                    )
                )
    missing = wanted - seen_sys
    if missing:
        raise net.LabError(f"systems not in the inventory: {', '.join(sorted(missing))}")
    problems = []
    names: dict[str, str] = {}
    addrs: dict[str, str] = {}
    for h in out:
        try:
            net.check_key(h.name)
            net.validate_host_address(LEGACY, IPv4Address(h.address), LEGACY.subnet.prefixlen, LEGACY.gateway.ip)
        except (net.LabError, ValueError) as e:
            problems.append(f"{h.system}/{h.name}: {e}")
        if h.port != 22 or h.user != "root":
            problems.append(f"{h.system}/{h.name}: lab hosts serve ssh as root on port 22 (got {h.user}:{h.port})")
        for p in h.data:
            if not _under_srv(p):
                problems.append(f"{h.system}/{h.name}: data path {p} is not under /srv (the host's own data root)")
        for db in h.databases:
            if not _under_srv(db.data_dir):
                problems.append(f"{h.system}/{h.name}: {db.engine} data directory {db.data_dir} is not under /srv")
        for svc in h.services:
            if not (svc.start and svc.stop):
                problems.append(f"{h.system}/{h.name}: service {svc.name} needs start and stop commands "
                                "(lab hosts have no systemd)")
        if names.setdefault(h.name, h.address) != h.address or addrs.setdefault(h.address, h.name) != h.name:
            problems.append(f"{h.system}/{h.name}: name or address {h.address} used twice")
    if problems:
        raise net.LabError("inventory hosts do not fit the lab: " + "; ".join(problems))
    return out


def _under_srv(p: str) -> bool:
    pp = PurePosixPath(p)
    return pp.is_absolute() and pp.parts[:2] == ("/", "srv") and len(pp.parts) > 2 and ".." not in pp.parts


def generate_data(dest: Path, seed: str, *, files: int = 8, size: int = 64 * 1024) -> int:
    """``files`` files of ``size`` bytes, content fixed by ``seed``; returns bytes written."""
    dest.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(files):
        rnd = random.Random(f"{seed}/{i}")
        (dest / f"part-{i:04d}.bin").write_bytes(rnd.randbytes(size))
        total += size
    (dest / "MANIFEST.txt").write_text(f"{seed}: {files} files x {size} bytes\n")
    return total


def host_srv(lab: Lab, key: str) -> Path:
    """The controller-side directory that is ``/srv`` inside host ``key``."""
    return lab.files.host(key) / "srv"


def install_app(lab: Lab, h: LegacyHost) -> None:
    app = host_srv(lab, h.name) / "app"
    app.mkdir(parents=True, exist_ok=True)
    shutil.copy2(SAMPLEAPP, app / "sampleapp.py")
    config = {"name": h.system, "port": APP_PORT, "data": list(h.data), "depends_on": list(h.depends_on), "zone": ZONE,
              "databases": [{"engine": d.engine, "port": d.port} for d in h.databases]}
    (app / "app.json").write_text(json.dumps(config, indent=2))


def lay_out(lab: Lab, h: LegacyHost, *, files: int = 8, size: int = 64 * 1024) -> None:
    """The host's data and software, fresh: generated files in each data path (a wiki's data path
    holds its pages instead; a static site's files go under its ``html/files``), then the application
    its services call for. Whatever was there is replaced."""
    if h.app != "sampleapp" and (missing := missing_packages(APP_PACKAGES)):
        raise net.LabError(f"{h.name}: the {h.app} needs the Debian packages {', '.join(missing)}: run `devcloud lab install`")
    srv = host_srv(lab, h.name)
    for p in h.data:
        dest = srv / PurePosixPath(p).relative_to("/srv")
        shutil.rmtree(dest, ignore_errors=True)
        if h.app == "wiki" and PurePosixPath(p).is_relative_to(apps.WIKI_ROOT):
            continue
        if h.app == "site" and PurePosixPath(p).is_relative_to(apps.SITE_ROOT):
            dest = dest / "files"
        generate_data(dest, f"{h.name}:{p}", files=files, size=size)
    if h.app == "wiki":
        apps.lay_out_wiki(apps.Layout(srv / "wiki", apps.WIKI_ROOT), h.system)
    elif h.app == "site":
        apps.lay_out_site(apps.Layout(srv / "www", apps.SITE_ROOT), h.system)
    else:
        install_app(lab, h)


def control(lab: Lab, h: LegacyHost, action: str) -> str | None:
    """``start`` or ``stop`` the host's software by its declared commands (stop in reverse order),
    run inside the host as a migration would run them over ssh; a start then waits for the services'
    HTTP checks, asked from the controller. None when it worked, else what failed."""
    if not h.services:
        rc, info = app_control(lab, h.name, action)
        return None if rc == 0 else f"{h.name}: sample app {action}: {info}"
    order = h.services if action == "start" else tuple(reversed(h.services))
    for svc in order:
        r = lab.exec(h.name, ["sh", "-c", svc.start if action == "start" else svc.stop], timeout=svc.timeout_s)
        if r.returncode != 0:
            return f"{h.name}: {action} of {svc.name} exited {r.returncode}: {(r.stdout + r.stderr).strip()[-400:]}"
    if action == "start":
        for svc in h.services:
            for port, path, body in svc.http:
                url = f"http://{h.address}:{port}{path}"
                try:
                    wait_for(lambda u=url, b=body: _answers(u, b), timeout=60, interval=0.2, what=f"{svc.name} at {url}")
                except TimeoutError as e:
                    return f"{h.name}: {e}"
    return None


def _answers(url: str, body: str | None) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # lab addresses never go to a proxy
    try:
        with opener.open(url, timeout=2) as r:
            return r.status == 200 and (body is None or body in r.read().decode("utf-8", "replace"))
    except OSError:
        return False


def app_control(lab: Lab, key: str, action: str) -> tuple[int, dict[str, Any]]:
    """Run the sample app's start/stop/status inside the host (nsenter, as a migration would over ssh)."""
    r = lab.exec(key, ["/usr/bin/python3", "/srv/app/sampleapp.py", action], timeout=30)
    try:
        info = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {}
    except ValueError:
        info = {"output": r.stdout}
    if r.stderr.strip():
        info["stderr"] = r.stderr.strip()
    return r.returncode, info


def create_legacy(
    lab: Lab,
    inventory: Path,
    systems: Sequence[str] = (),
    *,
    files: int = 8,
    size: int = 64 * 1024,
) -> list[HostSpec]:
    """Create (idempotently) the legacy hosts of ``inventory``; existing hosts keep their data."""
    wanted = legacy_hosts(read_departments(inventory), systems)
    existing = {h.key for h in lab.hosts(kind="legacy")}
    specs = lab.add_hosts(
        [
            dict(key=h.name, site="legacy", ip=h.address, kind="legacy",
                 meta={"system": h.system, "department": h.department, "role": h.role})
            for h in wanted
        ]
    )
    created: list[HostSpec] = []
    for h, spec in zip(wanted, specs):
        if h.name not in existing:
            lay_out(lab, h, files=files, size=size)
            created.append(spec)
    dbs = LegacyDatabases(lab)
    with ThreadPoolExecutor(max_workers=4) as pool:  # servers first: each app commits to its databases from the start
        list(pool.map(lambda hd: dbs.up(hd[0].name, hd[0].address, hd[1]), [(h, d) for h in wanted for d in h.databases]))
    # start the apps side by side: each start waits for its health (python start-up dominates)
    with ThreadPoolExecutor(max_workers=8) as pool:
        failed = [f for f in pool.map(lambda h: control(lab, h, "start"), wanted) if f]
    if failed:
        raise net.LabError("legacy software did not start: " + "; ".join(failed))
    return created
