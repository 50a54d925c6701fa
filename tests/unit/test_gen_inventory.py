"""The benchmark's synthetic inventory generator is deterministic and valid."""

from __future__ import annotations

from pathlib import Path

from bench.gen_inventory import generate
from govcloud.inventory import load_inventory
from govcloud.planning.graph import components_in_order, dependency_graph


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.yaml"))}


def test_same_seed_same_bytes_and_valid(tmp_path: Path) -> None:
    generate(tmp_path / "a" / "inventories", systems=300, departments=6, edges=700, seed=7)
    generate(tmp_path / "b" / "inventories", systems=300, departments=6, edges=700, seed=7)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    inv = load_inventory(tmp_path / "a")
    assert len(inv.systems) == 300
    assert sum(len(s.depends_on) for s in inv.systems) == 700
    assert any(c.is_cycle for c in components_in_order(dependency_graph(inv)))
