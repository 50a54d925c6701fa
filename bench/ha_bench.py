"""Benchmark: HA drills on Patroni (issue 31), N runs per scenario; min / median / max RTO, pause, loss.

Each run is a real `govcloud ha drill` on the lab's database hosts (etcd, Patroni 4.1.5, PostgreSQL 15,
deployed by `govcloud ha deploy`): blackhole routes cut the scenario's sites, a writer commits every
50 ms through the service name, the drill's follower moves the name. After each site-loss of the
leader's site, `ha switchover --to` the home member (timed too: planned, zero loss).

The peer is Patroni's own floor, its leader key's ttl (20 s): RTO / ttl is printed beside each RTO.
The accelerator (govcloud's quorum detector revoking the dead leader's lease) is the second column
of issue 31's benchmark; it is not built yet, so this script measures Patroni alone.

    .venv/bin/python bench/ha_bench.py [--runs 5] [--scenario site-loss:gz-a ...] [--json out.json]

Brings up the lab, its DNS and the database hosts when missing; removes the database hosts at the end.
The project is the shipped inventories with the service renamed `pgha` (the lab's zone also holds the
home-made controller's `pg`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SCENARIOS = ("site-loss:gz-a", "site-loss:gz-b", "partition:gz-a/st-a")
DB_HOSTS = ("gz-a-db1", "gz-b-db1", "st-a-db1")
TTL_S = 20.0


def project(tmp: Path) -> Path:
    root = tmp / "root"
    shutil.copytree(REPO / "inventories", root / "inventories")
    (root / "govcloud.yaml").write_text("version: 1\n")
    topology = root / "inventories" / "topology.yaml"
    topology.write_text(re.sub(r"(\n    name: )pg(\s)", r"\g<1>pgha\g<2>", topology.read_text(), count=1))
    return root


def spread(xs: list[float]) -> str:
    return "-" if not xs else f"{min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scenario", action="append", default=[])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    scenarios = args.scenario or list(SCENARIOS)

    from devcloud.lab.dbhosts import create_db_hosts
    from devcloud.lab.dns import LabDns
    from devcloud.lab.testing import lab_session
    from govcloud.services.ha import HaDeployOptions, deploy
    from govcloud.services.ha_drill import HaDrillOptions, run_drill
    from govcloud.services.ha_ops import switchover

    print(f"load average at the start: {os.getloadavg()[0]:.2f}")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, lab_session() as lab:
        os.environ["GOVCLOUD_STATE_DIR"] = str(Path(tmp) / "state")
        dns = LabDns(lab)
        dns.up()
        lab.remove_hosts(DB_HOSTS)
        root = project(Path(tmp))
        create_db_hosts(lab, root / "inventories")
        try:
            t0 = time.monotonic()
            deploy(root, HaDeployOptions(known_hosts=lab.known_hosts, ssh_key=lab.controller_key, dns_key=dns.key_path))
            print(f"ha deploy (first): {time.monotonic() - t0:.1f} s")
            options = HaDrillOptions(known_hosts=lab.known_hosts, ssh_key=lab.controller_key, dns_key=dns.key_path)
            homes: list[float] = []
            for scenario in scenarios:
                reports = []
                for _ in range(args.runs):
                    r = run_drill(root, scenario, options)
                    reports.append(r)
                    if r.leader_lost:
                        homes.append(switchover(root, r.old_leader, dns_key=dns.key_path).seconds)
                results[scenario] = [r.__dict__ for r in reports]
                rtos = [r.rto_s for r in reports if r.rto_s is not None]
                print(f"{scenario}: failovers {sum(r.new_leader != r.old_leader for r in reports)}/{len(reports)}; "
                      f"RTO {spread(rtos)} s (RTO/ttl {spread([x / TTL_S for x in rtos])}); "
                      f"new leader seen {spread([r.leader_seen_s for r in reports if r.leader_seen_s is not None])} s; "
                      f"name moved {spread([r.name_moved_s for r in reports if r.name_moved_s is not None])} s; "
                      f"longest pause {spread([r.longest_pause_s for r in reports])} s; "
                      f"lost {sum(len(r.lost) for r in reports)} of {sum(r.acked for r in reports)} acknowledged; "
                      f"most writable at once {max(r.max_writable for r in reports)}")
            if homes:
                print(f"ha switchover home (planned): {spread(homes)} s over {len(homes)}")
        finally:
            lab.remove_hosts(DB_HOSTS)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
