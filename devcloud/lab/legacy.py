"""Legacy machine rooms from an inventory: one lab host per inventory host, with app and data.

Each host gets the inventory's address in the ``legacy`` site (10.240.16.0/20), the controller key
authorised, deterministic generated files in each of its data paths (which must be under /srv, the
host's own data root) and the sample application (``/srv/app``) started on port 8080.
"""

from __future__ import annotations

import json
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from devcloud.lab import net
from devcloud.lab.api import Lab
from devcloud.lab.legacydb import DEFAULT_PORT, DbSpec, LegacyDatabases
from devcloud.lab.nameservers import ZONE
from devcloud.lab.state import HostSpec

APP_PORT = 8080
SAMPLEAPP = Path(__file__).with_name("sampleapp.py")
LEGACY = net.site("legacy")


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
            for p in h.data:
                rel = PurePosixPath(p).relative_to("/srv")
                generate_data(host_srv(lab, h.name) / rel, f"{h.name}:{p}", files=files, size=size)
            install_app(lab, h)
            created.append(spec)
    dbs = LegacyDatabases(lab)
    with ThreadPoolExecutor(max_workers=4) as pool:  # servers first: each app commits to its databases from the start
        list(pool.map(lambda hd: dbs.up(hd[0].name, hd[0].address, hd[1]), [(h, d) for h in wanted for d in h.databases]))
    # start the apps side by side: each start waits for its /health (python start-up dominates)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda h: (h.name, *app_control(lab, h.name, "start")), wanted))
    failed = [f"{name}: {info}" for name, rc, info in results if rc != 0]
    if failed:
        raise net.LabError("sample app did not start on " + "; ".join(failed))
    return created
