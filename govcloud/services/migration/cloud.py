"""What the preflight and the targets step read from the cloud, read once per run and side by side:
the landing zones of the wave's departments and the servers this migration booted earlier."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from govcloud.migrate.zones import LandingZone, ServerInfo, ZoneKey
from govcloud.provision.desired import project_name
from govcloud.services.migration.context import RunContext
from govcloud.services.migration.options import MIGRATION_TAG
from govcloud.services.migration.work import Work

GONE = ("DELETED", "SOFT_DELETED")


def read_zones(ctx: RunContext, works: Sequence[Work]) -> dict[ZoneKey, LandingZone | None]:
    """The landing zones the works need (``None``: the department has no project there)."""
    keys = sorted({(s.region, s.department) for w in works for s in w.specs} - set(ctx.zones))
    depts = sorted({d for _, d in keys} - set(ctx.project_ids))

    def project(dept: str) -> tuple[str, str | None]:
        return dept, ctx.ports.cloud.find_project_id(project_name(dept))

    def zone(key: ZoneKey) -> tuple[ZoneKey, LandingZone | None]:
        pid = ctx.project_ids.get(key[1])
        if pid is None:
            return key, None
        return key, ctx.ports.cloud.landing_zone(key[0], pid, key[1])

    with ThreadPoolExecutor(max_workers=8) as pool:
        ctx.project_ids.update(pool.map(project, depts))
        ctx.zones.update(pool.map(zone, keys))
    return ctx.zones


def regions_of(works: Sequence[Work]) -> list[str]:
    return sorted({s.region for w in works for s in w.specs})


def existing_servers(ctx: RunContext) -> dict[str, ServerInfo]:
    """Servers this migration booted earlier (by ownership tag), by name; one list call per region."""
    out: dict[str, ServerInfo] = {}
    for region in regions_of(ctx.work):
        for s in ctx.ports.cloud.find_servers(region, MIGRATION_TAG):
            if s.status not in GONE:
                out.setdefault(s.name, s)
    return out
