"""The wave's work: which systems of which wave a run migrates, and the servers each one needs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from govcloud.errors import InvalidInputError
from govcloud.migrate.targets import TargetSpec, targets_of
from govcloud.migrate.zones import WaveSystem
from govcloud.model import Host, Inventory, Plan, System, Wave


@dataclass(frozen=True)
class Work:
    """One system of the run, with the servers (one per legacy host and site) it is migrated to."""

    system: System
    specs: tuple[TargetSpec, ...]

    @property
    def id(self) -> str:
        return self.system.id

    def host(self, name: str) -> Host:
        return next(h for h in self.system.hosts if h.name == name)

    @property
    def endpoint_host(self) -> Host:
        """The legacy host the service's endpoint points at before the cutover (its app host)."""
        return next((h for h in self.system.hosts if h.role == "app"), self.system.hosts[0])

    def for_checks(self) -> WaveSystem:
        return WaveSystem(self.id, self.system.department, self.specs, self.system.source)


def load_plan_file(path: Path) -> Plan:
    from govcloud.services.planning import load_plan

    return load_plan(path)


def wave_of(plan: Plan, number: int) -> Wave:
    for w in plan.waves:
        if w.number == number:
            return w
    raise InvalidInputError(f"plan {plan.name} has no wave {number}",
                            hint=f"waves: {', '.join(str(w.number) for w in plan.waves)}")


def wave_work(inventory: Inventory, plan: Plan, wave: Wave, systems: Sequence[str]) -> list[Work]:
    ids = [s.id for s in wave.systems]
    unknown = [s for s in systems if s not in ids]
    if unknown:
        raise InvalidInputError(f"not in wave {wave.number} of plan {plan.name}: {', '.join(unknown)}",
                                hint=f"the wave holds: {', '.join(ids[:20])}{' ...' if len(ids) > 20 else ''}")
    out = []
    for ps in wave.systems:
        if systems and ps.id not in systems:
            continue
        if not inventory.has_system(ps.id):
            raise InvalidInputError(f"system {ps.id} of plan {plan.name} is not in the inventories",
                                    hint="make the plan again (`govcloud plan`)")
        sysm = inventory.system(ps.id)
        out.append(Work(sysm, targets_of(sysm, ps.placement, inventory.topology)))
    return out
