"""Legacy hosts with real database servers (issue 13, build item 2): PostgreSQL 15 and MariaDB 10.11 in
the host's own namespaces, on its address, and the sample app committing to them with a ledger.

Two one-host systems (``tldb-pg``, ``tldb-my``) are made from a tiny inventory; the test waits until
each app has had commits acknowledged, stops the apps, and checks that every id in each ledger is in
its database, that the servers listen on the host's address and not on the lab's other addresses,
and that the generated password is kept 0600 and never shows in /health or the app's log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcloud.testing import require

DEPT = """version: 1
department: {id: tldb, name: legacy database test}
systems:
  - id: tldb-pg
    name: postgres system
    classification: 2
    tier: normal
    rto_minutes: 60
    rpo_minutes: 5
    window: {days: [sat], start: "22:00", end: "06:00"}
    placement: single
    resources: {vcpus: 2, ram_gb: 4, storage_gb: 20}
    hosts:
      - name: tldb-pg-01
        address: 10.240.31.40
        role: db
        data: [/srv/tldb-pg]
        databases:
          - {engine: postgresql, version: "15", data_dir: /srv/pgdata}
  - id: tldb-my
    name: mariadb system
    classification: 2
    tier: normal
    rto_minutes: 60
    rpo_minutes: 5
    window: {days: [sat], start: "22:00", end: "06:00"}
    placement: single
    resources: {vcpus: 2, ram_gb: 4, storage_gb: 20}
    hosts:
      - name: tldb-my-01
        address: 10.240.31.41
        role: db
        data: [/srv/tldb-my]
        databases:
          - {engine: mariadb, version: "10.11", port: 3307, data_dir: /srv/mysql}
"""
HOSTS = {"tldb-pg-01": "10.240.31.40", "tldb-my-01": "10.240.31.41"}


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    require(Path("/usr/lib/postgresql/15/bin/initdb").exists(), "postgresql-15 is not installed")
    require(Path("/usr/sbin/mariadbd").exists(), "mariadb-server is not installed")
    from devcloud.lab.legacy import create_legacy
    from devcloud.lab.testing import lab_session

    inv = tmp_path_factory.mktemp("tldb") / "inventories"
    (inv / "departments").mkdir(parents=True)
    (inv / "departments" / "tldb.yaml").write_text(DEPT)
    with lab_session() as lab:
        for h in HOSTS:
            lab.remove_host(h)  # leftovers of an interrupted run
        try:
            create_legacy(lab, inv, files=2, size=1024)
            yield lab, inv
        finally:
            for h in HOSTS:
                lab.remove_host(h)  # stops everything in the host's namespaces (servers, app)


def health(lab: Any, host: str) -> dict[str, Any]:
    from devcloud.lab.testing import http_get

    status, body = http_get(f"http://{HOSTS[host]}:8080/health")
    assert status == 200, body
    doc: dict[str, Any] = json.loads(body)
    return doc


def test_apps_commit_to_their_databases_and_every_acknowledged_commit_is_there(legacy: tuple[Any, Path]) -> None:
    from devcloud.lab.legacy import app_control, legacy_hosts, read_departments
    from devcloud.lab.legacydb import LegacyDatabases

    lab, inv = legacy
    hosts = {h.name: h for h in legacy_hosts(read_departments(inv))}
    deadline = time.monotonic() + 30
    for name in HOSTS:
        while True:
            doc = health(lab, name)
            (db,) = doc["databases"].values()
            if db["acknowledged"] >= 20:
                break
            assert time.monotonic() < deadline, doc
            time.sleep(0.2)
        assert doc["status"] == "ok" and db["errors"] == 0, doc
    for name in HOSTS:
        assert app_control(lab, name, "stop")[0] == 0
    dbs = LegacyDatabases(lab)
    for name, h in hosts.items():
        (spec,) = h.databases
        ledger = [int(x) for x in lab.exec(name, ["cat", f"/srv/app/ledger-{spec.key}.log"]).stdout.split()]
        assert len(ledger) >= 20 and len(set(ledger)) == len(ledger)
        rows = dbs.rows(name, spec)
        assert set(ledger) <= rows, f"{name}: acknowledged but missing: {sorted(set(ledger) - rows)[:10]}"


def test_servers_listen_on_the_host_address_and_the_password_stays_in_its_file(legacy: tuple[Any, Path]) -> None:
    from devcloud.lab.legacy import app_control

    lab, _ = legacy
    for name, (port, secret) in {"tldb-pg-01": (5432, "db-postgresql-5432.secret"),
                                 "tldb-my-01": (3307, "db-mariadb-3307.secret")}.items():
        listening = lab.exec(name, ["ss", "-Htln"]).stdout
        assert f"{HOSTS[name]}:{port}" in listening and f"127.0.0.1:{port}" in listening, listening
        assert f"0.0.0.0:{port}" not in listening and f"*:{port}" not in listening, listening
        mode = lab.exec(name, ["stat", "-c", "%a", f"/srv/app/{secret}"]).stdout.strip()
        assert mode == "600"
        password = lab.exec(name, ["cat", f"/srv/app/{secret}"]).stdout.strip()
        assert len(password) >= 20
        assert app_control(lab, name, "start")[0] == 0  # the app continues its ledger after a restart
        try:
            assert password not in json.dumps(health(lab, name))
        finally:
            assert app_control(lab, name, "stop")[0] == 0
        assert password not in lab.exec(name, ["cat", "/srv/app/sampleapp.log"]).stdout
