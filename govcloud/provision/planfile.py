"""Plan files (``provision plan --out``): JSON, versioned, holding the desired state and the exact changes.

``apply FILE`` re-reads the cloud, diffs the file's desired state against it again and refuses unless
it gets the very same changes (nothing drifted since the plan was made).
"""

from __future__ import annotations

import json
from typing import Any

from govcloud.errors import PlanError
from govcloud.provision.model import Change, Finding, ProvisionPlan, Resource

FORMAT = "govcloud-provision-plan"
VERSION = 1


def dump_plan(plan: ProvisionPlan) -> str:
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "created_at": plan.created_at,
        "inventory_digest": plan.inventory_digest,
        "regions": list(plan.regions),
        "departments": list(plan.departments),
        "prune": plan.prune,
        "known_departments": list(plan.known_departments),
        "scoped_departments": list(plan.scoped_departments),
        "counts": plan.counts(),
        "changes": [c.as_dict() for c in plan.changes],
        "findings": [f.as_dict() for f in plan.findings],
        "desired": [r.as_dict() for r in plan.desired],
    }
    return json.dumps(doc, ensure_ascii=False, indent=1, sort_keys=True) + "\n"


def load_plan(text: str, source: str = "<plan>") -> ProvisionPlan:
    """Parse a plan file. Raises PlanError saying what is wrong with it."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"{source}:{exc.lineno}:{exc.colno}: not a plan file: {exc.msg}",
                        hint="make one with `govcloud provision plan --out FILE`") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PlanError(f"{source}: not a govcloud provision plan", hint="make one with `govcloud provision plan --out FILE`")
    if doc.get("version") != VERSION:
        raise PlanError(f"{source}: plan format version {doc.get('version')!r}, this govcloud reads {VERSION}",
                        hint="make the plan again with this govcloud")
    try:
        return ProvisionPlan(
            changes=tuple(Change.from_dict(c) for c in doc["changes"]),
            findings=tuple(Finding(**f) for f in doc.get("findings", [])),
            desired=tuple(Resource.from_dict(r) for r in doc["desired"]),
            regions=tuple(doc.get("regions", ())),
            departments=tuple(doc.get("departments", ())),
            prune=bool(doc.get("prune", False)),
            known_departments=tuple(doc.get("known_departments", ())),
            scoped_departments=tuple(doc.get("scoped_departments", ())),
            inventory_digest=str(doc.get("inventory_digest", "")),
            created_at=str(doc.get("created_at", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"{source}: malformed plan: {type(exc).__name__}: {exc}",
                        hint="do not edit plan files by hand; make a new one") from exc
