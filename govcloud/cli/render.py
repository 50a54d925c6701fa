"""Turn service results into tables (rich) or JSON; no decisions here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from govcloud.cli.context import AppContext

if TYPE_CHECKING:
    from govcloud.planning.diff import SystemChange
    from govcloud.services.planning import MadePlan


def render_plan_summary(app: AppContext, made: MadePlan, *, to_stderr: bool = False, stdout_plan: bool = False) -> None:
    """The waves and site loads, then where the plan went and what it replaced (``to_stderr``: stdout
    holds the plan itself, ``--out -``)."""
    plan = made.result.plan
    bound = made.result.lower_bound
    if app.json:
        app.emit_json({
            "path": str(made.path) if made.written else None,
            "replaced": _replaced_json(made),
            "name": plan.name,
            "inventory_digest": plan.inventory_digest,
            "waves": [{"number": w.number, "window": w.window.as_dict(), "systems": [s.id for s in w.systems],
                       "notes": list(w.notes)} for w in plan.waves],
            "lower_bound": {"value": bound.value, "dependency_chain": bound.dependency_chain,
                            "capacity": bound.capacity, "window_conflicts": bound.window_conflicts},
            "sites": [{"site": s.site, "used": vars(s.used), "capacity": vars(s.capacity)} for s in made.loads],
        })
        return
    if app.verbosity < 0:
        return
    from rich.table import Table

    console = app.console()
    if to_stderr:
        from rich.console import Console

        console = Console(highlight=False, soft_wrap=True, stderr=True)
    table = Table(title=f"plan {plan.name}: {len(plan.waves)} waves for {sum(len(w.systems) for w in plan.waves)} systems")
    table.add_column("wave", justify="right")
    table.add_column("window")
    table.add_column("systems", justify="right")
    table.add_column("first systems")
    for w in plan.waves:
        ids = [s.id for s in w.systems]
        table.add_row(str(w.number), str(w.window), str(len(ids)), ", ".join(ids[:4]) + (", ..." if len(ids) > 4 else ""))
    console.print(table)
    sites = Table(title="site load (cumulative)")
    for col in ("site", "vCPU", "RAM GB", "storage GB", "utilisation"):
        sites.add_column(col, justify="right" if col != "site" else "left")
    for s in made.loads:
        sites.add_row(s.site, f"{s.used.vcpus}/{s.capacity.vcpus}", f"{s.used.ram_gb}/{s.capacity.ram_gb}",
                      f"{s.used.storage_gb}/{s.capacity.storage_gb}", f"{s.utilisation:.0%}")
    console.print(sites)
    console.print(f"waves: {len(plan.waves)}  lower bound: {bound.value} (dependency chain {bound.dependency_chain}, "
                  f"ceil(systems/max-per-wave) {bound.capacity}, window conflicts {bound.window_conflicts})")
    for note in made.result.notes:
        console.print(f"note: {note}")
    for line in _where_it_went(made, stdout_plan):
        console.print(line, markup=False)


def _where_it_went(made: MadePlan, stdout_plan: bool) -> list[str]:
    """The closing lines: where the plan was written, and which systems moved from the plan it replaced."""
    from govcloud.planning.diff import describe_change

    if not made.written:
        return ["plan written to standard output" if stdout_plan else "dry run: no plan file written"]
    r = made.replaced
    if r is None:
        return [f"plan written to {made.path}"]
    if r.unchanged:
        return [f"plan unchanged: {made.path} already holds it"]
    lines = [f"plan written to {made.path}, replacing the plan there"]
    if r.changes is None:
        lines.append("  (the file there was not a readable plan)")
    elif r.changes:
        lines.append(f"  {len(r.changes)} system(s) moved from the old plan:")
        lines.extend(f"    {describe_change(c)}" for c in r.changes)
    else:
        lines.append("  no system moved")
    if r.backup is not None:
        lines.append(f"  the edited plan is kept as {r.backup}")
    return lines


def _replaced_json(made: MadePlan) -> dict[str, object] | None:
    r = made.replaced
    if r is None:
        return None
    from govcloud.planning.diff import describe_change

    return {"unchanged": r.unchanged, "backup": str(r.backup) if r.backup else None,
            "moved": None if r.changes is None else [describe_change(c) for c in r.changes]}


def render_plan_diff(app: AppContext, changes: list[SystemChange]) -> None:
    if app.json:
        app.emit_json([{"system": c.system, "kind": c.kind, "old_wave": c.old_wave, "new_wave": c.new_wave,
                        "old_placement": c.old_placement.as_dict() if c.old_placement else None,
                        "new_placement": c.new_placement.as_dict() if c.new_placement else None} for c in changes])
        return
    if not changes:
        app.echo("no differences")
        return
    for c in changes:
        if c.kind == "moved":
            app.echo(f"~ {c.system}: wave {c.old_wave} -> {c.new_wave}")
        elif c.kind == "replaced":
            assert c.old_placement and c.new_placement
            app.echo(f"~ {c.system}: sites {'/'.join(c.old_placement.sites())} -> {'/'.join(c.new_placement.sites())}")
        elif c.kind == "added":
            app.echo(f"+ {c.system}: wave {c.new_wave}")
        else:
            app.echo(f"- {c.system}: was wave {c.old_wave}")
    app.echo(f"{len(changes)} system(s) differ")
