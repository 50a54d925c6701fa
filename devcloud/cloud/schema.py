"""Database schemas: run every service's migrations (in parallel), or restore the cached result.

The migrations cost ~45 s of CPU on 2 cores and depend only on the installed package versions,
the templates, the topology and the password; so the MariaDB datadir right after schema sync +
keystone bootstrap is snapshotted once and copied back on later fresh starts (about 1 s).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from devcloud.cloud import mariadb
from devcloud.cloud.install import MARIADBD
from devcloud.cloud.layout import CloudLayout
from devcloud.cloud.render import TEMPLATES
from devcloud.cloud.services import keystone_conf, nova_dir
from devcloud.cloud.topology import ALL_DATABASES, KEYSTONE_URL, REGIONS
from devcloud.errors import DevcloudError

KEEP_SNAPSHOTS = 3
Say = Callable[[str], None]


def cache_key(lay: CloudLayout, password: str) -> str:
    """Installed distributions (name+version), MariaDB version, templates, this module, topology, password."""
    h = hashlib.sha256()
    site = sorted(lay.venv.glob("lib/python3*/site-packages/*.dist-info"))
    h.update("\n".join(p.name for p in site).encode())
    h.update(subprocess.run([str(MARIADBD), "--version"], capture_output=True).stdout)
    for f in sorted(TEMPLATES.iterdir()):
        h.update(f.name.encode() + f.read_bytes())
    h.update(Path(__file__).read_bytes())
    h.update(repr(REGIONS).encode() + repr(ALL_DATABASES).encode())
    h.update(hashlib.sha256(password.encode()).digest())
    return h.hexdigest()[:16]


def snapshot_dir(lay: CloudLayout, key: str) -> Path:
    return lay.schema_cache / f"mysql-datadir-{key}"


def restore(lay: CloudLayout, key: str) -> bool:
    """Copy a cached datadir into place; False if there is none for this key."""
    snap = snapshot_dir(lay, key)
    if not (snap / "keystone").is_dir():
        return False
    dest = mariadb.datadir(lay)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(snap, dest, symlinks=True)
    return True


def save(lay: CloudLayout, key: str) -> Path:
    """Snapshot the (cleanly stopped) datadir; keep the newest few snapshots."""
    snap = snapshot_dir(lay, key)
    tmp = snap.with_name(snap.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(mariadb.datadir(lay), tmp, symlinks=True)
    for f in tmp.glob("*.pid"):
        f.unlink()
    shutil.rmtree(snap, ignore_errors=True)
    tmp.rename(snap)
    old = sorted(lay.schema_cache.glob("mysql-datadir-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for p in old[KEEP_SNAPSHOTS:]:
        shutil.rmtree(p, ignore_errors=True)
    return snap


def _tasks(lay: CloudLayout) -> dict[str, list[list[str]]]:
    """Each task is a sequence of commands; tasks run in parallel, commands within one in order."""
    km = [lay.bin("keystone-manage"), "--config-file", str(keystone_conf(lay))]
    tasks: dict[str, list[list[str]]] = {
        "sync-keystone": [
            [*km, "db_sync"],
            # the password comes from OS_BOOTSTRAP_PASSWORD (never on a command line)
            [*km, "bootstrap", "--bootstrap-admin-url", KEYSTONE_URL + "/", "--bootstrap-internal-url", KEYSTONE_URL + "/",
             "--bootstrap-public-url", KEYSTONE_URL + "/", "--bootstrap-region-id", REGIONS[0].name],
        ]
    }
    for r in REGIONS:
        s = r.short
        tasks[f"sync-placement-{s}"] = [
            [lay.bin("placement-manage"), "--config-file", str(lay.etc / f"placement-{s}" / "placement.conf"), "db", "sync"]
        ]
        tasks[f"sync-glance-{s}"] = [
            [lay.bin("glance-manage"), "--config-file", str(lay.etc / f"glance-{s}" / "glance-api.conf"), "db_sync"]
        ]
        ndir = lay.etc / f"neutron-{s}"
        tasks[f"sync-neutron-{s}"] = [
            [lay.bin("neutron-db-manage"), "--config-file", str(ndir / "neutron.conf"),
             "--config-file", str(ndir / "plugins" / "ml2" / "ml2_conf.ini"), "upgrade", "heads"]
        ]
        vdir = nova_dir(lay, r)
        nm = [lay.bin("nova-manage"), "--config-file", str(vdir / "nova.conf"), "--config-file", str(vdir / "nova-db.conf")]
        tasks[f"sync-nova-{s}"] = [
            [*nm, "api_db", "sync"],
            [*nm, "cell_v2", "map_cell0"],
            [*nm, "cell_v2", "create_cell", "--name", "cell1"],
            [*nm, "db", "sync"],
        ]
    return tasks


def migrate(lay: CloudLayout, password: str, say: Say, timeout: float = 600) -> None:
    """Create the databases and run all migrations + keystone bootstrap, in parallel, each task logged."""
    mariadb.create_databases(lay, ALL_DATABASES, password)
    reg = lay.registry()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OS_BOOTSTRAP_PASSWORD": password}
    pending = {name: list(cmds) for name, cmds in _tasks(lay).items()}
    running: dict[str, subprocess.Popen[bytes]] = {}
    deadline = time.monotonic() + timeout

    def launch(name: str) -> None:
        cmd = pending[name].pop(0)
        reg.forget(name)
        running[name] = reg.spawn(name, cmd, log=lay.log / f"{name}.log", env=env)

    for name in list(pending):
        launch(name)
    while running:
        if time.monotonic() > deadline:
            reg.stop_many(list(running), timeout=5)
            raise DevcloudError(f"schema migrations took over {timeout:.0f}s", lay.log)
        for name, proc in list(running.items()):
            rc = proc.poll()
            if rc is None:
                continue
            del running[name]
            reg.forget(name)
            if rc != 0:
                reg.stop_many(list(running), timeout=5)
                raise DevcloudError(f"schema migration {name} failed (exit {rc})", lay.log / f"{name}.log")
            if pending[name]:
                launch(name)
        time.sleep(0.1)
