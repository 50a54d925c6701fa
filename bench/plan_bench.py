"""Benchmark: load, validate and plan a synthetic province-scale inventory.

Prints comparable figures: every phase is also given as a ratio to the peer run in the same
process, PyYAML's libyaml loader (``yaml.load(..., Loader=CSafeLoader)``) over the same files.

    .venv/bin/python bench/plan_bench.py [--systems 10000 --departments 100 --edges 30000 --seed 1]
"""

from __future__ import annotations

import argparse
import gc
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gen_inventory import generate  # noqa: E402
from govcloud.inventory.loader import validate_inventory  # noqa: E402
from govcloud.planning.waves import PlanOptions, plan_waves  # noqa: E402


def _peer_load(root: Path, *, gc_paused: bool = False) -> float:
    files = sorted((root / "inventories").rglob("*.yaml"))
    if gc_paused:
        gc.disable()
    t0 = time.perf_counter()
    for f in files:
        yaml.load(f.read_bytes(), Loader=yaml.CSafeLoader)
    elapsed = time.perf_counter() - t0
    gc.enable()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", type=int, default=10_000)
    ap.add_argument("--departments", type=int, default=100)
    ap.add_argument("--edges", type=int, default=30_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-per-wave", type=int, default=50)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root / "inventories", systems=args.systems, departments=args.departments, edges=args.edges, seed=args.seed)
        (root / "govcloud.yaml").write_text("version: 1\n")
        peer = _peer_load(root)
        peer_nogc = _peer_load(root, gc_paused=True)
        t0 = time.perf_counter()
        report = validate_inventory(root)
        t_validate = time.perf_counter() - t0
        if report.inventory is None:
            print("synthetic inventory is invalid:", *(d.render() for d in report.errors[:5]), sep="\n")
            return 1
        t0 = time.perf_counter()
        result = plan_waves(report.inventory, PlanOptions(max_per_wave=args.max_per_wave))
        t_plan = time.perf_counter() - t0
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        cli = subprocess.run([sys.executable, "-m", "govcloud", "--root", str(root), "-q", "plan"], capture_output=True, text=True)
        t_cli = time.perf_counter() - t0
        if cli.returncode != 0:
            print(cli.stderr)
            return 1
        bound = result.lower_bound
        print(f"inventory: {args.systems} systems, {args.departments} departments, {args.edges} dependency edges (seed {args.seed})")
        print(f"peer  yaml.load(CSafeLoader) of all files : {peer:6.2f} s  (1.00x)")
        print(f"peer, cyclic GC paused as govcloud does   : {peer_nogc:6.2f} s  ({peer_nogc / peer:.2f}x)")
        print(f"govcloud load + schema + checks (validate): {t_validate:6.2f} s  ({t_validate / peer:.2f}x peer load, "
              f"{t_validate / peer_nogc:.2f}x GC-paused peer)")
        print(f"govcloud planning (waves + placement)     : {t_plan:6.2f} s  ({t_plan / peer:.2f}x peer load, "
              f"{t_plan / peer_nogc:.2f}x GC-paused peer; goal <= 0.5x)")
        print(f"whole `govcloud plan` command (subprocess): {t_cli:6.2f} s  (goal < 5 s)")
        print(f"waves: {len(result.plan.waves)}  lower bound: {bound.value} (dependency chain {bound.dependency_chain}, "
              f"ceil(systems/max) {bound.capacity}, window conflicts {bound.window_conflicts})")
        print(f"peak RSS of this process: {peak_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
