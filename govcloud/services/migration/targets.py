"""Step ``provision`` (a batch): the targets booted, ACTIVE, reachable over ssh with strict host keys,
and configured by Ansible (``migrate-target.yml``), for every system of the batch at once.

A server is found by name + ownership tag before any create, so a rerun never boots a duplicate; a
server Nova put in ERROR is deleted and booted again. Journal: an intent per system naming its
servers, the fact ``server_ids`` as soon as Nova accepted the creates, then ``provisioned`` with the
fact ``targets`` (the typed ``Target`` records every later step reads), or ``failed``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from govcloud.adapters.ports import TargetHost
from govcloud.errors import GovcloudError, MigrationError, SSHError
from govcloud.migrate.records import Target
from govcloud.migrate.services import directories, systemd_units
from govcloud.migrate.state import Action, Event
from govcloud.migrate.targets import TargetSpec
from govcloud.migrate.zones import BootRequest, FlavorRef, LandingZone, ServerInfo
from govcloud.services.migration import images
from govcloud.services.migration.cloud import (
    GONE,
    existing_servers,
    read_zones,
    regions_of,
)
from govcloud.services.migration.context import RunContext
from govcloud.services.migration.options import MIGRATION_TAG
from govcloud.services.migration.work import Work

log = logging.getLogger(__name__)

BOOT_CONCURRENCY = 16  # Nova's API is the bottleneck: about 1.4 creates/s on the devcloud at 16 in flight
SSH_WAIT_CONCURRENCY = 32
POLL_SECONDS = 1.0

Failed = dict[str, str]  # system -> why
ServerIds = dict[str, dict[str, str]]  # system -> (server name -> id)
Boot = tuple[Work, TargetSpec, LandingZone, FlavorRef, str]  # ..., the image's id


def run(ctx: RunContext, works: list[Work]) -> None:
    if not works:
        return
    ctx.reporter.phase(f"provision: {sum(len(w.specs) for w in works)} server(s) for {len(works)} system(s)")
    j = ctx.journal
    intents = {w.id: j.intent(ctx.run_id, ctx.plan.name, w.id, Action.PROVISION,
                              {"servers": [s.name for s in w.specs]}) for w in works}
    failed: Failed = {}
    targets: dict[str, list[Target]] = {}
    try:
        targets = _boot_and_wait(ctx, works, failed)
        ctx.fault("provision.after_active", works[0].id)
        _configure(ctx, [w for w in works if w.id not in failed], targets, failed)
        ctx.fault("provision.after_configure", works[0].id)
    except GovcloudError as exc:
        for w in works:
            failed.setdefault(w.id, exc.message)
    for w in works:
        if w.id in failed:
            ctx.failed_now.add(w.id)
            ctx.record(w.id, "provision", "error", f"provision: {failed[w.id]}"[:2000])
            j.outcome(intents[w.id], Event.FAILED, {"error": failed[w.id][:500]})
            ctx.reporter.finished(w.id, "failed", "provision")
        else:
            ctx.record(w.id, "provision", "targets", [t.to_fact() for t in targets[w.id]])
            j.outcome(intents[w.id], Event.PROVISIONED, {"servers": len(targets[w.id])})


def _boot_and_wait(ctx: RunContext, works: list[Work], failed: Failed) -> dict[str, list[Target]]:
    existing = existing_servers(ctx)
    _replace_errored(ctx, works, existing)
    ids, to_boot = _to_boot(ctx, works, existing, failed)
    _boot(ctx, to_boot, ids, failed)
    for w in works:
        if ids[w.id]:
            ctx.record(w.id, "provision", "server_ids", ids[w.id])
    ctx.reporter.phase(f"provision: {len(to_boot)} server(s) booted, {sum(len(v) for v in ids.values()) - len(to_boot)} "
                       "found; waiting for ACTIVE")
    active = _wait_active(ctx, works, ids, failed)
    targets: dict[str, list[Target]] = {}
    for w in works:
        if w.id not in failed:
            targets[w.id] = [_target(spec, active[ids[w.id][spec.name]]) for spec in w.specs]
    ctx.reporter.phase(f"provision: {len(active)} server(s) ACTIVE; waiting for ssh (strict host keys)")
    _wait_ssh(ctx, works, targets, failed)
    return targets


def _target(spec: TargetSpec, server: ServerInfo) -> Target:
    return Target(name=spec.name, id=server.id, ip=server.ipv4, site=spec.site, region=spec.region,
                  primary=spec.primary, legacy_host=spec.legacy_host, data=spec.data)


def _to_boot(ctx: RunContext, works: list[Work], existing: Mapping[str, ServerInfo],
             failed: Failed) -> tuple[ServerIds, list[Boot]]:
    """The ids of servers booted earlier, and the servers still to boot (with their zone and flavor)."""
    zones = read_zones(ctx, works)
    chosen = {w.id: images.chosen(ctx, w) for w in works}
    ids: ServerIds = {w.id: {} for w in works}
    to_boot: list[Boot] = []
    for w in works:
        for spec in w.specs:
            if spec.name in existing:
                ids[w.id][spec.name] = existing[spec.name].id
                continue
            z = zones[(spec.region, spec.department)]
            fl = z.flavor_for(spec) if z else None
            image_id = z.images.get(chosen[w.id].get(spec.name, "")) if z else None
            if z is None or fl is None or image_id is None:
                failed[w.id] = (f"landing zone, flavor or image for {spec.name} missing in {spec.region} "
                                "(preflight passed earlier: run it again by `govcloud migrate run`)")
                continue
            to_boot.append((w, spec, z, fl, image_id))
    return ids, to_boot


def _boot(ctx: RunContext, to_boot: list[Boot], ids: ServerIds, failed: Failed) -> None:
    def boot(item: Boot) -> tuple[str, str, str, str]:
        w, spec, z, fl, image_id = item
        request = BootRequest(name=spec.name, image_id=image_id, flavor_id=fl.id,
                              network_id=z.network_id or "", availability_zone=spec.site, key_name=z.keypair or "",
                              metadata=spec.metadata(ctx.plan.name),
                              tags=(MIGRATION_TAG, f"govcloud:system={w.id}"), security_groups=z.security_groups)
        try:
            s = ctx.ports.cloud.boot_server(spec.region, z.project_id, request)
        except GovcloudError as exc:
            return w.id, spec.name, "", exc.message
        ctx.fault("provision.after_boot_request", w.id)
        return w.id, spec.name, s.id, ""

    # the SDK's pool of 10 keep-alive connections discards extras at 16 in flight (harmless, so not logged)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    with ThreadPoolExecutor(max_workers=max(1, min(BOOT_CONCURRENCY, len(to_boot)))) as pool:
        for sid, name, server_id, error in pool.map(boot, to_boot):
            if error:
                failed[sid] = error
            else:
                ids[sid][name] = server_id


def _wait_active(ctx: RunContext, works: list[Work], ids: ServerIds, failed: Failed) -> dict[str, ServerInfo]:
    """Until every server is ACTIVE with an address (one list call per region per poll)."""
    want = {sid: n for w in works if w.id not in failed for n, sid in ids[w.id].items()}
    owner = {sid: w.id for w in works for sid in ids[w.id].values()}
    regions = regions_of(works)
    deadline = time.monotonic() + ctx.options.boot_timeout
    names = set(want.values())
    active: dict[str, ServerInfo] = {}
    removed: set[str] = set()
    while True:
        for region in regions:
            for s in ctx.ports.cloud.find_servers(region, MIGRATION_TAG):
                if s.id not in want and s.name in names and s.id not in removed and s.status not in GONE:
                    _remove_duplicate(ctx, region, s)
                    removed.add(s.id)
                if s.id not in want or s.id in active:
                    continue
                if s.status == "ACTIVE" and s.ipv4:
                    active[s.id] = s
                elif s.status == "ERROR":
                    why = s.fault or "no fault recorded"
                    failed[owner[s.id]] = (f"server {s.name} ({s.id}) went to ERROR in {s.availability_zone}: "
                                           f"{why.strip()} (a rerun replaces it)")
        pending = [sid for sid in want if sid not in active and owner[sid] not in failed]
        if not pending:
            return active
        if time.monotonic() > deadline:
            for sid in pending:
                failed[owner[sid]] = f"server {want[sid]} ({sid}) not ACTIVE after {ctx.options.boot_timeout:.0f}s"
            return active
        time.sleep(POLL_SECONDS)  # Nova has no push notification for us: poll with a deadline


def _remove_duplicate(ctx: RunContext, region: str, s: ServerInfo) -> None:
    """A second server under a target's name: a create whose lost response was sent again after all.
    The engine keeps the one it recorded and deletes the other, so Nova holds each target once."""
    log.warning("provision: deleting %s (%s), a duplicate of a target already booted (a lost create was "
                "answered late)", s.name, s.id)
    ctx.ports.cloud.delete_server(region, s.id)


def _wait_ssh(ctx: RunContext, works: list[Work], targets: Mapping[str, list[Target]], failed: Failed) -> None:
    """Until every target answers ssh with strict host keys (one deadline for all of them)."""
    jobs = [(w.id, t) for w in works if w.id not in failed for t in targets[w.id]]
    end = time.monotonic() + ctx.options.ssh_wait

    def reachable(item: tuple[str, Target]) -> tuple[str, str]:
        sid, t = item
        ep = ctx.target_ep(t)
        last = ""
        while time.monotonic() < end:
            try:
                ctx.ports.hosts.connect(ep)
                return sid, ""
            except SSHError as exc:  # not a lab host yet / key not in known_hosts yet / sshd starting
                last = exc.message
            time.sleep(0.5)  # sshd has no readiness push: poll with the deadline above
        return sid, f"target {ep.label} not reachable over ssh with strict host keys after {ctx.options.ssh_wait:.0f}s: {last}"

    with ThreadPoolExecutor(max_workers=max(1, min(SSH_WAIT_CONCURRENCY, len(jobs)))) as pool:
        for sid, err in pool.map(reachable, jobs):
            if err:
                failed[sid] = err


def _replace_errored(ctx: RunContext, works: list[Work], existing: dict[str, ServerInfo]) -> None:
    """A server of ours that Nova put in ERROR (no valid host, a failed build) is deleted so that it is
    booted again: an ERROR server never becomes ACTIVE. Audited; waits until Nova forgot it."""
    mine = {s.name: w for w in works for s in w.specs}
    bad = [(name, srv) for name, srv in existing.items() if name in mine and srv.status == "ERROR"]
    if not bad:
        return
    region_of = {s.name: s.region for w in works for s in w.specs}
    for name, srv in bad:
        ctx.ports.cloud.delete_server(region_of[name], srv.id)
        ctx.audit("migrate.replace_server", mine[name].id, "ok", {"server": name, "id": srv.id, "reason": "ERROR"})
        del existing[name]
    gone_ids = {srv.id for _, srv in bad}
    deadline = time.monotonic() + ctx.options.boot_timeout
    while time.monotonic() < deadline:
        left = {s.id for r in sorted(set(region_of.values())) for s in ctx.ports.cloud.find_servers(r, MIGRATION_TAG)}
        if not left & gone_ids:
            return
        time.sleep(POLL_SECONDS)  # Nova deletes asynchronously: poll with a deadline
    raise MigrationError(f"{len(gone_ids)} server(s) in ERROR were not deleted within {ctx.options.boot_timeout:.0f}s",
                         hint="check nova-compute; then resume")


def _configure(ctx: RunContext, works: list[Work], targets: Mapping[str, list[Target]], failed: Failed) -> None:
    if not works:
        return
    owner = {t.name: w.id for w in works for t in targets[w.id]}
    hosts = [_target_host(w, t) for w in works for t in targets[w.id]]
    ctx.reporter.phase(f"configure: Ansible on {len(hosts)} target(s)")
    for name, why in ctx.ports.configure.configure(hosts).items():
        if name in owner:
            failed[owner[name]] = why


def _target_host(w: Work, t: Target) -> TargetHost:
    """What the migrate_target role needs for ``t``: the directories the sync fills, its legacy host's
    packages, the systemd units no synced directory brings (a package must provide them), and the
    system's own role."""
    host = w.host(t.legacy_host)
    dirs = directories(host)
    units = tuple(u for u in systemd_units(host)
                  if not any(f"/etc/systemd/system/{u}".startswith(d.rstrip("/") + "/") for d in dirs))
    packages = tuple(dict.fromkeys(p for s in host.services for p in s.packages))
    return TargetHost(name=t.name, address=t.ip, region=t.region, site=t.site, department=w.system.department,
                      system=w.id, data=(*t.data, *dirs), packages=packages, units=units,
                      ansible_role=w.system.ansible_role or "")
