"""Plan files: deterministic text out (byte-identical for the same plan), checked data in.

Plans are documents people edit, so every plan govcloud writes carries ``content_digest``: the sha256
of the file as written, that line left out. ``govcloud plan`` replaces a file only while the digest
still matches (or when the file is byte for byte the new plan), so a hand edit is never lost silently.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from govcloud.model import Plan, PlannedSystem, SitePlacement, Wave, Window

HEADER = "# yaml-language-server: $schema=../govcloud/schemas/plan.schema.json\n"


def _q(text: str) -> str:
    """A YAML double-quoted scalar (always quoted: ids like 'no' or '0123' must stay strings)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _window(w: Window) -> str:
    return f"{{days: [{', '.join(w.days)}], start: {_q(w.start)}, end: {_q(w.end)}}}"


DIGEST_KEY = "content_digest"
_DIGEST_LINE = re.compile(rf"^{DIGEST_KEY}: (sha256:[0-9a-f]{{64}})\n", re.MULTILINE)


def _sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def render_plan(plan: Plan, *, min_window_minutes: int | None = None) -> str:
    """The plan as YAML text in format v1, sealed with its ``content_digest``; same plan, same bytes."""
    body = render_unsealed(plan, min_window_minutes=min_window_minutes)
    at = body.index("\noptions: ") + 1  # the digest line goes after inventory_digest
    return body[:at] + f"{DIGEST_KEY}: {_sha256(body)}\n" + body[at:]


def unseal(text: str) -> tuple[str, str | None]:
    """``text`` without its ``content_digest`` line, and the digest that line claims (None: no line).
    A file holding the line twice has been edited: it is returned whole, with the claim None."""
    found = _DIGEST_LINE.findall(text)
    if len(found) != 1:
        return text, None
    return _DIGEST_LINE.sub("", text, count=1), str(found[0])


def written_by_govcloud(existing: str, new: str) -> bool:
    """Whether ``existing`` is exactly what govcloud wrote, so replacing it by ``new`` (a sealed
    rendering) loses no hand edit: its digest holds, or it is ``new`` as govcloud wrote plans before
    they were sealed (the same text without the digest line)."""
    body, claimed = unseal(existing)
    if claimed is not None:
        return claimed == _sha256(body)
    return existing == unseal(new)[0]


def render_unsealed(plan: Plan, *, min_window_minutes: int | None = None) -> str:
    """The plan as YAML text without its ``content_digest`` line (what the digest is taken of)."""
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
