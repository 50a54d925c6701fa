"""Benchmark: failover drills on the devcloud lab, N runs per scenario; min / median / max RTO and RPO.

Each run is a real drill (``govcloud failover drill``): PostgreSQL 15 primary in gz-a, synchronous
standby in gz-b, asynchronous standby in st-a; a writer commits through the name pg.<zone> throughout
(resolved as a client does; the failover's RTO includes the DNS switch);
the links are cut with the lab; the controller decides from real probes and runs the runbook. Between
runs the cluster is failed back and switched home (``failback --switch-back``), timed as well.

    flock -x /var/tmp/govcloud-labcut.lock .venv/bin/python bench/failover_bench.py [--runs 5] \
        [--scenario site-loss:gz-a --scenario region-loss:gz] [--json out.json]

Needs the lab up and ``devcloud lab pg up`` (run here when the cluster is missing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devcloud.lab.pg import LabPostgres
from govcloud.services.failover import Controller, Journal, failback
from govcloud.services.failover_drill import LAB_POLICY, DrillOptions, run_drill
from govcloud.services.failover_lab import LabBackend, lab_names

SCENARIOS = ("site-loss:gz-a", "region-loss:gz")


def home(root: Path) -> float:
    """Fail back and switch home when needed; returns the seconds it took (0 when already home)."""
    backend = LabBackend()
    journal = Journal(root / ".govcloud" / "failover.db")
    try:
        names = lab_names()
        row = Controller(backend, journal, LAB_POLICY, endpoints=names).cluster()
        if backend.healthy()["healthy"] and row.primary == backend.home_primary and \
                backend.primaries() == [row.primary]:
            return 0.0
        t0 = time.monotonic()
        failback(backend, journal, names, switch_back=True)
        return time.monotonic() - t0
    finally:
        journal.close()


def stats(xs: list[float]) -> str:
    if not xs:
        return "-"
    return f"{min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scenario", action="append", default=None, help="repeatable; default: the failover ones")
    ap.add_argument("--json", type=Path, default=None, help="write every drill report here")
    args = ap.parse_args(argv)
    LabPostgres().up()
    root = Path(tempfile.mkdtemp(prefix="govcloud-failover-bench-"))
    (root / "govcloud.yaml").write_text("version: 1\n")
    all_reports: dict[str, list[dict[str, Any]]] = {}
    failbacks: list[float] = []
    rows = []
    for sc in args.scenario or SCENARIOS:
        reports = []
        for i in range(args.runs):
            fb = home(root)
            if fb:
                failbacks.append(fb)
            r = run_drill(root, sc, DrillOptions())
            reports.append(r)
            print(f"{sc} run {i + 1}: failover={r['failover']} RTO {r['rto_s']} s, detection {r['detection_s']} s, "
                  f"lost {r['lost_commits']}/{r['acknowledged_commits']}, primary {r['primary_after']}", flush=True)
        all_reports[sc] = reports
        ok = [r for r in reports if r["failover"]]
        rows.append((sc, len(ok), len(reports), stats([r["rto_s"] for r in ok if r["rto_s"] is not None]),
                     stats([r["detection_s"] for r in ok if r["detection_s"] is not None]),
                     stats([r["client_rto_s"] for r in ok if r["client_rto_s"] is not None]),
                     stats([float(r["lost_commits"]) for r in reports]),
                     stats([r["rpo_s"] for r in reports if r["rpo_s"] is not None]),
                     all(r["exactly_one_primary"] for r in reports),
                     stats([r["move_endpoint_s"] for r in ok if r.get("move_endpoint_s") is not None]),
                     sum(1 for r in ok if r.get("names", {}).get("old_address_answered")),
                     stats([r["names"]["servers_serving_s"] for r in ok
                            if r.get("names", {}).get("servers_serving_s") is not None])))
    failbacks.append(home(root))
    print()
    print("| scenario | failovers | RTO s (min / median / max) | detection s | client RTO s | lost commits | RPO s "
          "| exactly one primary | DNS switch step s | runs where a server answered the old address | all servers "
          "serving after restore, s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for sc, n_ok, n, rto, det, crto, lost, rpo, one, sw, old, serving in rows:
        print(f"| {sc} | {n_ok}/{n} | {rto} | {det} | {crto} | {lost} | {rpo} | {'yes' if one else 'NO'} | {sw} "
              f"| {old} | {serving} |")
    print(f"\nfailback --switch-back (pg_rewind + switchover): {stats([f for f in failbacks if f])} s "
          f"over {len([f for f in failbacks if f])} runs")
    if args.json:
        args.json.write_text(json.dumps(all_reports, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
