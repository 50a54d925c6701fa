"""Plan, check and compare migration plans on disk.

Plans are documents people edit: ``make_plan`` writes only under ``migration_plans/`` (or the exact
``--out`` path), atomically, and replaces a plan file only while it is what govcloud last wrote; a
hand-edited one needs ``force`` and is kept as ``NAME.yaml.~N~`` (issue 29).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from govcloud.adapters.files import atomic_write, keep_backup, read_existing
from govcloud.errors import Diagnostic, InvalidInputError, PlanError, RefusedError
from govcloud.inventory import load_inventory
from govcloud.inventory.schema import schema_diagnostics
from govcloud.inventory.yamlio import YamlDocument, parse_yaml
from govcloud.model import Inventory, Plan
from govcloud.planning.check import check_plan
from govcloud.planning.diff import SystemChange, describe_changes, diff_plans
from govcloud.planning.names import RULE, plan_name_problem, suggest_plan_name
from govcloud.planning.placement import SiteLoad, site_loads
from govcloud.planning.planfile import plan_from_data, render_plan, written_by_govcloud
from govcloud.planning.waves import PlanOptions, PlanResult, plan_waves

PLANS_DIR = "migration_plans"


@dataclass(frozen=True)
class Replaced:
    """What became of the plan file that was at the path: identical (nothing written), or replaced,
    with the systems that moved (None: it was no readable plan) and where a hand-edited one is kept."""

    unchanged: bool
    changes: tuple[SystemChange, ...] | None = None
    backup: Path | None = None


@dataclass(frozen=True)
class MadePlan:
    result: PlanResult
    path: Path | None  # None: the text went nowhere (dry run) or to standard output
    loads: list[SiteLoad]
    inventory: Inventory
    written: bool
    text: str = ""
    replaced: Replaced | None = None  # None: there was no file at the path


def named_plan_path(root: Path, name: str) -> Path:
    """``migration_plans/<name>.yaml`` for a valid plan name; InvalidInputError (exit 2) otherwise,
    showing an allowed name close to the one given."""
    problem = plan_name_problem(name)
    if problem is not None:
        good = suggest_plan_name(name)
        raise InvalidInputError(f"invalid plan name {name!r}: {problem}; nothing was written",
                                hint=f"a plan name is {RULE}; for example --name {good} (written to "
                                     f"{PLANS_DIR}/{good}.yaml), or --out PATH to write the file elsewhere")
    return root / PLANS_DIR / f"{name}.yaml"


def resolve_plan(root: Path, plan: str) -> Path:
    """The plan file ``plan`` names for `govcloud migrate`: a file that exists, else ``migration_plans/
    <plan>.yaml`` when ``plan`` is a valid plan name (so a name never reaches outside that directory)."""
    p = Path(plan)
    try:
        if p.is_file():
            return p.resolve()
    except (OSError, ValueError):  # no file can have this name (a NUL byte, too long): judged as a name
        pass
    problem = plan_name_problem(plan)
    if problem is not None:
        raise InvalidInputError(f"no plan file {plan}, and it is no plan name: {problem}",
                                hint=f"name a plan file, or a plan in {PLANS_DIR}/ by its name ({RULE}), "
                                     f"for example {suggest_plan_name(plan)}")
    named = root / PLANS_DIR / f"{plan}.yaml"
    if named.is_file():
        return named
    raise InvalidInputError(f"no plan file {plan} (nor {named})", hint="make one with `govcloud plan`")


def make_plan(root: Path, options: PlanOptions, out: Path | None = None, *, write: bool = True,
              force: bool = False) -> MadePlan:
    """Plan the waves and (unless ``write`` is off) write the plan file atomically.

    Raises InvalidInputError for a bad name or path (before anything is read), InventoryError /
    PlanError for inventories that cannot be planned, RefusedError for a hand-edited plan at the
    path without ``force``.
    """
    named = named_plan_path(root, options.name)
    inventory = load_inventory(root)
    result = plan_waves(inventory, options)
    text = render_plan(result.plan, min_window_minutes=options.min_window_minutes)
    path = out if out is not None else named
    replaced = _write_plan(path, text, result.plan, force=force, make_parents=out is None) if write else None
    placements = {ps.id: ps.placement for w in result.plan.waves for ps in w.systems}
    return MadePlan(result, path if write else None, site_loads(inventory, placements), inventory, write, text, replaced)


def _write_plan(path: Path, text: str, plan: Plan, *, force: bool, make_parents: bool) -> Replaced | None:
    """Write ``text`` at ``path`` unless that would lose a hand edit (then refuse, or keep a backup)."""
    old = read_existing(path, doing="write")
    if old is None:
        atomic_write(path, text, make_parents=make_parents)
        return None
    if old == text.encode("utf-8"):
        return Replaced(unchanged=True)
    old_text = old.decode("utf-8", errors="replace")
    changes = _changes_from(old, path, plan)
    backup = None
    if not written_by_govcloud(old_text, text):
        if not force:
            raise _edited(path, changes)
        backup = keep_backup(path, old)
    atomic_write(path, text)
    return Replaced(unchanged=False, changes=changes, backup=backup)


def _changes_from(old: bytes, path: Path, new: Plan) -> tuple[SystemChange, ...] | None:
    """The systems that move from the plan in ``old`` to ``new``; None when ``old`` is no valid plan."""
    doc, problems = parse_yaml(old, str(path))
    if doc is None or problems or schema_diagnostics(doc, "plan"):
        return None
    return tuple(diff_plans(plan_from_data(doc.data), new))


def _edited(path: Path, changes: tuple[SystemChange, ...] | None) -> RefusedError:
    if changes is None:
        what = f"{path} is not a plan govcloud wrote (it does not read as a plan)"
    elif changes:
        what = (f"{path} was edited since govcloud wrote it; the new plan would undo "
                f"{len(changes)} change(s): {describe_changes(changes)}")
    else:
        what = f"{path} was edited since govcloud wrote it (no system moved; the edits would be lost)"
    return RefusedError(f"{what}; nothing was written",
                        hint="keep it (check it with `govcloud plan check`), write the new plan under another "
                             f"name (--name) or path (--out), or replace it with --force (it is kept as "
                             f"{path.name}.~N~)")


def read_plan_document(path: Path) -> YamlDocument:
    """Parse a plan file; InvalidInputError with every problem if it is unreadable or off-schema."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read plan {path}: {exc.strerror}", hint="check the path") from exc
    doc, problems = parse_yaml(raw, str(path))
    if doc is None or problems:
        raise PlanError(f"{path} is not a readable plan", diagnostics=tuple(problems))
    problems = schema_diagnostics(doc, "plan")
    if problems:
        raise PlanError(f"{path} is not a valid plan file", diagnostics=tuple(problems))
    return doc


def load_plan(path: Path) -> Plan:
    return plan_from_data(read_plan_document(path).data)


@dataclass(frozen=True)
class PlanCheck:
    errors: tuple[Diagnostic, ...]
    warnings: tuple[Diagnostic, ...]
    plan_digest: str = ""  # the plan's inventory_digest
    inventory_digest: str = ""  # the inventories' digest now

    @property
    def stale(self) -> bool:
        """The inventories changed since the plan was made."""
        return self.plan_digest != self.inventory_digest


def check_plan_file(root: Path, path: Path, inventory: Inventory | None = None) -> PlanCheck:
    """`govcloud plan check`: every constraint violation (errors) and staleness (a warning). The
    migration engine runs the same check before a wave, so both say the same thing."""
    inventory = inventory or load_inventory(root)
    doc = read_plan_document(path)
    found = check_plan(inventory, doc)
    return PlanCheck(tuple(d for d in found if d.severity == "error"), tuple(d for d in found if d.severity == "warning"),
                     str(doc.data["inventory_digest"]), inventory.digest)


def diff_plan_files(old: Path, new: Path) -> list[SystemChange]:
    return diff_plans(load_plan(old), load_plan(new))
