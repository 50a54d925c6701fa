"""Read-only views of the journal for `migrate status` and `migrate log`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from govcloud.errors import InvalidInputError
from govcloud.services.migration.options import FACT_BYTES, FACT_DOWNTIME, open_journal


def status_rows(root: Path, journal: Path | None, plan: str | None = None) -> list[dict[str, Any]]:
    with open_journal(root, journal) as j:
        rows = []
        for s in j.systems(plan):
            facts = j.facts(s["plan"], s["system"])
            last = {f["key"]: f["value"] for f in facts}
            rows.append({"plan": s["plan"], "wave": s["wave"], "system": s["system"], "state": s["state"],
                         "last_good": s["last_good"], "updated_at": s["updated_at"],
                         "bytes_sent": sum(int(f["value"]) for f in facts if f["key"] == FACT_BYTES),
                         "downtime_seconds": last.get(FACT_DOWNTIME), "error": last.get("error") if s["state"] in
                         ("failed", "rolled_back") else None,
                         "servers": len(last.get("targets") or [])})
        return rows


def system_log(root: Path, journal: Path | None, system: str) -> dict[str, Any]:
    with open_journal(root, journal) as j:
        rows = [s for s in j.systems() if s["system"] == system]
        if not rows:
            raise InvalidInputError(f"system {system} is not in the journal {j.path}")
        plan = rows[-1]["plan"]
        return {"plan": plan, "system": system, "transitions": j.transitions(plan, system),
                "facts": [{k: f[k] for k in ("at", "run_id", "step", "key", "value")} for f in j.facts(plan, system)]}
