"""Benchmark: govcloud provision vs an openstack.cloud Ansible playbook, on the devcloud.

The same landing zones (N departments x 2 regions, default 20) made by each tool from an empty cloud,
then again as a no-op re-run. Every API request of both tools goes through counting loopback proxies
(bench/apiproxy.py: Keystone, and Nova/Neutron/Glance of each region), so "API requests" is the same
measure for both.

The peer runs in its own venv (openstack.cloud 2.5.0 breaks with openstacksdk >= 4.15, see the lab
reference report): ansible-core + openstacksdk<4.15 + the collection extracted from the `ansible` wheel.

    python bench/provision_bench.py [--departments 20] [--peer-venv /var/tmp/govcloud-bench/peer-venv]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.apiproxy import ApiProxy  # noqa: E402
from devcloud.paths import DevcloudPaths  # noqa: E402

WORK = Path(os.environ.get("GOVCLOUD_BENCH_DIR", "/var/tmp/govcloud-bench"))
PREFIX = "b4"


def make_project(root: Path, n: int) -> list[str]:
    """A govcloud project: the example topology and N departments with one active-standby system each."""
    if root.exists():
        shutil.rmtree(root)
    (root / "inventories" / "departments").mkdir(parents=True)
    shutil.copy(REPO / "inventories" / "topology.yaml", root / "inventories" / "topology.yaml")
    (root / "govcloud.yaml").write_text("version: 1\n")
    depts = []
    for i in range(n):
        d = f"{PREFIX}-d{i:02d}"
        depts.append(d)
        doc = {
            "version": 1,
            "department": {"id": d, "name": f"bench department {i}"},
            "systems": [{
                "id": f"{d}-app", "name": "bench system", "classification": 2, "tier": "important",
                "rto_minutes": 120, "rpo_minutes": 15, "depends_on": [],
                "window": {"days": ["sat"], "start": "22:00", "end": "06:00"},
                "placement": "active-standby", "resources": {"vcpus": 4, "ram_gb": 8, "storage_gb": 100},
                "hosts": [{"name": f"{d}-app-01", "address": f"10.240.{16 + i // 200}.{10 + i % 200}", "role": "app"}],
            }],
        }
        (root / "inventories" / "departments" / f"{d}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return depts


class Proxies:
    """Counting proxies for Keystone and each region's Nova/Neutron/Glance, and a clouds.yaml using them."""

    def __init__(self, clouds_yaml: Path) -> None:
        from openstack.config import OpenStackConfig
        from openstack.connection import Connection

        self.proxies: list[ApiProxy] = []
        cfg = OpenStackConfig(config_files=[str(clouds_yaml)], load_envvars=False)
        doc = yaml.safe_load(clouds_yaml.read_text())
        keystone = ApiProxy(doc["clouds"]["gz"]["auth"]["auth_url"])
        self._add(keystone)
        for cloud in ("gz", "st"):
            conn = Connection(config=cfg.get_one(cloud=cloud))
            entry = doc["clouds"][cloud]
            entry["auth"]["auth_url"] = keystone.url
            entry["identity_endpoint_override"] = keystone.url
            for service in ("network", "compute", "image"):
                entry[f"{service}_endpoint_override"] = self._add(ApiProxy(conn.endpoint_for(service))).url
            conn.close()
        self.clouds_yaml = WORK / "clouds-bench.yaml"
        fd = os.open(self.clouds_yaml, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump({"clouds": {k: doc["clouds"][k] for k in ("gz", "st")}}, fh)

    def _add(self, p: ApiProxy) -> ApiProxy:
        p.start()
        self.proxies.append(p)
        return p

    def count(self) -> int:
        return sum(p.requests for p in self.proxies)

    def stop(self) -> None:
        for p in self.proxies:
            p.stop()


def env_for(clouds_yaml: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["OS_CLIENT_CONFIG_FILE"] = str(clouds_yaml)
    env.update(extra or {})
    return env


def timed(argv: list[str], env: dict[str, str], proxies: Proxies, cwd: Path, log: Path) -> tuple[float, int, int]:
    before = proxies.count()
    t0 = time.monotonic()
    with log.open("w") as fh:
        rc = subprocess.run(argv, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT).returncode
    return time.monotonic() - t0, proxies.count() - before, rc


def peer_vars(root: Path, public_key: str) -> dict[str, Any]:
    """Inventory for the peer from govcloud's desired state: one host per (department, region)."""
    from govcloud.inventory import load_inventory
    from govcloud.provision import DesiredOptions, build_desired

    inv = load_inventory(root)
    desired = build_desired(inv, DesiredOptions(public_key=public_key))
    keystone: dict[str, Any] = {}
    regions: dict[str, Any] = {}
    for r in desired.resources:
        p = r.p
        if r.kind == "project":
            keystone[f"{r.department}"] = {"lz_cloud": "gz", "lz_project": r.name, "lz_description": p["description"],
                                           "ansible_connection": "local"}
            continue
        if r.region == "global":
            continue
        h = regions.setdefault(f"{r.department}-{r.region}", {
            "lz_cloud": r.region, "lz_project": f"gov-{r.department}", "lz_subnets": [], "lz_security_groups": [],
            "lz_rules": [], "lz_public_key": public_key, "ansible_connection": "local"})
        if r.kind == "quota_compute" or r.kind == "quota_network":
            h.setdefault("lz_quota", {}).update(p)
        elif r.kind == "subnet":
            h["lz_subnets"].append({"name": r.name, "cidr": p["cidr"], "gateway_ip": p["gateway_ip"]})
        elif r.kind == "security_group":
            h["lz_security_groups"].append({"name": r.name, "description": p["description"]})
            for rule in p["rules"]:
                proto, ports, cidr = rule.split(":", 2)
                item: dict[str, Any] = {"group": r.name, "protocol": proto, "cidr": cidr}
                if ports not in ("-", "any"):
                    item["port_min"] = item["port_max"] = int(ports)
                h["lz_rules"].append(item)
    return {"keystone": {"hosts": keystone}, "regions": {"hosts": regions}}


def cleanup(clouds_yaml: Path) -> None:
    """Remove every gov-b4-* object in both regions (the peer's objects carry no tags, so not via prune)."""
    from openstack.config import OpenStackConfig
    from openstack.connection import Connection

    from devcloud.testing import purge_prefixed

    cfg = OpenStackConfig(config_files=[str(clouds_yaml)], load_envvars=False)
    purge_prefixed(lambda cloud: Connection(config=cfg.get_one(cloud=cloud)), PREFIX)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--departments", type=int, default=20)
    ap.add_argument("--peer-venv", type=Path, default=WORK / "peer-venv")
    ap.add_argument("--collections", type=Path, default=WORK / "collections")
    ap.add_argument("--forks", type=int, default=10)
    ap.add_argument("--skip-peer", action="store_true")
    args = ap.parse_args()

    paths = DevcloudPaths.from_env()
    WORK.mkdir(parents=True, exist_ok=True)
    root = WORK / "project"
    depts = make_project(root, args.departments)
    state = WORK / "state"
    os.environ["GOVCLOUD_STATE_DIR"] = str(state)
    from govcloud.services.provision import ops_key

    public_key = ops_key(state)[1]
    cleanup(paths.clouds_yaml)
    proxies = Proxies(paths.clouds_yaml)
    rows: list[tuple[str, str, float, int, int]] = []
    try:
        gov = [str(Path(sys.executable).parent / "govcloud"), "--root", str(root), "-q", "provision", "apply",
               "--concurrency", "8"]
        genv = env_for(proxies.clouds_yaml, {"GOVCLOUD_STATE_DIR": str(state), "PYTHONPATH": str(REPO)})
        sec, req, rc = timed([*gov], genv, proxies, root, WORK / "govcloud-apply.log")
        rows.append(("govcloud", "apply from empty", sec, req, rc))
        sec, req, rc = timed([*gov], genv, proxies, root, WORK / "govcloud-noop.log")
        rows.append(("govcloud", "no-op re-run", sec, req, rc))
        cleanup(paths.clouds_yaml)
        if not args.skip_peer:
            inv_path = WORK / "peer-inventory.json"
            inv_path.write_text(json.dumps(peer_vars(root, public_key), indent=1))
            penv = env_for(proxies.clouds_yaml, {
                "ANSIBLE_COLLECTIONS_PATH": str(args.collections),
                "PATH": f"{args.peer_venv / 'bin'}:{os.environ.get('PATH', '')}",
                "ANSIBLE_PYTHON_INTERPRETER": str(args.peer_venv / "bin" / "python"),
                "ANSIBLE_FORKS": str(args.forks),
                "ANSIBLE_HOST_KEY_CHECKING": "False",  # connection local only
                "ANSIBLE_NOCOLOR": "1",
            })
            peer = [str(args.peer_venv / "bin" / "ansible-playbook"), "-i", str(inv_path),
                    str(REPO / "bench" / "peer" / "landing_zone.yml")]
            sec, req, rc = timed(peer, penv, proxies, WORK, WORK / "peer-apply.log")
            rows.append(("openstack.cloud", "apply from empty", sec, req, rc))
            sec, req, rc = timed(peer, penv, proxies, WORK, WORK / "peer-noop.log")
            rows.append(("openstack.cloud", "no-op re-run", sec, req, rc))
            cleanup(paths.clouds_yaml)
    finally:
        proxies.stop()

    results = WORK / "bench-results.json"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if args.skip_peer and results.exists():  # reuse the last measured peer rows (the peer takes ~20 min)
        old = json.loads(results.read_text())
        rows += [(t, r, sec, req, rc) for t, r, sec, req, rc, *_ in old.get("rows", []) if t == "openstack.cloud"]
        print(f"(openstack.cloud rows reused from {old.get('peer_measured_at', '?')})")
    peer_at = stamp if not args.skip_peer else (json.loads(results.read_text()).get("peer_measured_at", "?")
                                                 if results.exists() else "-")
    results.write_text(json.dumps({"measured_at": stamp, "peer_measured_at": peer_at, "departments": len(depts),
                                   "rows": rows}, indent=1))
    print(f"landing zones: {len(depts)} departments x 2 regions (devcloud); logs in {WORK}")
    print(f"{'tool':<16} {'run':<18} {'wall s':>8} {'API requests':>13} {'rc':>3}")
    for tool, run, sec, req, rc in rows:
        print(f"{tool:<16} {run:<18} {sec:>8.1f} {req:>13} {rc:>3}")
    by = {(t, r): (s, q) for t, r, s, q, _ in rows}
    for run in ("apply from empty", "no-op re-run"):
        if ("openstack.cloud", run) in by and ("govcloud", run) in by:
            (gs, gq), (ps, pq) = by[("govcloud", run)], by[("openstack.cloud", run)]
            print(f"ratio {run}: {ps / gs:.1f}x faster, {pq / max(gq, 1):.1f}x fewer requests")
    return 0 if all(rc == 0 for *_, rc in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
