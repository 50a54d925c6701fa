"""Generate a large synthetic inventory (format v1) for the planner benchmark.

Why synthetic: the shipped example has 200 systems; the planner must stay fast at the scale of a
whole province (the talk counts "1000+ systems in each department"). The shape mimics the example:
a layered dependency graph pointing down toward a few shared "base" systems (population / legal-person
databases, identity, data exchange), plus small mutual-dependency cycles whose members share one
maintenance window, so every hard constraint of the planner stays satisfiable.

Deterministic for a seed (one ``random.Random``), and fast: the YAML text is built directly instead of
going through a dumper (10,000 systems in well under a second).

    python bench/gen_inventory.py OUT_DIR --systems 10000 --departments 100 --edges 30000 --seed 1
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# Maintenance-window patterns (days, start, end, weight); every one is at least 2 hours long.
# An end before the start runs past midnight.
WINDOWS: tuple[tuple[tuple[str, ...], str, str, float], ...] = (
    (("sat", "sun"), "22:00", "06:00", 0.40),
    (("sat",), "00:00", "08:00", 0.14),
    (("tue", "thu"), "23:00", "05:00", 0.12),
    (("sun",), "01:00", "05:00", 0.08),
    (("mon", "wed"), "22:00", "02:00", 0.07),
    (("fri",), "23:00", "02:00", 0.06),
    (("sun",), "08:00", "12:00", 0.05),
    (("wed",), "01:00", "03:00", 0.04),
    (("sat",), "13:00", "18:00", 0.04),
)

# (vcpus, ram_gb, storage_gb) choices per tier, with weights.
SIZES: dict[str, tuple[tuple[tuple[int, int, int], float], ...]] = {
    "base": (((32, 128, 6000), 0.4), ((64, 256, 12000), 0.4), ((64, 256, 20000), 0.2)),
    "critical": (((16, 48, 1500), 0.3), ((24, 96, 3000), 0.35), ((32, 128, 6000), 0.25), ((64, 256, 12000), 0.1)),
    "important": (((8, 32, 800), 0.35), ((16, 48, 1500), 0.35), ((24, 96, 3000), 0.2), ((32, 128, 6000), 0.1)),
    "normal": (((4, 8, 200), 0.4), ((4, 16, 300), 0.3), ((8, 32, 800), 0.2), ((16, 48, 1500), 0.1)),
}
PLACEMENT = {"critical": "active-active", "important": "active-standby", "normal": "single"}
# Layers 1..5 for non-base systems: platform, department core, services, applications, portals/reports.
LAYER_WEIGHTS = (0.05, 0.17, 0.40, 0.28, 0.10)
# Where a dependency edge points: a base system, a lower layer of the same department, anything lower.
P_TO_BASE, P_SAME_DEPT = 0.45, 0.30

DOMAINS = ("社会保险", "户籍", "婚姻登记", "医疗卫生", "市场监管", "不动产", "学籍", "道路运输", "税收征管", "财政预算",
           "生态环境", "住房公积金", "农业补贴", "水利监测", "应急指挥", "文化旅游", "医保结算", "公共法律", "统计调查",
           "对外贸易", "电子证照", "信用监管", "政务服务", "协同办公")
KINDS = ("业务系统", "管理系统", "服务平台", "监管系统", "查询服务", "数据仓库", "审批系统", "监测预警系统")
BASE_CAPACITY = {  # the shipped example topology; capacities are scaled to fit the generated load
    "gz-a": (4096, 16384, 2_000_000),
    "gz-b": (4096, 16384, 2_000_000),
    "st-a": (2048, 8192, 1_000_000),
}
HEADROOM = 1.25


@dataclass
class _System:
    index: int
    department: int
    layer: int
    tier: str = "normal"
    classification: int = 2
    window: int = 0
    rto: int = 720
    rpo: int = 240
    resources: tuple[int, int, int] = (4, 8, 200)
    hosts: int = 1
    depends_on: list[int] = field(default_factory=list)


@dataclass
class Synthetic:
    """An in-memory synthetic inventory plus the figures a benchmark wants to print."""

    departments: int
    systems: list[_System]
    cycles: list[list[int]]
    scale: int
    seed: int

    @property
    def edges(self) -> int:
        return sum(len(s.depends_on) for s in self.systems)


def _sid(s: _System) -> str:
    return f"d{s.department:03d}-s{s.index:05d}"


def _split(total: int, parts: int, rng: random.Random) -> list[int]:
    """Split ``total`` into ``parts`` positive sizes that vary by about +-50%."""
    weights = [rng.uniform(0.5, 1.5) for _ in range(parts)]
    scale = total / sum(weights)
    sizes = [max(1, int(w * scale)) for w in weights]
    i = 0
    while sum(sizes) < total:
        sizes[i % parts] += 1
        i += 1
    while sum(sizes) > total:
        if sizes[i % parts] > 1:
            sizes[i % parts] -= 1
        i += 1
    return sizes


def build(*, systems: int = 10_000, departments: int = 100, edges: int = 30_000, seed: int = 1,
          cycles: int | None = None) -> Synthetic:
    """Build the inventory in memory (pure; the same arguments give the same result)."""
    if departments < 2 or systems < 2 * departments:
        raise ValueError("need at least 2 departments and 2 systems per department")
    rng = random.Random(seed)
    n_base = max(2, systems // 100)
    n_cycles = max(0, round(systems / 200)) if cycles is None else cycles
    n_cycles = min(n_cycles, edges // 8)

    # Department 0 is the data bureau holding the base systems; the rest share the other systems.
    sizes = [n_base] + _split(systems - n_base, departments - 1, rng)
    dept_windows = [rng.choices(range(len(WINDOWS)), [w[3] for w in WINDOWS])[0] for _ in range(departments)]
    window_weights = [w[3] for w in WINDOWS]
    syss: list[_System] = []
    for d, size in enumerate(sizes):
        for _ in range(size):
            layer = 0 if d == 0 else rng.choices((1, 2, 3, 4, 5), LAYER_WEIGHTS)[0]
            s = _System(index=len(syss), department=d, layer=layer)
            if layer == 0:
                s.tier = "critical"
            elif layer == 1:
                s.tier = rng.choice(("critical", "important"))
            else:
                s.tier = rng.choices(("critical", "important", "normal"), (0.10, 0.35, 0.55))[0]
            if s.tier == "critical":
                s.classification = rng.choices((3, 4), (0.7, 0.3))[0]
                s.rto, s.rpo = rng.choice((10, 15, 30)), 0
            elif s.tier == "important":
                s.classification = rng.choices((2, 3, 4), (0.4, 0.5, 0.1))[0]
                s.rto, s.rpo = rng.choice((60, 120, 240)), rng.choice((5, 15, 30))
            else:  # never classification 4: a level-4 system is not placed "single"
                s.classification = rng.choices((1, 2, 3), (0.1, 0.7, 0.2))[0]
                s.rto, s.rpo = rng.choice((480, 720, 1440)), rng.choice((60, 240, 1440))
            table = SIZES["base" if layer == 0 else s.tier]
            s.resources = rng.choices([t[0] for t in table], [t[1] for t in table])[0]
            s.hosts = 2 if s.tier != "normal" or rng.random() < 0.3 else 1
            s.window = dept_windows[d] if rng.random() < 0.6 else rng.choices(range(len(WINDOWS)), window_weights)[0]
            syss.append(s)

    # Per-layer and per-department indexes for sampling "something lower".
    by_layer = sorted(syss, key=lambda s: (s.layer, s.index))
    below = [0] * 7  # below[L] = number of systems with layer < L (prefix of by_layer)
    for s in syss:
        below[s.layer + 1] += 1
    for layer in range(1, 7):
        below[layer] += below[layer - 1]
    dept_by_layer: list[list[_System]] = [[] for _ in range(departments)]
    for s in by_layer:
        dept_by_layer[s.department].append(s)
    dept_below: list[list[int]] = []
    for members in dept_by_layer:
        counts = [0] * 7
        for s in members:
            counts[s.layer + 1] += 1
        for layer in range(1, 7):
            counts[layer] += counts[layer - 1]
        dept_below.append(counts)

    # Small cycles (2-4 systems) inside one layer, half within a department; members share a window.
    seen: set[tuple[int, int]] = set()
    in_cycle: set[int] = set()
    cycle_list: list[list[int]] = []
    candidates = [s for s in syss if 2 <= s.layer <= 4]
    if len(candidates) < 2:
        n_cycles = 0
    attempts = 0
    while len(cycle_list) < n_cycles:
        attempts += 1
        if attempts > 100 * (n_cycles + 1):
            raise ValueError(f"could only place {len(cycle_list)} of {n_cycles} cycles")
        k = rng.choice((2, 2, 3, 3, 4))
        first = rng.choice(candidates)
        pool = ([s for s in dept_by_layer[first.department] if s.layer == first.layer]
                if rng.random() < 0.5 else [s for s in candidates if s.layer == first.layer])
        members = [first] + rng.sample(pool, min(k - 1, len(pool)))
        ids = [m.index for m in members]
        if len(members) < 2 or len(set(ids)) != len(ids) or in_cycle.intersection(ids):
            continue
        in_cycle.update(ids)
        for a, b in zip(ids, ids[1:] + ids[:1]):
            syss[a].depends_on.append(b)
            seen.add((a, b))
            syss[a].window = first.window
        cycle_list.append(ids)

    # The DAG edges: strictly to a lower layer, so the only cycles are the ones made above.
    dag_edges = edges - len(seen)
    if dag_edges < 0:
        raise ValueError("more cycle edges than edges requested")
    sources = [s for s in syss if s.layer >= 1]
    attempts = 0
    while len(seen) < edges:
        attempts += 1
        if attempts > 20 * edges + 1000:
            raise ValueError(f"could only place {len(seen)} of {edges} distinct edges; ask for fewer")
        src = rng.choice(sources)
        r = rng.random()
        if r < P_TO_BASE:
            dst = by_layer[rng.randrange(below[1])]
        elif r < P_TO_BASE + P_SAME_DEPT and dept_below[src.department][src.layer] > 0:
            dst = dept_by_layer[src.department][rng.randrange(dept_below[src.department][src.layer])]
        else:
            dst = by_layer[rng.randrange(below[src.layer])]
        if (src.index, dst.index) in seen:
            continue
        seen.add((src.index, dst.index))
        src.depends_on.append(dst.index)

    for s in syss:
        s.depends_on.sort()
    return Synthetic(departments, syss, cycle_list, _scale(syss), seed)


def _scale(syss: list[_System]) -> int:
    """Smallest integer capacity multiplier (with headroom) at which the planner's placement fits."""
    gz = [0, 0, 0]  # AA: half on each gz site; AS and single: whole on one gz site
    st = [0, 0, 0]  # AS (and AA, whose DR copy the planner also places there): whole on st-a
    for s in syss:
        for k in range(3):
            gz[k] += s.resources[k]
            if s.tier != "normal":
                st[k] += s.resources[k]
    ratio = max(max(gz[k] / (BASE_CAPACITY["gz-a"][k] + BASE_CAPACITY["gz-b"][k]) for k in range(3)),
                max(st[k] / BASE_CAPACITY["st-a"][k] for k in range(3)))
    return max(1, math.ceil(ratio * HEADROOM))


def _window_text(i: int) -> str:
    days, start, end, _ = WINDOWS[i]
    return f'{{days: [{", ".join(days)}], start: "{start}", end: "{end}"}}'


def topology_text(scale: int) -> str:
    def site(name: str) -> str:
        v, r, st = (x * scale for x in BASE_CAPACITY[name])
        return f"      {name}: {{availability_zone: {name}, capacity: {{vcpus: {v}, ram_gb: {r}, storage_gb: {st}}}}}"

    return "\n".join([
        f"# Synthetic topology from bench/gen_inventory.py: the example's, capacities x{scale}.",
        "version: 1",
        "name: gd-govcloud-synthetic",
        "regions:",
        "  gz:",
        "    role: primary",
        "    openstack: {cloud: gz, region_name: RegionGZ}",
        "    network_pool: 10.244.0.0/15",
        "    sites:",
        site("gz-a"),
        site("gz-b"),
        "  st:",
        "    role: backup",
        "    openstack: {cloud: st, region_name: RegionST}",
        "    network_pool: 10.246.0.0/15",
        "    sites:",
        site("st-a"),
        "replication:",
        "  - {from: gz-a, to: gz-b, mode: sync}",
        "  - {from: gz, to: st, mode: async, max_lag_seconds: 30}",
        "security:",
        "  ops_cidrs: [10.240.0.0/24]",
        "",
    ])


def write(inv: Synthetic, out_dir: Path) -> None:
    """Write ``topology.yaml`` and ``departments/dNNN.yaml`` under ``out_dir`` (files are replaced)."""
    out_dir = Path(out_dir)
    (out_dir / "departments").mkdir(parents=True, exist_ok=True)
    (out_dir / "topology.yaml").write_text(topology_text(inv.scale), encoding="utf-8")
    windows = [_window_text(i) for i in range(len(WINDOWS))]
    ids = [_sid(s) for s in inv.systems]
    per_dept: list[list[_System]] = [[] for _ in range(inv.departments)]
    for s in inv.systems:
        per_dept[s.department].append(s)
    address = (10 << 24) | (128 << 16) | 10  # 10.128.0.10, outside the lab range; never contacted
    for d, members in enumerate(per_dept):
        dep = f"d{d:03d}"
        name = "合成数据管理局（基础库）" if d == 0 else f"合成部门{d:03d}"
        out = [f"# Synthetic department from bench/gen_inventory.py (seed {inv.seed}).", "version: 1",
               f"department: {{id: {dep}, name: {name}}}", "systems:"]
        append = out.append
        for s in members:
            sid = ids[s.index]
            v, r, st = s.resources
            append(f"  - id: {sid}")
            append(f"    name: {DOMAINS[s.index % len(DOMAINS)]}{KINDS[s.index % len(KINDS)]}{s.index:05d}")
            append(f"    classification: {s.classification}")
            append(f"    tier: {s.tier}")
            append(f"    rto_minutes: {s.rto}")
            append(f"    rpo_minutes: {s.rpo}")
            append(f"    depends_on: [{', '.join(ids[i] for i in s.depends_on)}]")
            append(f"    window: {windows[s.window]}")
            append(f"    placement: {PLACEMENT[s.tier]}")
            append(f"    resources: {{vcpus: {v}, ram_gb: {r}, storage_gb: {st}}}")
            append("    hosts:")
            for role in ("app", "db")[: s.hosts]:
                a = address
                address += 1
                append(f"      - {{name: {sid}-{role}-01, address: {a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}."
                       f"{a & 255}, port: 22, user: root, role: {role}, data: [/srv/{sid}/{role}]}}")
        (out_dir / "departments" / f"{dep}.yaml").write_text("\n".join(out) + "\n", encoding="utf-8")


def generate(out_dir: Path, *, systems: int, departments: int, edges: int, seed: int) -> None:
    """Build and write a synthetic inventory (the benchmark's entry point)."""
    write(build(systems=systems, departments=departments, edges=edges, seed=seed), out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--systems", type=int, default=10_000)
    parser.add_argument("--departments", type=int, default=100)
    parser.add_argument("--edges", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        inv = build(systems=args.systems, departments=args.departments, edges=args.edges, seed=args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t1 = time.perf_counter()
    write(inv, args.out_dir)
    t2 = time.perf_counter()
    print(f"{args.out_dir}: {inv.departments} departments, {len(inv.systems)} systems, {inv.edges} edges, "
          f"{len(inv.cycles)} cycles, {len({s.window for s in inv.systems})} windows, capacity x{inv.scale}; "
          f"build {t1 - t0:.2f}s, write {t2 - t1:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
