"""What a migration run is asked to do (``MigrateOptions``), what it reports (``RunSummary``), and how
the options of an earlier run are found again for ``resume`` / ``cutover`` / ``rollback``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from govcloud.adapters.journal import Journal, journal_path
from govcloud.errors import Diagnostic, InvalidInputError
from govcloud.migrate.state import State
from govcloud.migrate.steps import StepPlan
from govcloud.migrate.targets import TargetSpec

log = logging.getLogger(__name__)

MIGRATION_TAG = "govcloud:migration"  # Nova tag on every server a migration boots (the ownership tag)
FACT_BYTES, FACT_DOWNTIME, FACT_WINDOW_END = "bytes_sent", "downtime_seconds", "window_end"


@dataclass(frozen=True)
class MigrateOptions:
    plan_file: Path
    wave: int
    known_hosts: Path
    systems: tuple[str, ...] = ()
    concurrency: int = 4
    dry_run: bool = False
    manual_cutover: bool = False
    outside_window: bool = False
    ssh_key: Path | None = None  # for the legacy hosts (default: the operator key)
    target_key: Path | None = None  # for the new servers (default: the operator key in the department keypairs)
    journal: Path | None = None
    dns_key: Path | None = None  # the TSIG key file (default: $GOVCLOUD_DNS_KEY, else the state directory's)
    clouds_yaml: Path | None = None
    # every target boots this image instead of its region's image for its host's OS (``--image``); None:
    # the topology's ``images`` decide per host (docs/inventory.md, "Target images")
    image: str | None = None
    timezone: str = "Asia/Shanghai"
    app_port: int = 8080  # recorded with the service name (names carry no port)
    boot_timeout: float = 300.0
    ssh_wait: float = 300.0
    health_timeout: float | None = None  # caps every health check's deadline_s (None: the inventory's)
    control_path_dir: Path | None = None
    command: str = "run"
    allow_stale_plan: bool = False  # run a plan whose inventory_digest is not the inventories' (audited)

    def as_record(self) -> dict[str, Any]:
        """What resume needs to repeat the run (no secrets: paths only)."""
        return {"plan_file": str(self.plan_file), "wave": self.wave, "systems": list(self.systems),
                "concurrency": self.concurrency, "manual_cutover": self.manual_cutover,
                "known_hosts": str(self.known_hosts), "ssh_key": str(self.ssh_key or ""),
                "target_key": str(self.target_key or ""), "image": self.image or "", "timezone": self.timezone,
                "allow_stale_plan": self.allow_stale_plan}


@dataclass
class SystemResult:
    system: str
    state: str
    downtime: float | None = None
    bytes_sent: int = 0
    note: str = ""


@dataclass
class RunSummary:
    run_id: str
    plan: str
    wave: int
    results: list[SystemResult] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: list[StepPlan] = field(default_factory=list)
    targets: dict[str, list[TargetSpec]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    plan_warnings: tuple[Diagnostic, ...] = ()  # what `plan check` warned about the plan (a stale digest)

    @property
    def ok(self) -> bool:
        return all(r.state == State.DONE.value or (r.state == State.SYNCED.value and r.note.startswith("manual"))
                   for r in self.results)


class Reporter(Protocol):
    def phase(self, text: str) -> None: ...

    def step(self, system: str, step: str, *, total: int | None = None, done: int | None = None) -> None: ...

    def finished(self, system: str, state: str, note: str = "") -> None: ...


class NullReporter:
    def phase(self, text: str) -> None:
        log.info("%s", text)

    def step(self, system: str, step: str, *, total: int | None = None, done: int | None = None) -> None:
        log.info("%s: %s", system, step)

    def finished(self, system: str, state: str, note: str = "") -> None:
        log.info("%s: %s %s", system, state, note)


# ------------------------------------------------------------------ options of earlier runs


def open_journal(root: Path, journal: Path | None) -> Journal:
    return Journal(journal_path(root, journal), create=False)


def options_of_last_run(root: Path, journal: Path | None, plan: str | None = None, *,
                        unfinished: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """(run row, its options) of the newest run (unfinished only: running/crashed/failed/interrupted)."""
    with open_journal(root, journal) as j:
        runs = [r for r in j.runs(plan) if r["options"]]
    if unfinished:
        runs = [r for r in runs if r["status"] != "done"]
    if not runs:
        raise InvalidInputError("nothing to resume: no unfinished migration run in the journal"
                                + (f" for plan {plan}" if plan else ""),
                                hint="start one with `govcloud migrate run PLAN --wave N`")
    r = runs[-1]
    return r, dict(r["options"])


def _recorded(o: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of MigrateOptions that a run records (``as_record``)."""
    return {"known_hosts": Path(o["known_hosts"]), "ssh_key": Path(o["ssh_key"]) if o.get("ssh_key") else None,
            "target_key": Path(o["target_key"]) if o.get("target_key") else None,
            "image": o.get("image") or None, "timezone": o.get("timezone", "Asia/Shanghai")}


def resume_options(root: Path, journal: Path | None, plan: str | None, **override: Any) -> MigrateOptions:
    _, o = options_of_last_run(root, journal, plan)
    kw: dict[str, Any] = {
        "plan_file": Path(o["plan_file"]), "wave": int(o["wave"]), "systems": tuple(o.get("systems") or ()),
        "concurrency": int(o.get("concurrency", 4)), "manual_cutover": bool(o.get("manual_cutover")),
        "allow_stale_plan": bool(o.get("allow_stale_plan")), **_recorded(o), "journal": journal, "command": "resume"}
    kw.update({k: v for k, v in override.items() if v is not None})
    return MigrateOptions(**kw)


def system_options(root: Path, journal: Path | None, system: str, command: str, **override: Any) -> MigrateOptions:
    """Options to act on one system: its plan and wave from the journal, the rest from its plan's last run."""
    with open_journal(root, journal) as j:
        rows = [s for s in j.systems() if s["system"] == system]
        if not rows:
            raise InvalidInputError(f"system {system} is not in the journal {j.path}",
                                    hint="`govcloud migrate status` lists the systems migrations know")
        row = rows[-1]
        runs = [r for r in j.runs(row["plan"]) if r["options"] and int(r["wave"]) == int(row["wave"])]
    if not runs:
        raise InvalidInputError(f"no run of plan {row['plan']} wave {row['wave']} recorded its options")
    o = runs[-1]["options"]
    kw: dict[str, Any] = {
        "plan_file": Path(o["plan_file"]), "wave": int(row["wave"]), "systems": (system,),
        "concurrency": 1, "manual_cutover": False, **_recorded(o), "journal": journal, "command": command}
    kw.update({k: v for k, v in override.items() if v is not None})
    return MigrateOptions(**kw)
