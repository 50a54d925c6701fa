"""Check a (possibly hand-edited) plan file against the inventories with the planner's constraints.

Every violation is reported with the plan file's line, all at once.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from dataclasses import dataclass, field

from govcloud.errors import Diagnostic
from govcloud.inventory.schema import schema_diagnostics
from govcloud.inventory.yamlio import PathElem, YamlDocument, format_path
from govcloud.model import Inventory, Placement, Plan, Resources, SitePlacement
from govcloud.planning.graph import components_in_order, dependency_graph
from govcloud.planning.placement import site_demands
from govcloud.planning.planfile import plan_from_data
from govcloud.planning.windows import contains, window_length


@dataclass
class _Findings:
    """The diagnostics so far, each at its plan-file line."""

    doc: YamlDocument
    out: list[Diagnostic] = field(default_factory=list)

    def err(self, path: tuple[PathElem, ...], message: str, hint: str = "") -> None:
        self.out.append(Diagnostic(self.doc.locate(path), format_path(path), message, hint))


#: where each system sits in the plan: id -> (wave index, index in the wave)
Where = dict[str, tuple[int, int]]


def check_plan(inventory: Inventory, doc: YamlDocument) -> list[Diagnostic]:
    """All constraint violations of the plan in ``doc`` (errors), plus a warning if it is stale.

    Phases: staleness, wave numbering, every system exactly once, dependencies and cycles, wave
    size and windows, placement and capacity. They all run, so every violation is reported at once.
    """
    problems = schema_diagnostics(doc, "plan")
    if problems:
        return problems
    found = _Findings(doc)
    plan = plan_from_data(doc.data)
    if plan.inventory_digest != inventory.digest:
        found.out.append(Diagnostic(doc.locate(("inventory_digest",)), "inventory_digest",
                                    "the inventories changed since this plan was made (digest differs)",
                                    "re-run `govcloud plan` or review the plan against the current inventories",
                                    severity="warning"))
    for i, wave in enumerate(plan.waves):
        if wave.number != i + 1:
            found.err(("waves", i, "number"), f"wave number {wave.number} out of sequence, expected {i + 1}",
                      "number waves 1, 2, 3, ... in order")
    where = _membership(inventory, plan, found)
    cycle_sets = _dependencies(inventory, plan, where, found)
    _waves(inventory, plan, cycle_sets, found)
    _capacity(inventory, plan, where, found)
    return found.out


def _membership(inventory: Inventory, plan: Plan, found: _Findings) -> Where:
    """Every system exactly once: unknown ids, duplicates, and systems in no wave."""
    where: Where = {}
    known = [s.id for s in inventory.systems]
    for i, wave in enumerate(plan.waves):
        for j, ps in enumerate(wave.systems):
            path: tuple[PathElem, ...] = ("waves", i, "systems", j, "id")
            if not inventory.has_system(ps.id):
                close = difflib.get_close_matches(ps.id, known, n=1)
                found.err(path, f"unknown system '{ps.id}'",
                          f"did you mean '{close[0]}'?" if close else "remove it from the plan")
            elif ps.id in where:
                fi, fj = where[ps.id]
                line = found.doc.locate(("waves", fi, "systems", fj)).line
                found.err(path, f"system '{ps.id}' is also in wave {plan.waves[fi].number} (line {line})",
                          "every system moves in exactly one wave")
            else:
                where[ps.id] = (i, j)
    missing = [s for s in known if s not in where]
    if missing:
        found.err(("waves",), f"{len(missing)} system(s) in no wave: "
                  f"{', '.join(missing[:10])}{', ...' if len(missing) > 10 else ''}",
                  "add them to a wave or re-run `govcloud plan`")
    return where


def _dependencies(inventory: Inventory, plan: Plan, where: Where, found: _Findings) -> list[frozenset[str]]:
    """No system before what it depends on; a cycle in one wave. Returns the cycles' member sets."""
    wave_no = {sid: plan.waves[i].number for sid, (i, _) in where.items()}
    for sid, (i, j) in where.items():
        for dep in inventory.system(sid).depends_on:
            if dep in wave_no and wave_no[dep] > wave_no[sid]:
                found.err(("waves", i, "systems", j, "id"),
                          f"'{sid}' (wave {wave_no[sid]}) depends on '{dep}', which moves later (wave {wave_no[dep]})",
                          f"move '{dep}' to wave {wave_no[sid]} or earlier, or '{sid}' later")
    cycles = [c for c in components_in_order(dependency_graph(inventory)) if c.is_cycle]
    for comp in cycles:
        waves_used = {wave_no[m] for m in comp.members if m in wave_no}
        if len(waves_used) > 1:
            i, j = where[comp.members[0]]
            found.err(("waves", i, "systems", j, "id"), f"the dependency cycle {comp.label} is split over waves "
                      f"{', '.join(map(str, sorted(waves_used)))}",
                      "systems that depend on each other move in the same wave")
    return [frozenset(c.members) for c in cycles]


def _waves(inventory: Inventory, plan: Plan, cycle_sets: list[frozenset[str]], found: _Findings) -> None:
    """Each wave's size, and a window inside every member's own window, at least 15 minutes long."""
    for i, wave in enumerate(plan.waves):
        ids = frozenset(ps.id for ps in wave.systems)
        if len(wave.systems) > plan.max_per_wave and ids not in cycle_sets:
            found.err(("waves", i, "systems"), f"wave {wave.number} has {len(wave.systems)} systems, more than "
                      f"max_per_wave {plan.max_per_wave}",
                      "split the wave (only a single oversized dependency cycle may exceed it)")
        if wave.window.start == wave.window.end:
            found.err(("waves", i, "window"), "the wave's window has no length", "end before start crosses midnight")
            continue
        for ps in wave.systems:
            if inventory.has_system(ps.id):
                own = inventory.system(ps.id).window
                if not contains(own, wave.window):
                    found.err(("waves", i, "window"), f"wave {wave.number}'s window {wave.window} is not inside the "
                              f"window of '{ps.id}' ({own})", "choose a time every member's window contains")
        if window_length(wave.window) < 15:
            found.err(("waves", i, "window"), "the wave's window is shorter than 15 minutes", "widen it")


def _capacity(inventory: Inventory, plan: Plan, where: Where, found: _Findings) -> None:
    """Each system's sites fit its placement policy, and no site holds more than its capacity."""
    topo = inventory.topology
    primary = topo.primary_region
    backup = topo.backup_region
    psites = {s.name for s in topo.sites_of(primary.name)} if primary else set()
    bsites = {s.name for s in topo.sites_of(backup.name)} if backup else set()
    used: dict[str, Resources] = defaultdict(Resources)
    for sid, (i, j) in sorted(where.items()):
        ppath: tuple[PathElem, ...] = ("waves", i, "systems", j, "placement")
        system = inventory.system(sid)
        pl = plan.waves[i].systems[j].placement
        for problem in _placement_problems(system.placement, pl, psites, bsites):
            found.err(ppath, f"'{sid}' ({system.placement.value}): {problem}",
                      f"sites: primary region {', '.join(sorted(psites))}; "
                      f"backup region {', '.join(sorted(bsites)) or '-'}")
        for site, need in site_demands(system, pl):
            used[site] = used[site] + need
    for site, total in sorted(used.items()):
        try:
            cap = topo.site(site).capacity
        except KeyError:
            continue  # reported as an unknown site above
        if not total.fits_in(cap):
            found.err(("waves",), f"site {site} is over capacity by {total.shortfall(cap)} (plan puts {total} on it)",
                      "move systems to other sites or raise the capacity in topology.yaml")


def _placement_problems(policy: Placement, pl: SitePlacement, psites: set[str], bsites: set[str]) -> list[str]:
    out: list[str] = []
    for role, site in (("primary", pl.primary), ("secondary", pl.secondary), ("dr", pl.dr)):
        if site and site not in psites | bsites:
            out.append(f"unknown site '{site}' as {role}")
    if pl.primary not in psites:
        out.append(f"primary '{pl.primary}' must be a primary-region site")
    if policy is Placement.ACTIVE_ACTIVE:
        if not pl.secondary or pl.secondary not in psites or pl.secondary == pl.primary:
            out.append("needs a secondary site in the primary region, different from the primary")
    elif pl.secondary:
        out.append("only active-active systems have a secondary site")
    if policy in (Placement.ACTIVE_ACTIVE, Placement.ACTIVE_STANDBY) and bsites:
        if not pl.dr or pl.dr not in bsites:
            out.append("needs a dr site in the backup region")
    elif policy is Placement.SINGLE and pl.dr:
        out.append("single systems have no dr site")
    return out
