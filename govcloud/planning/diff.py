"""What changed between two plans: systems that moved wave or site, appeared or vanished."""

from __future__ import annotations

from dataclasses import dataclass

from govcloud.model import Plan, SitePlacement


@dataclass(frozen=True)
class SystemChange:
    system: str
    kind: str  # "moved" | "replaced" | "added" | "removed"
    old_wave: int | None
    new_wave: int | None
    old_placement: SitePlacement | None
    new_placement: SitePlacement | None


def diff_plans(old: Plan, new: Plan) -> list[SystemChange]:
    """Every system whose wave or sites differ, sorted by id (pure)."""
    def index(plan: Plan) -> dict[str, tuple[int, SitePlacement]]:
        return {ps.id: (w.number, ps.placement) for w in plan.waves for ps in w.systems}

    a, b = index(old), index(new)
    out: list[SystemChange] = []
    for sid in sorted(set(a) | set(b)):
        if sid not in b:
            out.append(SystemChange(sid, "removed", a[sid][0], None, a[sid][1], None))
        elif sid not in a:
            out.append(SystemChange(sid, "added", None, b[sid][0], None, b[sid][1]))
        elif a[sid] != b[sid]:
            kind = "moved" if a[sid][0] != b[sid][0] else "replaced"
            out.append(SystemChange(sid, kind, a[sid][0], b[sid][0], a[sid][1], b[sid][1]))
    return out


def describe_change(c: SystemChange) -> str:
    """One change in words, e.g. ``nr-slzy wave 3 -> 1``."""
    if c.kind == "moved":
        return f"{c.system} wave {c.old_wave} -> {c.new_wave}"
    if c.kind == "replaced":
        assert c.old_placement and c.new_placement
        return f"{c.system} sites {'/'.join(c.old_placement.sites())} -> {'/'.join(c.new_placement.sites())}"
    if c.kind == "added":
        return f"{c.system} added in wave {c.new_wave}"
    return f"{c.system} removed from wave {c.old_wave}"


def describe_changes(changes: tuple[SystemChange, ...] | list[SystemChange], limit: int = 10) -> str:
    """The first ``limit`` changes in words, comma-separated (``...`` and how many more after them)."""
    shown = ", ".join(describe_change(c) for c in changes[:limit])
    return shown + (f", ... ({len(changes) - limit} more)" if len(changes) > limit else "")
