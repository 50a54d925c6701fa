"""Step ``preflight`` (a batch): every legacy host reachable with strict host keys, its data paths and
service directories present and measured, every http/tcp health check's port listening, an image for
each host's OS in each region its targets go to (its declared ``os``, else its ``/etc/os-release``),
the system's ``ansible_role`` a role of the project, dependencies migrated or in this run, and the
cloud ready (landing zones, keypair holding our key, the images, flavors, quota, site capacity). All problems of all systems are
listed together, and nothing is provisioned while there is one.

Every problem is a :class:`~govcloud.errors.Diagnostic`, so the user sees it as input errors are
shown: where (the inventory entry of the host or system at fault, or the file), the system (its
``path``), what, and the fix (its ``hint``). The journal keeps each as the one line it always held,
``<system>: <what>; fix: <how>``, so journals written before read the same.

Each problem also says whose it is to fix (its ``cause``): the inventories' or topology's ("input":
no image for a host's OS in a region its targets go to, a health check on a port nothing listens on
at the legacy host, an ``ansible_role`` the project does not have) or the world's ("runtime": every
other, a host unreachable or its key changed, a path missing on it, the cloud, the name servers, a
dependency not migrated yet). :class:`~govcloud.errors.PreflightError` exits 2 when all are input,
as `validate` exits for what it can see without the hosts, else 1.

Journal: an intent per system, then ``preflight_passed`` with the facts ``source_bytes``,
``target_images`` (server -> image: what provisioning boots) and ``host_os``, or
``failed`` with the problems (the whole batch fails together).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from govcloud.adapters.ports import Endpoint
from govcloud.errors import (
    Diagnostic,
    GovcloudError,
    HostKeyError,
    Location,
    PreflightError,
    SSHError,
)
from govcloud.migrate.services import directories
from govcloud.migrate.state import Action, Event, State
from govcloud.migrate.zones import (
    CloudCheck,
    Problems,
    SiteCapacity,
    sites_to_check,
    zone_problems,
)
from govcloud.model import Host
from govcloud.model.services import OsSpec
from govcloud.services.migration import images
from govcloud.services.migration.cloud import existing_servers, read_zones
from govcloud.services.migration.context import RunContext
from govcloud.services.migration.work import Work

HostOs = dict[str, dict[str, OsSpec]]  # system -> (host -> OS read from the host)


def run(ctx: RunContext, works: list[Work]) -> None:
    if not works:
        return
    ctx.reporter.phase(f"preflight: {len(works)} system(s)")
    intents = {w.id: ctx.journal.intent(ctx.run_id, ctx.plan.name, w.id, Action.PREFLIGHT) for w in works}
    ctx.fault("preflight.after_intent", works[0].id)
    problems: Problems = {w.id: [] for w in works}
    sizes, found_os = _check_hosts(ctx, works, problems)
    chosen = _check_images(ctx, works, found_os, problems)
    _check_dependencies(ctx, works, problems)
    _check_databases(works, problems)
    _check_roles(ctx, works, problems)
    _check_names(ctx, works, problems)
    try:
        _check_cloud(ctx, works, chosen, problems)
    except GovcloudError as exc:
        for w in works:
            problems[w.id].append(Diagnostic(w.system.source, w.id, f"the cloud could not be checked: {exc.message}",
                                             exc.hint or "check clouds.yaml", cause="runtime"))
    _record(ctx, works, intents, problems, sizes)
    for w in works:
        images.record(ctx, w, chosen[w.id], found_os.get(w.id, {}))
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
                    "migrate this system once it can (issue 13)", cause="runtime"))


def _check_names(ctx: RunContext, works: list[Work], problems: Problems) -> None:
    """The name servers reachable, serving the zone and accepting the key (an update of prerequisites only)."""
    try:
        ctx.ports.endpoints.check()
    except GovcloudError as exc:
        for w in works:
            problems[w.id].append(Diagnostic(w.system.source, w.id, f"service names cannot be switched: {exc.message}",
                                             exc.hint or "check the DNS servers", cause="runtime"))


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
        inputs = sum(d.cause == "input" for d in found)
        whose = (", all in the inventories or topology" if inputs == len(found)
                 else f" ({inputs} in the inventories or topology)" if inputs else "")
        raise PreflightError(f"preflight found {len(found)} problem(s) in {len(failed)} system(s) of wave "
                             f"{ctx.wave.number}{whose}; nothing was provisioned", diagnostics=found,
                             hint="fix each problem, then run `govcloud migrate run` (or resume) again")


def journal_line(d: Diagnostic) -> str:
    """A problem as the journal has always kept it (its ``error`` fact and the outcome's ``problems``):
    one line, ``<system>: <what>; fix: <how>``, what `migrate status` and `migrate log` show."""
    return f"{d.path}: {d.message}; fix: {d.hint}" if d.hint else f"{d.path}: {d.message}"


@dataclass
class _HostFindings:
    """What the preflight found on one legacy host."""

    problems: list[Diagnostic] = field(default_factory=list)
    bytes: int = 0
    os: OsSpec | None = None  # from its /etc/os-release (read only when the inventory declares none)


def _check_hosts(ctx: RunContext, works: list[Work], problems: Problems) -> tuple[dict[str, int], HostOs]:
    """Bytes per system (its data paths and service directories) and the OS of each host that declares
    none; problems added for what is not there."""
    sizes: dict[str, int] = {}
    found_os: HostOs = {w.id: {} for w in works}
    known_hosts = ctx.options.known_hosts
    if not known_hosts.is_file():
        missing = f"known_hosts file {known_hosts} not found"
        for w in works:
            problems[w.id].append(Diagnostic(Location(str(known_hosts)), w.id, missing,
                                             "pass --known-hosts (or GOVCLOUD_KNOWN_HOSTS) with the hosts' keys",
                                             cause="runtime"))
        return sizes, found_os

    jobs = [(w, h) for w in works for h in w.system.hosts]
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(jobs)))) as pool:
        for (w, h), f in zip(jobs, pool.map(lambda a: _check_host(ctx, *a), jobs), strict=True):
            problems[w.id].extend(f.problems)
            sizes[w.id] = sizes.get(w.id, 0) + f.bytes
            if f.os is not None:
                found_os[w.id][h.name] = f.os
    return sizes, found_os


def _check_host(ctx: RunContext, w: Work, host: Host) -> _HostFindings:
    out = _HostFindings()
    ep = ctx.legacy_ep(w.system, host.name)
    try:
        ctx.ports.hosts.connect(ep)
    except HostKeyError as exc:
        fix = exc.hint or "check the host's key out of band, then correct known_hosts"
        out.problems.append(Diagnostic(host.source, w.id, f"legacy host {ep.label}: {exc.message}", fix,
                                       cause="runtime"))
        return out
    except SSHError as exc:
        what = f"legacy host {ep.label} unreachable: {exc.message}"
        fix = exc.hint or "check the address, the route and that sshd runs"
        out.problems.append(Diagnostic(host.source, w.id, what, fix, cause="runtime"))
        return out
    for path in (*host.data, *directories(host)):
        try:
            out.bytes += ctx.ports.hosts.measure(ep, path)
        except SSHError as exc:
            fix = (f"correct the data path in the inventory or restore {path} on the host" if path in host.data
                   else f"correct the service's directories in the inventory or restore {path} on the host")
            out.problems.append(Diagnostic(host.source, w.id, f"legacy host {ep.label}: {exc.message}", fix,
                                           cause="runtime"))
    try:
        out.problems += _unlistened(ctx, w, host, ep)
        if host.os is None:
            out.os = ctx.ports.hosts.os_release(ep)
    except SSHError as exc:
        out.problems.append(Diagnostic(host.source, w.id, f"legacy host {ep.label}: {exc.message}",
                                       exc.hint or "check the host", cause="runtime"))
    return out


def _unlistened(ctx: RunContext, w: Work, host: Host, ep: Endpoint) -> list[Diagnostic]:
    """A check on a port its service does not listen on would fail only after the cutover, with the
    legacy services stopped: each http/tcp check's port must be listening on the legacy host now. An
    input problem, at the check's place: the host answered, and the declaration is what disagrees."""
    wanted = [(s, c) for s in host.services for c in s.checks if c.port is not None]
    if not wanted:
        return []
    listening = ctx.ports.hosts.listening_ports(ep)
    return [Diagnostic(c.source, w.id, f"health check {s.name}/{c.name} probes port {c.port} on {ep.label}, where "
                       f"nothing listens", f"start {s.name} on {host.name}, or correct the check's port (listening "
                       f"now: {', '.join(map(str, sorted(listening))) or 'none'})", cause="input")
            for s, c in wanted if c.port not in listening]


def _check_images(ctx: RunContext, works: list[Work], found_os: HostOs, problems: Problems) -> dict[str, dict[str, str]]:
    """Each system's target images (server name -> image), the hosts without one added as problems."""
    chosen: dict[str, dict[str, str]] = {}
    for w in works:
        chosen[w.id], missing = images.choose(ctx, w, found_os.get(w.id, {}))
        reached = not any(d.message.startswith("legacy host") for d in problems[w.id])
        problems[w.id].extend(missing if reached else [])
    return chosen


def _check_roles(ctx: RunContext, works: list[Work], problems: Problems) -> None:
    """A system's ``ansible_role`` must be a role of the project (playbooks/roles), or its targets could
    not be configured after they were booted."""
    for w in works:
        role = w.system.ansible_role
        if role and not ctx.ports.configure.has_role(role):
            problems[w.id].append(Diagnostic(w.system.source, w.id, f"ansible_role {role} is not a role of the "
                                             "project", f"add playbooks/roles/{role} (tasks/main.yml), or correct "
                                             "the system's ansible_role", cause="input"))


def _check_dependencies(ctx: RunContext, works: list[Work], problems: Problems) -> None:
    done = {s["system"] for s in ctx.journal.systems() if s["state"] == State.DONE.value}
    here = set(ctx.by_id)
    for w in works:
        for d in w.system.depends_on:
            if d not in done and d not in here:
                problems[w.id].append(Diagnostic(
                    w.system.source, w.id, f"depends on {d}, which is neither migrated nor in this run of wave "
                    f"{ctx.wave.number}", f"migrate {d} first (its wave) or add it with --systems", cause="runtime"))


def _check_cloud(ctx: RunContext, works: list[Work], chosen: dict[str, dict[str, str]], problems: Problems) -> None:
    """Read what the pure checks (``govcloud.migrate.zones``) compare against, once, then ask them."""
    zones = read_zones(ctx, works)
    existing = frozenset(existing_servers(ctx))
    by_server = {name: image for w in works for name, image in chosen[w.id].items()}
    partial = CloudCheck(zones=zones, existing=existing, free={}, images=by_server,
                         target_public_key=ctx.keys.target_public, target_key_label=str(ctx.keys.target))
    systems = [w.for_checks() for w in works]
    free: dict[str, SiteCapacity] = {}
    for region in sorted(set(sites_to_check(systems, partial).values())):
        free.update(ctx.ports.cloud.site_capacity(region))
    check = CloudCheck(zones=zones, existing=existing, free=free, images=partial.images,
                       target_public_key=partial.target_public_key, target_key_label=partial.target_key_label)
    zone_problems(systems, check, problems)
