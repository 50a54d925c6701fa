"""Directories as a kind of data: rsync from each legacy host to each of its targets, proven equal by
checksum manifests that each host computes on its own tree (with its hash cache, so only files
changed since the last manifest are read).

Warm: a full or delta rsync while the app is live (skipped when the journal's manifests prove the
targets current), then manifests of both sides. Final: once the source is stopped, its manifest is
final; a delta rsync (a ``--checksum`` pass when rsync's quick check missed a same-size rewrite)
makes the targets equal, or the cutover fails. Check (verify): the final pass's proof in the journal.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from govcloud.adapters.ports import Endpoint, Manifest, MigrationKey, RsyncSpec
from govcloud.errors import MigrationError
from govcloud.migrate.records import SyncedManifests, SyncStats, Target
from govcloud.migrate.services import copy_jobs
from govcloud.migrate.state import SyncDecision, sync_decision
from govcloud.migrate.steps import composite
from govcloud.services.migration.context import Outcome, RunContext
from govcloud.services.migration.datakind import FinalPass
from govcloud.services.migration.options import FACT_BYTES
from govcloud.services.migration.work import Work

SourceManifests = dict[str, str]  # "legacy-host:path" -> digest
TargetManifests = dict[str, dict[str, str]]  # target name -> ("legacy-host:path" -> digest)
StagedKeys = Mapping[str, MigrationKey]  # target name -> its per-migration key


@dataclass
class ManifestWork:
    """What computing manifests read (for the journal: how much the hash caches saved)."""

    files: int = 0
    hashed_files: int = 0
    hashed_bytes: int = 0
    seconds: float = 0.0

    def add(self, m: Manifest | ManifestWork) -> None:
        self.files += m.files
        self.hashed_files += m.hashed_files
        self.hashed_bytes += m.hashed_bytes
        if isinstance(m, ManifestWork):
            self.seconds += m.seconds


@dataclass
class Manifests:
    source: SourceManifests = field(default_factory=dict)
    targets: TargetManifests = field(default_factory=dict)
    work: ManifestWork = field(default_factory=ManifestWork)


def manifests(ctx: RunContext, w: Work, targets: Sequence[Target] | None, *, source: bool = True) -> Manifests:
    """Source and, when ``targets`` is given, per-target manifests, all computed at once (one thread
    and SSH channel per host and path)."""
    jobs: list[tuple[str, str, Endpoint, str]] = []  # (target name or "" for the source, key, endpoint, path)
    if source:
        for h in w.system.hosts:
            ep = ctx.legacy_ep(w.system, h.name)
            jobs += [("", f"{h.name}:{p}", ep, p) for p in h.data]
    for t in targets or ():
        ep = ctx.target_ep(t)
        jobs += [(t.name, f"{t.legacy_host}:{p}", ep, p) for p in t.data]
    out = Manifests(targets={t.name: {} for t in targets or ()})
    if not jobs:
        return out

    def one(job: tuple[str, str, Endpoint, str]) -> tuple[str, str, Manifest]:
        side, key, ep, path = job
        return side, key, ctx.ports.hosts.manifest(ep, path)

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
        for side, key, m in pool.map(one, jobs):
            (out.targets[side] if side else out.source)[key] = m.digest
            out.work.add(m)
    out.work.seconds = time.monotonic() - t0
    return out


def site_composites(ctx: RunContext, w: Work, dst: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """Per site: one composite over all its targets' manifests (comparable with the source's)."""
    site_of = {t.name: t.site for t in ctx.targets(w)}
    merged: dict[str, dict[str, str]] = {}
    for name, m in dst.items():
        merged.setdefault(site_of[name], {}).update(m)
    return {site: composite(m) for site, m in merged.items()}


@contextlib.contextmanager
def staged_keys(ctx: RunContext, w: Work, targets: Sequence[Target]) -> Iterator[dict[str, MigrationKey]]:
    """Per-migration keys (target name -> key) authorised for the block and removed after it (also on
    failure)."""
    with contextlib.ExitStack() as stack:
        keys: dict[str, MigrationKey] = {}
        for t in targets:
            keys[t.name] = stack.enter_context(ctx.ports.hosts.transfer_key(
                ctx.legacy_ep(w.system, t.legacy_host), ctx.target_ep(t), mig_id=t.name[:64]))
        yield keys


def push_all(ctx: RunContext, w: Work, targets: Sequence[Target], *, checksum: bool = False, step: str = "sync",
             keys: StagedKeys | None = None) -> SyncStats:
    """rsync on each legacy host to each of its targets (per-migration key, removed after); returns
    summed stats. Pairs run side by side (each is a process on a legacy host, not here)."""
    total = int(ctx.fact(w.id, "source_bytes") or 0) * max(1, len({t.site for t in targets}))
    acc = [SyncStats()]
    lock = threading.Lock()

    def pair(t: Target) -> None:
        src_ep = ctx.legacy_ep(w.system, t.legacy_host)
        staged = (keys or {}).get(t.name)
        with (contextlib.nullcontext(staged) if staged is not None else
              ctx.ports.hosts.transfer_key(src_ep, ctx.target_ep(t), mig_id=t.name[:64])) as key:
            ctx.fault(f"{step}.after_key", w.id)
            host = w.host(t.legacy_host)
            jobs = [(j.path, j.excludes) for j in copy_jobs(host)]

            def one(job: tuple[str, tuple[str, ...]]) -> None:
                path, excludes = job
                spec = RsyncSpec(source_path=path, dest_host=t.ip, dest_path=path, identity=key.private_path,
                                 known_hosts=key.known_hosts_path, checksum=checksum, excludes=excludes)
                st = ctx.ports.hosts.push(src_ep, spec)
                with lock:
                    acc[0] += SyncStats(st.bytes_sent, st.literal_data, st.matched_data, st.files_transferred)
                    moved = acc[0].literal_data + acc[0].matched_data
                    ctx.reporter.step(w.id, step, total=max(total, 1), done=min(total, moved))

            # the paths side by side (one rsync process each on the legacy host): the small ones
            # (a service's software) no longer add an ssh handshake and a file-list pass to the big one's time
            dirs = [p.rstrip("/") + "/" for p, _ in jobs]
            nested = any(a != b and a.startswith(b) for a in dirs for b in dirs)
            with ThreadPoolExecutor(max_workers=1 if nested else max(1, len(jobs))) as paths:
                list(paths.map(one, jobs))

    with ThreadPoolExecutor(max_workers=max(1, min(4, len(targets)))) as pool:
        list(pool.map(pair, targets))
    return acc[0]


def record_manifest_work(ctx: RunContext, w: Work, step: str, work: ManifestWork) -> None:
    ctx.record(w.id, step, "manifest_seconds", round(work.seconds, 3))
    ctx.record(w.id, step, "manifest_hashed_files", work.hashed_files)
    ctx.record(w.id, step, "manifest_hashed_bytes", work.hashed_bytes)


def record_sync(ctx: RunContext, w: Work, step: str, decision: SyncDecision, stats: SyncStats,
                found: Manifests) -> tuple[str, str]:
    """The sync's facts; returns the (source, target) composites (a target side that differs between
    sites is ``differs:<digest>``)."""
    src_c = composite(dict(found.source))
    per = site_composites(ctx, w, found.targets)
    dst_c = next(iter(per.values())) if per and len(set(per.values())) == 1 else "differs:" + composite(per)
    ctx.record(w.id, step, "sync_decision", decision.value)
    ctx.record(w.id, step, FACT_BYTES, stats.bytes_sent)
    ctx.record(w.id, step, "literal_data", stats.literal_data)
    ctx.record(w.id, step, "files_transferred", stats.files_transferred)
    ctx.record_facts(w.id, step, SyncedManifests(source=src_c, target=dst_c).to_facts())
    ctx.record(w.id, step, "manifests", {"source": dict(found.source),
                                         "targets": {k: dict(v) for k, v in found.targets.items()}})
    return src_c, dst_c


class FileData:
    """Directories (each host's ``data`` paths and its services' directories), moved by rsync; the data
    paths are proven equal by manifests, the service directories (minus their excludes and runtime
    paths, which a manifest cannot leave out) by rsync's own exit status."""

    name = "files"

    def warm(self, ctx: RunContext, w: Work, targets: Sequence[Target]) -> Outcome:
        last = SyncedManifests.from_facts(ctx.facts_of(w.id))
        current = composite(manifests(ctx, w, None).source) if last.source and last.target else ""
        decision = sync_decision(last.source, last.target, current) if current else SyncDecision.FULL
        stats = SyncStats()
        t0 = time.monotonic()
        if decision != SyncDecision.SKIP:
            stats = push_all(ctx, w, targets, step="sync")
        transfer_s = time.monotonic() - t0
        ctx.fault("sync.after_rsync", w.id)
        # the freshness proof, and it primes the hosts' hash caches while the source is still live,
        # so the cutover's manifests (service down) only read what changed after this point
        ctx.reporter.step(w.id, "manifests")
        found = manifests(ctx, w, targets)
        ctx.record(w.id, "warm_sync", "transfer_seconds", round(transfer_s, 3))
        record_manifest_work(ctx, w, "warm_sync", found.work)
        record_sync(ctx, w, "warm_sync", decision, stats, found)
        return {"decision": decision.value, **stats.as_dict(), "transfer_seconds": round(transfer_s, 3),
                "manifest_seconds": round(found.work.seconds, 3), "manifest_hashed_bytes": found.work.hashed_bytes}

    @contextlib.contextmanager
    def before_stop(self, ctx: RunContext, w: Work, targets: Sequence[Target]) -> Iterator[FinalPass]:
        """The per-migration keys are authorised before the stop: their ssh round trips are not part of
        the downtime."""
        with staged_keys(ctx, w, targets) as keys:
            yield lambda: self._final(ctx, w, targets, keys)

    def _final(self, ctx: RunContext, w: Work, targets: Sequence[Target], keys: StagedKeys) -> Outcome:
        out: Outcome = {}
        found = manifests(ctx, w, None)  # the source is stopped: this is final
        last = SyncedManifests.from_facts(ctx.facts_of(w.id))
        decision = sync_decision(last.source, last.target, composite(found.source))
        stats = SyncStats()
        t1 = time.monotonic()
        if decision != SyncDecision.SKIP:
            stats = push_all(ctx, w, targets, step="cutover", keys=keys)
        transfer_s = time.monotonic() - t1
        after = manifests(ctx, w, targets, source=False)
        found.targets = after.targets
        found.work.add(after.work)
        if any(m != {k: v for k, v in found.source.items() if k in m} for m in found.targets.values()):
            # rsync's quick check can miss a same-size rewrite within the mtime granularity
            stats += push_all(ctx, w, targets, checksum=True, step="cutover", keys=keys)
            found.targets = manifests(ctx, w, targets, source=False).targets
            out["checksum_pass"] = True
        ctx.record(w.id, "cutover", "transfer_seconds", round(transfer_s, 3))
        record_manifest_work(ctx, w, "cutover", found.work)
        src_c, dst_c = record_sync(ctx, w, "cutover", decision, stats, found)
        if src_c != dst_c:
            raise MigrationError(f"{w.id}: target data differs from the stopped source after the final sync "
                                 "and a --checksum pass", hint="see `govcloud migrate log " + w.id + "` (manifests)")
        return {**out, "decision": decision.value, **stats.as_dict()}

    def check(self, ctx: RunContext, w: Work, targets: Sequence[Target]) -> None:
        """The final pass's proof, from the journal: after the source stopped and before the targets
        started, every target's manifest equalled the source's. The targets are not hashed again: the
        applications now run on them and may already have written to their data (a wiki renders its
        page metadata on the first view), which is service, not divergence."""
        synced = SyncedManifests.from_facts(ctx.facts_of(w.id))
        if not synced.source or synced.target != synced.source:
            raise MigrationError(f"{w.id}: no proof in the journal that the targets equalled the stopped source "
                                 f"(source manifest {synced.source or 'none'}, targets {synced.target or 'none'})",
                                 hint=f"see `govcloud migrate log {w.id}` (manifests); roll back and cut over again")


FILES = FileData()
