"""The wave planner: a pure function from a validated inventory to a migration plan.

List scheduling over the dependency components (a cycle is one component): waves are filled one
at a time. A wave starts from the window pattern with the most systems ready to move (all their
dependencies already placed), then keeps taking ready components whose window still shares at
least ``min_window_minutes`` with the wave's, longest remaining dependency chain first and
same-window components before ones that would narrow the wave's window. Placing a component can
make its dependents ready for the same wave (``wave(dep) <= wave(system)``). Masks are interned so
that compatibility checks are dictionary look-ups on small ints.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from govcloud.errors import Diagnostic, PlanError
from govcloud.model import Inventory, Plan, PlannedSystem, SitePlacement, Wave
from govcloud.planning.graph import Component, components_in_order, dependency_graph
from govcloud.planning.placement import place_systems
from govcloud.planning.windows import has_run, representative_window, window_mask

DEFAULT_MAX_PER_WAVE = 50
DEFAULT_MIN_WINDOW_MINUTES = 60


@dataclass(frozen=True)
class PlanOptions:
    name: str = "wave-plan"
    max_per_wave: int = DEFAULT_MAX_PER_WAVE
    min_window_minutes: int = DEFAULT_MIN_WINDOW_MINUTES


@dataclass(frozen=True)
class LowerBound:
    """Why at least this many waves are needed; the plan's wave count is compared with ``value``."""

    dependency_chain: int  # longest chain of dependencies whose windows cannot share a wave
    capacity: int  # ceil(systems / max per wave), counting oversized cycles as one wave each
    window_conflicts: int  # systems whose windows pairwise share no usable time

    @property
    def value(self) -> int:
        return max(self.dependency_chain, self.capacity, self.window_conflicts)


@dataclass(frozen=True)
class PlanResult:
    plan: Plan
    lower_bound: LowerBound
    notes: tuple[str, ...] = ()


class _Masks:
    """Interns window masks and memoises 'does this intersection leave a usable window?'."""

    def __init__(self, min_minutes: int) -> None:
        self.min_minutes = min_minutes
        self.ids: dict[int, int] = {}
        self.masks: list[int] = []
        self._meet: dict[tuple[int, int], int] = {}

    def intern(self, mask: int) -> int:
        found = self.ids.get(mask)
        if found is None:
            found = self.ids[mask] = len(self.masks)
            self.masks.append(mask)
        return found

    def meet(self, a: int, b: int) -> int:
        """Interned id of the intersection if it is usable, else -1."""
        key = (a, b) if a <= b else (b, a)
        found = self._meet.get(key)
        if found is None:
            m = self.masks[a] & self.masks[b]
            found = self.intern(m) if has_run(m, self.min_minutes) else -1
            self._meet[key] = found
        return found


@dataclass
class _WaveBuilder:
    mask_id: int
    members: list[str] = field(default_factory=list)
    oversized: str = ""


def plan_waves(inventory: Inventory, options: PlanOptions = PlanOptions()) -> PlanResult:
    """Waves for every system satisfying every hard constraint, or PlanError saying why not."""
    if options.max_per_wave < 1:
        raise PlanError("--max-per-wave must be at least 1")
    placements = place_systems(inventory)
    graph = dependency_graph(inventory)
    components = components_in_order(graph)
    masks = _Masks(options.min_window_minutes)
    comp_mask = _component_masks(inventory, components, masks)

    waves = _fill_waves(components, comp_mask, masks, options)
    plan_waves_: list[Wave] = []
    for i, wb in enumerate(waves):
        window = representative_window(masks.masks[wb.mask_id])
        assert window is not None  # every wave mask was checked to hold a usable stretch
        systems = tuple(PlannedSystem(sid, placements[sid]) for sid in wb.members)
        plan_waves_.append(Wave(i + 1, window, systems, (wb.oversized,) if wb.oversized else ()))
    plan = Plan(options.name, inventory.digest, options.max_per_wave, tuple(plan_waves_))
    bound = lower_bound(components, comp_mask, masks, options)
    return PlanResult(plan, bound, tuple(n for w in plan_waves_ for n in w.notes))


def _heights(components: list[Component]) -> list[int]:
    """Longest chain of dependents below each component (critical path first keeps waves few)."""
    height = [1] * len(components)
    for comp in reversed(components):
        for d in comp.depends_on:
            height[d] = max(height[d], height[comp.index] + 1)
    return height


def _fill_waves(components: list[Component], comp_mask: list[int], masks: _Masks, options: PlanOptions) -> list[_WaveBuilder]:
    height = _heights(components)
    dependents: list[list[int]] = [[] for _ in components]
    missing = [len(c.depends_on) for c in components]
    for comp in components:
        for d in comp.depends_on:
            dependents[d].append(comp.index)
    ready: dict[int, list[tuple[int, int, int]]] = {}  # mask id -> heap of (-height, -size, index)
    ready_size: dict[int, int] = {}

    def make_ready(i: int) -> None:
        m = comp_mask[i]
        heapq.heappush(ready.setdefault(m, []), (-height[i], -len(components[i].members), i))
        ready_size[m] = ready_size.get(m, 0) + len(components[i].members)

    for comp in components:
        if missing[comp.index] == 0:
            make_ready(comp.index)
    waves: list[_WaveBuilder] = []
    placed = 0
    while placed < len(components):
        seed = max((m for m in ready if ready[m]), key=lambda m: (ready_size[m], -ready[m][0][0], -m))
        wave = _WaveBuilder(seed)
        waves.append(wave)
        deferred: list[tuple[int, tuple[int, int, int]]] = []
        while True:
            room = options.max_per_wave - len(wave.members)
            best: tuple[tuple[int, int, int, int], int, int] | None = None
            for m, heap in ready.items():
                if not heap:
                    continue
                met = masks.meet(wave.mask_id, m)
                if met < 0:
                    continue
                rank = (0 if met == wave.mask_id else 1, *heap[0])
                if best is None or rank < best[0]:
                    best = (rank, m, met)
            if best is None:
                break
            _, m, met = best
            item = heapq.heappop(ready[m])
            i = item[2]
            size = len(components[i].members)
            if wave.members and size > room:
                deferred.append((m, item))  # does not fit this wave; stays ready for the next
                continue
            ready_size[m] -= size
            wave.members.extend(components[i].members)
            wave.mask_id = met
            placed += 1
            for j in dependents[i]:
                missing[j] -= 1
                if missing[j] == 0:
                    make_ready(j)
            if size > options.max_per_wave:
                wave.oversized = (f"holds a dependency cycle of {size} systems, more than --max-per-wave "
                                  f"{options.max_per_wave}: {components[i].label}")
                break
            if len(wave.members) >= options.max_per_wave:
                break
        for m, item in deferred:
            heapq.heappush(ready[m], item)
    return waves


def _component_masks(inventory: Inventory, components: list[Component], masks: _Masks) -> list[int]:
    """Interned mask per component; a cycle whose members share no usable window cannot be planned."""
    out: list[int] = []
    problems: list[Diagnostic] = []
    for comp in components:
        m = -1
        for sid in comp.members:
            mid = masks.intern(window_mask(inventory.system(sid).window))
            m = mid if m < 0 else masks.meet(m, mid)
            if m < 0:
                break
        if m < 0 or not has_run(masks.masks[m], masks.min_minutes):
            first = inventory.system(comp.members[0])
            windows = "; ".join(f"{sid}: {inventory.system(sid).window}" for sid in comp.members)
            what = (f"systems in the dependency cycle {comp.label} share no maintenance window of "
                    f"{masks.min_minutes} minutes ({windows})") if comp.is_cycle else \
                   f"window {first.window} is shorter than {masks.min_minutes} minutes"
            problems.append(Diagnostic(first.source, "window", what,
                                       "systems in a cycle move in one wave: give them a common window"
                                       if comp.is_cycle else "widen the window or lower --min-window-minutes"))
            m = masks.intern(0)
        out.append(m)
    if problems:
        raise PlanError(f"{len(problems)} component(s) cannot be given a cutover window", diagnostics=tuple(problems))
    return out


def lower_bound(components: list[Component], comp_mask: list[int], masks: _Masks, options: PlanOptions) -> LowerBound:
    """Three independent lower bounds on the number of waves; the plan can be judged against the largest."""
    # 1. dependency chain: an edge whose two windows cannot meet forces the next wave
    depth = [1] * len(components)
    for comp in components:
        for d in comp.depends_on:
            step = 1 if masks.meet(comp_mask[d], comp_mask[comp.index]) < 0 else 0
            depth[comp.index] = max(depth[comp.index], depth[d] + step)
    chain = max(depth, default=0)
    # 2. capacity: oversized cycles take a wave each, the rest fill waves of max_per_wave
    big = [len(c.members) for c in components if len(c.members) > options.max_per_wave]
    rest = sum(len(c.members) for c in components) - sum(big)
    capacity = len(big) + math.ceil(rest / options.max_per_wave)
    # 3. window conflicts: a clique of patterns that pairwise cannot share a wave (greedy, so a valid bound)
    patterns = sorted(set(comp_mask))
    clique: list[int] = []
    for p in patterns:
        if all(masks.meet(p, q) < 0 for q in clique):
            clique.append(p)
    return LowerBound(chain, capacity, len(clique) if components else 0)


def placement_for(plan: Plan, system_id: str) -> SitePlacement | None:
    for wave in plan.waves:
        for ps in wave.systems:
            if ps.id == system_id:
                return ps.placement
    return None
