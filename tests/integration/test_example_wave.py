"""The shipped example's first wave migrates end to end on the devcloud and the lab (issue 5).

What the demo does, checked independently: `govcloud plan` on the shipped inventories, `govcloud
provision apply` of the landing zones, the wave's legacy hosts (the sample app, or a real Debian
application: amr-bzxx's nginx static site, mca-qhdm's DokuWiki; and generated data), then
`govcloud migrate run wave-plan --wave 1` as a real subprocess.

Two sizes of the same test. The default suite migrates a slice of wave 1 (`SLICE`: 10 systems, 20
servers, 4 departments) chosen to keep what the whole wave exercises, on the fewest servers: three
dependency levels (nr-chdl -> nr-gtkj -> nr-kczy and nr-wpzf), all three placements, single systems
with one and two hosts (nr-wpzf), a system whose dependency is in another department (slt-stbc ->
nr-chdl), the two real Debian applications of the example (amr-bzxx: an nginx static site; mca-qhdm:
DokuWiki on php-fpm), and more systems than the run's concurrency. The whole wave
(50 systems, 170 servers) is the scale tier's (`bash scripts/test.sh --scale`). Afterwards, for every system of the
wave and without trusting the engine's own verdict: the servers Nova holds under the migration's tag
(as many as the placement needs, no duplicates), for every target the sha256 of every file under each
data path equal to the legacy host's, the app's /health answering on the target under the target's
own hostname (a real application's declared HTTP checks instead), the system's name answered by
every site's DNS server (asked directly) as the primary
target's address (and published first with the legacy host's), a measured downtime in the journal,
and the audit chain intact.

The whole wave is large (50 systems, 96 legacy hosts, 170 servers): it takes about 10 minutes.
The legacy hosts are removed at the end. The cloud objects (servers by tag, the landing zones) are
deleted too, unless the session started the cloud: the module runs after every other user of the
cloud (`cloud_last`), and the lifecycle tests' reset or the session's `devcloud down` discards them
with the cloud (deleting 170 servers and the landing zones one call at a time took 5 of the suite's
minutes). A developer's running cloud is always cleaned.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcloud.procs import wait_for
from devcloud.testing import CloudSession

pytestmark = [pytest.mark.integration, pytest.mark.cloud_last]

REPO = Path(__file__).resolve().parents[2]
SERVERS_PER_HOST = {"active-active": 2, "active-standby": 2, "single": 1}
# wave 1's slice for the default suite (see the module's docstring); None is the whole wave
SLICE = ("nr-chdl", "nr-gtkj", "nr-kczy", "nr-wpzf", "nr-dzzh", "nr-slzy", "slt-stbc",
         "amr-bzxx", "amr-zlcc", "mca-qhdm")


@dataclass
class Example:
    root: Path
    lab: Any
    session: CloudSession
    env: dict[str, str]
    systems: dict[str, dict[str, Any]]  # the migrated wave-1 system id -> its inventory entry
    only: tuple[str, ...] | None  # the slice migrated, None for the whole wave

    def govcloud(self, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "govcloud", "--root", str(self.root), *args], env=self.env,
                              text=True, capture_output=True, timeout=timeout, cwd=self.root, check=False)


def _wave1_servers(session: CloudSession, systems: set[str]) -> list[tuple[str, Any]]:
    out = []
    for cloud in ("gz", "st"):
        c = session.connect(cloud)
        for s in c.compute.servers(all_projects=True, tags="govcloud:migration"):
            if any(t.startswith("govcloud:system=") and t.split("=", 1)[1] in systems for t in (s.tags or [])):
                out.append((cloud, s))
    return out


def _delete_wave1_servers(session: CloudSession, systems: set[str]) -> None:
    found = _wave1_servers(session, systems)
    for cloud, s in found:
        session.connect(cloud).compute.delete_server(s, force=True)
    if found:
        wait_for(lambda: not _wave1_servers(session, systems), timeout=300, interval=2,
                 what=f"{len(found)} wave-1 servers deleted")


def _sha_tree(lab: Any, host: str, path: str, runtime: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file under ``path``, but those under a runtime path (a wiki's cache: never copied)."""
    r = lab.exec(host, ["sh", "-c", f"cd {path} && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum"])
    assert r.returncode == 0, (host, path, r.stderr)
    tree = {line.split()[1]: line.split()[0] for line in r.stdout.splitlines()}
    return {rel: sha for rel, sha in tree.items()
            if not any(f"{path}/{rel[2:]}".startswith(rt.rstrip("/") + "/") for rt in runtime)}


@pytest.fixture(scope="module", params=[pytest.param(SLICE, id="slice"),
                                        pytest.param(None, id="whole-wave", marks=pytest.mark.scale)])
def example(request: pytest.FixtureRequest, devcloud_cloud: CloudSession,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    from devcloud.lab.dns import LabDns
    from devcloud.lab.legacy import create_legacy, legacy_hosts, read_departments
    from devcloud.lab.testing import lab_session, require_watcher

    root = tmp_path_factory.mktemp("example")
    shutil.copytree(REPO / "inventories", root / "inventories")
    (root / "govcloud.yaml").write_text("version: 1\n")
    # the operator key lives in the default state dir (GOVCLOUD_STATE_DIR as the demo uses it): the example's
    # department keypairs are the demo's too, and a keypair holding another key would lock the targets out
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(devcloud_cloud.clouds_yaml), "PYTHONPATH": str(REPO)}
    env.pop("GOVCLOUD_JOURNAL", None)
    with lab_session(devcloud_cloud.paths, hosts_per_site=1) as lab:
        require_watcher(lab)
        only: tuple[str, ...] | None = request.param
        ex = Example(root, lab, devcloud_cloud, env, {}, only)
        r = ex.govcloud("plan")
        assert r.returncode == 0, r.stdout + r.stderr
        plan = yaml.safe_load((root / "migration_plans" / "wave-plan.yaml").read_text())
        whole_wave = {s["id"] for s in plan["waves"][0]["systems"]}
        assert only is None or set(only) <= whole_wave, sorted(set(only or ()) - whole_wave)
        wave1 = set(only) if only is not None else whole_wave
        docs = [yaml.safe_load(f.read_text()) for f in sorted((root / "inventories" / "departments").glob("*.yaml"))]
        inventory = {s["id"]: s for doc in docs for s in doc["systems"]}
        department_of = {s["id"]: doc["department"]["id"] for doc in docs for s in doc["systems"]}
        ex.systems = {sid: inventory[sid] for sid in sorted(wave1)}
        _delete_wave1_servers(devcloud_cloud, set(wave1))  # leftovers of an earlier demo or session
        dns = LabDns(lab)
        dns.up()
        dns.forget(sorted(wave1))  # names an earlier demo or session left pointing at its targets
        hosts = legacy_hosts(read_departments(root / "inventories"), sorted(wave1))
        for h in hosts:  # fresh legacy hosts: an earlier demo may have left them stopped after its cutover
            lab.remove_host(h.name)
        try:
            depts = sorted({department_of[sid] for sid in wave1}) if only else []  # the slice's landing zones
            r = ex.govcloud("provision", "apply", "--yes", *(f"--department={d}" for d in depts))
            assert r.returncode == 0, r.stdout + r.stderr
            create_legacy(lab, root / "inventories", sorted(wave1))
            yield ex
        finally:
            for h in hosts:
                lab.remove_host(h.name)
            if not devcloud_cloud.disposable:
                _clean_cloud(ex, devcloud_cloud, whole_wave)  # a demo's servers too: the zones are pruned


def _clean_cloud(ex: Example, session: CloudSession, wave1: set[str]) -> None:
    """Delete the wave's servers and prune the example's landing zones from a cloud that outlives the session."""
    from devcloud.lab.reconcile import reconcile

    root = ex.root
    _delete_wave1_servers(session, wave1)
    reconcile(ex.lab, clouds_yaml=session.clouds_yaml)
    depts = sorted({yaml.safe_load(f.read_text())["department"]["id"]
                    for f in (root / "inventories" / "departments").glob("*.yaml")})
    (root / "inventories" / "departments").rename(root / "departments.gone")
    (root / "inventories" / "departments").mkdir()
    # the example's departments left the inventory: prune exactly their landing zones
    r = ex.govcloud("provision", "apply", "--prune", "--yes", *(f"--department={d}" for d in depts))
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_examples_first_wave_migrates_end_to_end(example: Example) -> None:
    lab = example.lab
    only = () if example.only is None else ("--systems", ",".join(example.only))
    r = example.govcloud("migrate", "run", "wave-plan", "--wave", "1", "--concurrency", "8", *only,
                         "--known-hosts", str(lab.known_hosts), "--ssh-key", str(lab.controller_key),
                         "--control-path-dir", str(lab.paths.lab / "cp"), "--outside-window")
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-5000:]
    status = example.govcloud("--output", "json", "migrate", "status", "wave-plan")
    rows = {row["system"]: row for row in json.loads(status.stdout)}
    assert {s: rows[s]["state"] for s in example.systems} == {s: "done" for s in example.systems}

    from devcloud.lab.testing import http_get

    journal = example.root / ".govcloud" / "journal.sqlite"
    from devcloud.lab.dns import SERVERS, ZONE

    def answered(sid: str) -> set[tuple[str, ...]]:
        return {tuple(sorted(subprocess.run(["dig", "+short", "+norecurse", "+time=1", "+tries=2", f"@{ns.ip}",
                                             f"{sid}.{ZONE}", "A"], text=True, capture_output=True, timeout=10,
                                            check=False).stdout.split())) for ns in SERVERS}

    servers = _wave1_servers(example.session, set(example.systems))
    names = [s.name for _, s in servers]
    assert len(names) == len(set(names)), "duplicate servers"
    with sqlite3.connect(journal) as db:
        def fact(system: str, key: str) -> Any:
            row = db.execute("SELECT value FROM facts WHERE system = ? AND key = ? ORDER BY id DESC LIMIT 1",
                             (system, key)).fetchone()
            return None if row is None else json.loads(row[0])

        for sid, system in example.systems.items():
            expected = len(system["hosts"]) * SERVERS_PER_HOST[system["placement"]]
            mine = [s for _, s in servers if f"govcloud:system={sid}" in (s.tags or [])]
            assert len(mine) == expected, (sid, [s.name for s in mine])
            targets = fact(sid, "targets")
            assert len(targets) == expected, (sid, targets)
            for t in targets:
                host = next(h for h in system["hosts"] if h["name"] == t["legacy_host"])
                runtime = [r for s in host.get("services", []) for r in s.get("runtime", [])]  # never copied
                for path in t["data"]:
                    assert (_sha_tree(lab, t["ip"], path, runtime)
                            == _sha_tree(lab, t["legacy_host"], path, runtime)), (sid, t["name"], path)
            for t in targets:
                if not (t["primary"] or system["placement"] == "active-active"):
                    continue
                services = next(h for h in system["hosts"] if h["name"] == t["legacy_host"]).get("services", [])
                if any(s["name"] == "sampleapp" for s in services):
                    code, body = http_get(f"http://{t['ip']}:8080/health")
                    assert code == 200 and json.loads(body)["hostname"] == t["name"], (sid, t, body)
                for check in (c["http"] for s in services if s["name"] != "sampleapp" for c in s.get("checks", [])
                              if "http" in c):  # the real applications (nginx, DokuWiki): their declared checks
                    code, body = http_get(f"http://{t['ip']}:{check['port']}{check.get('path', '/')}")
                    assert code == 200 and check.get("body", "").encode() in body, (sid, t, check, body[:200])
            # the endpoint moved from one of the system's legacy hosts to one of its primary-site targets
            primaries = {t["ip"] for t in targets if t["primary"]}
            legacy = {h["address"] for h in system["hosts"]}
            names = answered(sid)
            assert len(names) == 1 and len(next(iter(names))) == 1 and next(iter(names))[0] in primaries, (sid, names)
            switches = [json.loads(v) for (v,) in db.execute(
                "SELECT value FROM facts WHERE system = ? AND step = 'dns' AND key = 'switch' ORDER BY id", (sid,))]
            assert switches[0]["expected"] is None and switches[0]["new"] in legacy, (sid, switches)
            assert switches[-1]["expected"] in legacy and switches[-1]["new"] in primaries, (sid, switches)
            downtime = fact(sid, "downtime_seconds")
            assert downtime is not None and 0 < downtime < 60, (sid, downtime)
    r = example.govcloud("audit", "verify")
    assert r.returncode == 0, r.stderr
