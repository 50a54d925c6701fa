"""Plan files: deterministic text out (byte-identical for the same plan), checked data in."""

from __future__ import annotations

from typing import Any

from govcloud.model import Plan, PlannedSystem, SitePlacement, Wave, Window

HEADER = "# yaml-language-server: $schema=../govcloud/schemas/plan.schema.json\n"


def _q(text: str) -> str:
    """A YAML double-quoted scalar (always quoted: ids like 'no' or '0123' must stay strings)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _window(w: Window) -> str:
    return f"{{days: [{', '.join(w.days)}], start: {_q(w.start)}, end: {_q(w.end)}}}"


def render_plan(plan: Plan, *, min_window_minutes: int | None = None) -> str:
    """The plan as YAML text in format v1; same plan, same bytes."""
    opts = f"max_per_wave: {plan.max_per_wave}"
    if min_window_minutes is not None:
        opts += f", min_window_minutes: {min_window_minutes}"
    lines = [HEADER.rstrip("\n"), "# Made by `govcloud plan`; check hand edits with `govcloud plan check`.",
             "version: 1", f"name: {_q(plan.name)}", f"inventory_digest: {plan.inventory_digest}",
             f"options: {{{opts}}}", "waves:" if plan.waves else "waves: []"]
    for wave in plan.waves:
        lines.append(f"  - number: {wave.number}")
        lines.append(f"    window: {_window(wave.window)}")
        if wave.notes:
            lines.append("    notes:")
            lines.extend(f"      - {_q(n)}" for n in wave.notes)
        lines.append("    systems:" if wave.systems else "    systems: []")
        for ps in wave.systems:
            pl = ", ".join(f"{k}: {v}" for k, v in ps.placement.as_dict().items())
            lines.append(f"      - {{id: {ps.id}, placement: {{{pl}}}}}")
    return "\n".join(lines) + "\n"


def plan_from_data(data: dict[str, Any]) -> Plan:
    """A Plan from schema-valid data (see ``govcloud.planning.check`` for the checks)."""
    waves = []
    for w in data["waves"]:
        win = w["window"]
        systems = tuple(PlannedSystem(s["id"], SitePlacement(s["placement"]["primary"], s["placement"].get("secondary"),
                                                             s["placement"].get("dr"))) for s in w["systems"])
        waves.append(Wave(int(w["number"]), Window(tuple(win["days"]), win["start"], win["end"]), systems,
                          tuple(w.get("notes", []))))
    return Plan(data["name"], data["inventory_digest"], int(data.get("options", {}).get("max_per_wave", 50)), tuple(waves))
