"""Plan, check and compare migration plans on disk."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from govcloud.errors import Diagnostic, InvalidInputError, PlanError
from govcloud.inventory import load_inventory
from govcloud.inventory.schema import schema_diagnostics
from govcloud.inventory.yamlio import YamlDocument, parse_yaml
from govcloud.model import Inventory, Plan
from govcloud.planning.check import check_plan
from govcloud.planning.diff import SystemChange, diff_plans
from govcloud.planning.placement import SiteLoad, site_loads
from govcloud.planning.planfile import plan_from_data, render_plan
from govcloud.planning.waves import PlanOptions, PlanResult, plan_waves

PLANS_DIR = "migration_plans"


@dataclass(frozen=True)
class MadePlan:
    result: PlanResult
    path: Path
    loads: list[SiteLoad]
    inventory: Inventory
    written: bool


def make_plan(root: Path, options: PlanOptions, out: Path | None = None, *, write: bool = True) -> MadePlan:
    """Load the inventories, plan the waves, write the plan file atomically (unless ``write`` is off)."""
    inventory = load_inventory(root)
    result = plan_waves(inventory, options)
    path = out if out is not None else root / PLANS_DIR / f"{options.name}.yaml"
    if write:
        text = render_plan(result.plan, min_window_minutes=options.min_window_minutes)
        atomic_write(path, text)
    placements = {ps.id: ps.placement for w in result.plan.waves for ps in w.systems}
    return MadePlan(result, path, site_loads(inventory, placements), inventory, write)


def atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a plan."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def check_plan_file(root: Path, path: Path) -> PlanCheck:
    inventory = load_inventory(root)
    doc = read_plan_document(path)
    found = check_plan(inventory, doc)
    return PlanCheck(tuple(d for d in found if d.severity == "error"), tuple(d for d in found if d.severity == "warning"))


def diff_plan_files(old: Path, new: Path) -> list[SystemChange]:
    return diff_plans(load_plan(old), load_plan(new))
