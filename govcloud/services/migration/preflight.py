"""Step ``preflight`` (a batch): every legacy host reachable with strict host keys and its data paths
present and measured, dependencies migrated or in this run, and the cloud ready (landing zones,
keypair holding our key, image, flavors, quota, site capacity). All problems of all systems are
listed together, and nothing is provisioned while there is one.

Every problem is a :class:`~govcloud.errors.Diagnostic`, so the user sees it as input errors are
shown: where (the inventory entry of the host or system at fault, or the file), the system (its
``path``), what, and the fix (its ``hint``). The journal keeps each as the one line it always held,
``<system>: <what>; fix: <how>``, so journals written before read the same.

Journal: an intent per system, then ``preflight_passed`` with the fact ``source_bytes``, or
``failed`` with the problems (the whole batch fails together).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from govcloud.errors import (
    Diagnostic,
    GovcloudError,
    HostKeyError,
    Location,
    PreflightError,
    SSHError,
)
from govcloud.migrate.state import Action, Event, State
from govcloud.migrate.zones import (
    CloudCheck,
    Problems,
    SiteCapacity,
    sites_to_check,
    zone_problems,
)
from govcloud.model import Host
from govcloud.services.migration.cloud import existing_servers, read_zones
from govcloud.services.migration.context import RunContext
from govcloud.services.migration.options import APP_DIR
from govcloud.services.migration.work import Work


def run(ctx: RunContext, works: list[Work]) -> None:
    if not works:
        return
    ctx.reporter.phase(f"preflight: {len(works)} system(s)")
    intents = {w.id: ctx.journal.intent(ctx.run_id, ctx.plan.name, w.id, Action.PREFLIGHT) for w in works}
    ctx.fault("preflight.after_intent", works[0].id)
    problems: Problems = {w.id: [] for w in works}
    sizes = _check_hosts(ctx, works, problems)
    _check_dependencies(ctx, works, problems)
    _check_databases(works, problems)
    _check_names(ctx, works, problems)
    try:
        _check_cloud(ctx, works, problems)
    except GovcloudError as exc:
        for w in works:
            problems[w.id].append(Diagnostic(w.system.source, w.id, f"the cloud could not be checked: {exc.message}",
                                             exc.hint or "check clouds.yaml"))
    _record(ctx, works, intents, problems, sizes)
    _publish_names(ctx, works)


def _check_databases(works: list[Work], problems: Problems) -> None:
    """A declared database server would not be moved by the file copy (its directory is not a data
    path): refuse such a system until the engine replicates databases (issue 13), instead of
    migrating it without its data."""
    for w in works:
        for h in w.system.hosts:
            for db in h.databases:
                problems[w.id].append(Diagnostic(
                    h.source, w.id, f"{h.name} ({h.address}) runs {db.engine.value} {db.version} on port {db.port} "
                    f"({db.data_dir}): databases move by replication, which this version of govcloud cannot do yet",
                    "migrate this system once it can (issue 13)"))


def _check_names(ctx: RunContext, works: list[Work], problems: Problems) -> None:
    """The name servers reachable, serving the zone and accepting the key (an update of prerequisites only)."""
    try:
        ctx.ports.endpoints.check()
    except GovcloudError as exc:
        for w in works:
            problems[w.id].append(Diagnostic(w.system.source, w.id, f"service names cannot be switched: {exc.message}",
                                             exc.hint or "check the DNS servers"))


def _publish_names(ctx: RunContext, works: list[Work]) -> None:
    """A system whose name is not published yet gets its legacy address (absent -> legacy, a
    compare-and-swap): clients resolve it before the cutover moves it."""
    for w in works:
        if ctx.ports.endpoints.lookup(w.id) is None:
            ctx.ports.endpoints.switch(w.id, address=w.endpoint_host.address, port=ctx.options.app_port, site="legacy",
                                       expect=None, reason=f"published by migration {ctx.run_id}")
            ctx.audit("endpoint.publish", w.id, "ok", {"to": w.endpoint_host.address})


def _record(ctx: RunContext, works: list[Work], intents: dict[str, int], problems: Problems,
            sizes: dict[str, int]) -> None:
    failed = {sid: p for sid, p in problems.items() if p}
    for w in works:
        if failed:
            lines = [journal_line(d) for d in failed.get(w.id, [])]
            msg = "; ".join(lines) or "another system of the wave failed preflight"
            ctx.failed_now.add(w.id)
            ctx.record(w.id, "preflight", "error", f"preflight: {msg}"[:2000])
            ctx.journal.outcome(intents[w.id], Event.FAILED, {"problems": lines})
            ctx.reporter.finished(w.id, "failed", "preflight")
        else:
            ctx.record(w.id, "preflight", "source_bytes", sizes.get(w.id, 0))
            ctx.journal.outcome(intents[w.id], Event.PREFLIGHT_PASSED, {"source_bytes": sizes.get(w.id, 0)})
    if failed:
        found = tuple(d for sid in sorted(failed) for d in failed[sid])
        raise PreflightError(f"preflight found {len(found)} problem(s) in {len(failed)} system(s) of wave "
                             f"{ctx.wave.number}; nothing was provisioned", diagnostics=found,
                             hint="fix each problem, then run `govcloud migrate run` (or resume) again")


def journal_line(d: Diagnostic) -> str:
    """A problem as the journal has always kept it (its ``error`` fact and the outcome's ``problems``):
    one line, ``<system>: <what>; fix: <how>``, what `migrate status` and `migrate log` show."""
    return f"{d.path}: {d.message}; fix: {d.hint}" if d.hint else f"{d.path}: {d.message}"


def _check_hosts(ctx: RunContext, works: list[Work], problems: Problems) -> dict[str, int]:
    """Bytes per system (its data paths and app directory), problems added for what is not there."""
    sizes: dict[str, int] = {}
    known_hosts = ctx.options.known_hosts
    if not known_hosts.is_file():
        missing = f"known_hosts file {known_hosts} not found"
        for w in works:
            problems[w.id].append(Diagnostic(Location(str(known_hosts)), w.id, missing,
                                             "pass --known-hosts (or GOVCLOUD_KNOWN_HOSTS) with the hosts' keys"))
        return sizes

    def check_host(w: Work, host: Host) -> tuple[str, list[Diagnostic], int]:
        errs: list[Diagnostic] = []
        total = 0
        ep = ctx.legacy_ep(w.system, host.name)
        try:
            ctx.ports.hosts.connect(ep)
        except HostKeyError as exc:
            fix = exc.hint or "check the host's key out of band, then correct known_hosts"
            return w.id, [Diagnostic(host.source, w.id, f"legacy host {ep.label}: {exc.message}", fix)], 0
        except SSHError as exc:
            what = f"legacy host {ep.label} unreachable: {exc.message}"
            fix = exc.hint or "check the address, the route and that sshd runs"
            return w.id, [Diagnostic(host.source, w.id, what, fix)], 0
        for path in (*host.data, APP_DIR):
            try:
                total += ctx.ports.hosts.measure(ep, path)
            except SSHError as exc:
                errs.append(Diagnostic(host.source, w.id, f"legacy host {ep.label}: {exc.message}",
                                       f"correct the data path in the inventory or restore {path} on the host"))
        return w.id, errs, total

    jobs = [(w, h) for w in works for h in w.system.hosts]
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(jobs)))) as pool:
        for sid, errs, total in pool.map(lambda a: check_host(*a), jobs):
            problems[sid].extend(errs)
            sizes[sid] = sizes.get(sid, 0) + total
    return sizes


def _check_dependencies(ctx: RunContext, works: list[Work], problems: Problems) -> None:
    done = {s["system"] for s in ctx.journal.systems() if s["state"] == State.DONE.value}
    here = set(ctx.by_id)
    for w in works:
        for d in w.system.depends_on:
            if d not in done and d not in here:
                problems[w.id].append(Diagnostic(
                    w.system.source, w.id, f"depends on {d}, which is neither migrated nor in this run of wave "
                    f"{ctx.wave.number}", f"migrate {d} first (its wave) or add it with --systems"))


def _check_cloud(ctx: RunContext, works: list[Work], problems: Problems) -> None:
    """Read what the pure checks (``govcloud.migrate.zones``) compare against, once, then ask them."""
    zones = read_zones(ctx, works)
    existing = frozenset(existing_servers(ctx))
    partial = CloudCheck(zones=zones, existing=existing, free={}, image=ctx.options.image,
                         target_public_key=ctx.keys.target_public, target_key_label=str(ctx.keys.target))
    systems = [w.for_checks() for w in works]
    free: dict[str, SiteCapacity] = {}
    for region in sorted(set(sites_to_check(systems, partial).values())):
        free.update(ctx.ports.cloud.site_capacity(region))
    check = CloudCheck(zones=zones, existing=existing, free=free, image=partial.image,
                       target_public_key=partial.target_public_key, target_key_label=partial.target_key_label)
    zone_problems(systems, check, problems)
