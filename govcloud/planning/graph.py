"""The dependency graph of systems and its strongly connected components (cycles move together)."""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from govcloud.model import Inventory


@dataclass(frozen=True)
class Component:
    """A strongly connected component: one system, or a cycle of systems that must share a wave."""

    index: int
    members: tuple[str, ...]  # sorted
    depends_on: tuple[int, ...]  # indices of components this one needs first

    @property
    def is_cycle(self) -> bool:
        return len(self.members) > 1

    @property
    def label(self) -> str:
        return self.members[0] if len(self.members) == 1 else "cycle(" + ", ".join(self.members) + ")"


def dependency_graph(inventory: Inventory) -> nx.DiGraph:
    """Edge dep -> system: the dependency must move no later than the system."""
    g = nx.DiGraph()
    g.add_nodes_from(s.id for s in inventory.systems)
    g.add_edges_from((dep, s.id) for s in inventory.systems for dep in s.depends_on if dep != s.id)
    return g


def components_in_order(graph: nx.DiGraph) -> list[Component]:
    """Components in a deterministic topological order (ties broken by smallest member id)."""
    cond = nx.condensation(graph)
    mapping: dict[int, tuple[str, ...]] = {n: tuple(sorted(cond.nodes[n]["members"])) for n in cond.nodes}
    order = list(nx.lexicographical_topological_sort(cond, key=lambda n: mapping[n][0]))
    position = {n: i for i, n in enumerate(order)}
    return [
        Component(position[n], mapping[n], tuple(sorted(position[p] for p in cond.predecessors(n))))
        for n in order
    ]
