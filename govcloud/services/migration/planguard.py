"""Before a wave runs, its plan is checked as `govcloud plan check` checks it (issue 29).

A plan is a document people edit, and the inventories change under it: a plan that breaks a
constraint (a system before its dependency, a split cycle, an overfull site) is refused with the same
messages `plan check` prints (exit 2), and one made from other inventories (its ``inventory_digest``
is not theirs) is refused unless the operator says ``--allow-stale-plan``, which the run audits.
Both are checked for a dry run too: it shows what a run would do, and a run would not start.
"""

from __future__ import annotations

from pathlib import Path

from govcloud.errors import PlanError, StalePlanError
from govcloud.model import Inventory
from govcloud.services.migration.options import MigrateOptions
from govcloud.services.planning import PlanCheck, check_plan_file


def vet_plan(root: Path, options: MigrateOptions, inventory: Inventory) -> PlanCheck:
    """The plan check of ``options.plan_file``; raises PlanError for violations, StalePlanError for a
    stale digest without ``options.allow_stale_plan``. Nothing is opened or written."""
    check = check_plan_file(root, options.plan_file, inventory)
    if check.errors:
        raise PlanError(f"{len(check.errors)} violation(s) in {options.plan_file}; nothing was run",
                        hint="fix the plan (`govcloud plan check` lists the same), or make it again with `govcloud plan`",
                        diagnostics=check.errors)
    if check.stale and not options.allow_stale_plan:
        raise StalePlanError(f"{options.plan_file} was made from other inventories (its inventory_digest "
                             f"{check.plan_digest[:19]}..., theirs now {check.inventory_digest[:19]}...); nothing "
                             "was run",
                             hint="make the plan again (`govcloud plan`; `govcloud plan diff OLD NEW` shows what "
                                  "moves), or run it as it is with --allow-stale-plan (audited)",
                             diagnostics=tuple(d for d in check.warnings if d.path == "inventory_digest"))
    return check


def stale_record(options: MigrateOptions, check: PlanCheck) -> dict[str, str] | None:
    """What the audit keeps when a stale plan runs by --allow-stale-plan (None: the plan is current)."""
    if not check.stale:
        return None
    return {"plan_file": str(options.plan_file), "plan_digest": check.plan_digest,
            "inventory_digest": check.inventory_digest}
