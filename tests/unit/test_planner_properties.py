"""For random valid inventories, every hard constraint holds, and planning is byte-deterministic."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path

import networkx as nx
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from govcloud.inventory import load_inventory
from govcloud.inventory.yamlio import parse_yaml
from govcloud.model import DAYS, Inventory, Placement, Plan, Resources
from govcloud.planning.check import check_plan
from govcloud.planning.planfile import render_plan
from govcloud.planning.waves import PlanOptions, plan_waves
from govcloud.planning.windows import contains, has_run, window_mask

TOPOLOGY = {
    "version": 1, "name": "prop",
    "regions": {
        "gz": {"role": "primary", "openstack": {"cloud": "gz", "region_name": "RegionGZ"},
               "sites": {"gz-a": {"availability_zone": "gz-a", "capacity": {"vcpus": 10000, "ram_gb": 40000, "storage_gb": 10**7}},
                         "gz-b": {"availability_zone": "gz-b", "capacity": {"vcpus": 10000, "ram_gb": 40000, "storage_gb": 10**7}}}},
        "st": {"role": "backup", "openstack": {"cloud": "st", "region_name": "RegionST"},
               "sites": {"st-a": {"availability_zone": "st-a", "capacity": {"vcpus": 10000, "ram_gb": 40000, "storage_gb": 10**7}}}},
    },
    "replication": [{"from": "gz-a", "to": "gz-b", "mode": "sync"}, {"from": "gz", "to": "st", "mode": "async"}],
}

window_st = st.builds(
    lambda days, start_h, start_m, length: {
        "days": sorted(days, key=DAYS.index),
        "start": f"{start_h:02d}:{start_m:02d}",
        "end": f"{(start_h + (start_m + length) // 60) % 24:02d}:{(start_m + length) % 60:02d}",
    },
    st.sets(st.sampled_from(DAYS), min_size=1, max_size=3),
    st.integers(0, 23), st.sampled_from([0, 15, 30, 45]), st.integers(120, 600),
)


@st.composite
def inventories(draw: st.DrawFn) -> dict[str, object]:
    n = draw(st.integers(1, 40))
    windows = draw(st.lists(window_st, min_size=1, max_size=4))
    systems = []
    for i in range(n):
        deps = draw(st.sets(st.integers(0, max(0, i - 1)), max_size=3)) if i else set()
        systems.append({
            "id": f"s{i:03d}", "name": f"system {i}", "classification": draw(st.integers(1, 3)),
            "tier": draw(st.sampled_from(["critical", "important", "normal"])),
            "rto_minutes": 60, "rpo_minutes": 15,
            "depends_on": [f"s{d:03d}" for d in sorted(deps)],
            "window": dict(draw(st.sampled_from(windows))),
            "placement": draw(st.sampled_from([p.value for p in Placement])),
            "resources": {"vcpus": draw(st.integers(1, 64)), "ram_gb": draw(st.integers(1, 256)),
                          "storage_gb": draw(st.integers(0, 5000))},
        })
    # a few back edges make cycles; members of a cycle then share one window
    for _ in range(draw(st.integers(0, 3))):
        if n < 2:
            break
        a, b = sorted(draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True)))
        systems[a]["depends_on"] = sorted({*systems[a]["depends_on"], f"s{b:03d}"})  # type: ignore[misc]
    g = nx.DiGraph()
    g.add_nodes_from(s["id"] for s in systems)
    g.add_edges_from((d, s["id"]) for s in systems for d in s["depends_on"])  # type: ignore[attr-defined]
    by_id = {s["id"]: s for s in systems}
    for comp in nx.strongly_connected_components(g):
        members = sorted(comp)
        for m in members[1:]:
            by_id[m]["window"] = dict(by_id[members[0]]["window"])  # type: ignore[arg-type]
    split = draw(st.integers(1, 3))
    return {"systems": systems, "departments": split, "max_per_wave": draw(st.integers(1, 12))}


def write_inventory(root: Path, spec: dict[str, object]) -> None:
    (root / "inventories" / "departments").mkdir(parents=True)
    (root / "inventories" / "topology.yaml").write_text(yaml.safe_dump(TOPOLOGY))
    systems: list[dict[str, object]] = spec["systems"]  # type: ignore[assignment]
    k = int(spec["departments"])  # type: ignore[call-overload]
    for d in range(k):
        doc = {"version": 1, "department": {"id": f"d{d}", "name": f"dept {d}"}, "systems": systems[d::k]}
        (root / "inventories" / "departments" / f"d{d}.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))


def assert_hard_constraints(inv: Inventory, plan: Plan, max_per_wave: int, min_window: int) -> None:
    wave_of: dict[str, int] = {}
    for w in plan.waves:
        for ps in w.systems:
            assert ps.id not in wave_of, f"{ps.id} in two waves"
            wave_of[ps.id] = w.number
    assert set(wave_of) == {s.id for s in inv.systems}, "every system in exactly one wave"
    g = nx.DiGraph()
    g.add_nodes_from(wave_of)
    for s in inv.systems:
        for d in s.depends_on:
            g.add_edge(d, s.id)
            assert wave_of[d] <= wave_of[s.id], f"{s.id} before its dependency {d}"
    cycles = [frozenset(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    for c in cycles:
        assert len({wave_of[m] for m in c}) == 1, f"cycle {sorted(c)} split"
    for w in plan.waves:
        ids = frozenset(ps.id for ps in w.systems)
        assert len(ids) <= max_per_wave or ids in cycles, f"wave {w.number} too big"
        assert has_run(window_mask(w.window), min(min_window, 24 * 60 - 1)), "wave window too short"
        for ps in w.systems:
            assert contains(inv.system(ps.id).window, w.window), f"{ps.id} window does not contain wave {w.number}'s"
    used: dict[str, Resources] = defaultdict(Resources)
    for w in plan.waves:
        for ps in w.systems:
            s = inv.system(ps.id)
            p = ps.placement
            if s.placement is Placement.ACTIVE_ACTIVE:
                assert {p.primary, p.secondary} == {"gz-a", "gz-b"} and p.dr == "st-a"
                used[p.primary] += s.resources.halved()
                used[p.secondary] += s.resources.halved()  # type: ignore[index]
                used["st-a"] += s.resources
            elif s.placement is Placement.ACTIVE_STANDBY:
                assert p.primary in ("gz-a", "gz-b") and p.secondary is None and p.dr == "st-a"
                used[p.primary] += s.resources
                used["st-a"] += s.resources
            else:
                assert p.primary in ("gz-a", "gz-b") and p.secondary is None and p.dr is None
                used[p.primary] += s.resources
    for site, total in used.items():
        assert total.fits_in(inv.topology.site(site).capacity)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(inventories())
def test_every_hard_constraint_holds_and_output_is_deterministic(spec: dict[str, object]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_inventory(root, spec)
        inv = load_inventory(root)
        options = PlanOptions(max_per_wave=int(spec["max_per_wave"]))  # type: ignore[call-overload]
        first = render_plan(plan_waves(inv, options).plan)
        second = render_plan(plan_waves(load_inventory(root), options).plan)
        assert first == second, "planning twice must give identical bytes"
        result = plan_waves(inv, options)
        assert_hard_constraints(inv, result.plan, options.max_per_wave, options.min_window_minutes)
        assert len(result.plan.waves) >= result.lower_bound.value
        doc, problems = parse_yaml(first.encode(), "plan.yaml")
        assert doc is not None and not problems
        assert [d for d in check_plan(inv, doc) if d.severity == "error"] == []
