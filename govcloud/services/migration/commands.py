"""Read-only views of the journal for `migrate status` and `migrate log`.

Both open the journal read-only (``open_journal``: nothing is created or written) and answer a
question about something the journal does not know with InvalidInputError (exit 2), never with an
empty answer that reads as "nothing to report"; a missing journal is JournalMissingError (exit 2 too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from govcloud.errors import InvalidInputError
from govcloud.services.migration.options import FACT_BYTES, FACT_DOWNTIME, open_journal


def status_rows(root: Path, journal: Path | None, plan: str | None = None) -> list[dict[str, Any]]:
    with open_journal(root, journal) as j:
        systems = j.systems(plan)
        if plan and not systems and not j.runs(plan):
            known = sorted({str(r["plan"]) for r in j.runs()} | {str(s["plan"]) for s in j.systems()})
            raise InvalidInputError(f"plan {plan} is not in the journal {j.path}",
                                    hint=f"plans it knows: {', '.join(known)}" if known else
                                    "it records no migration yet: `govcloud migrate run PLAN --wave N` starts one")
        rows = []
        for s in systems:
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
            raise InvalidInputError(f"system {system} is not in the journal {j.path}",
                                    hint="`govcloud migrate status` lists the systems migrations know")
        plan = rows[-1]["plan"]
        return {"plan": plan, "system": system, "transitions": j.transitions(plan, system),
                "facts": [{k: f[k] for k in ("at", "run_id", "step", "key", "value")} for f in j.facts(plan, system)]}
