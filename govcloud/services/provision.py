"""Provision landing zones: read the cloud, diff against the inventories, apply with bounded concurrency.

The decisions are pure (``govcloud.provision``); this module wires them to the OpenStack adapter,
keeps the operator key in the state dir, checks saved plans for drift and runs the steps in
dependency order, several at a time per region and service.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from govcloud.adapters.files import atomic_write
from govcloud.adapters.openstack import OpenStackCloud, RetryPolicy, service_of
from govcloud.errors import GovcloudError, PlanDriftError, PlanError
from govcloud.inventory import load_inventory
from govcloud.model import Inventory
from govcloud.provision import DesiredOptions, build_desired, diff
from govcloud.provision.desired import existing_blocks
from govcloud.provision.diff import same_changes
from govcloud.provision.model import Action, Change, Desired, ProvisionPlan
from govcloud.provision.planfile import dump_plan, load_plan


def state_dir() -> Path:
    """Where govcloud keeps run state (never the repository): ``$GOVCLOUD_STATE_DIR`` or XDG state."""
    env = os.environ.get("GOVCLOUD_STATE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "govcloud"


def ops_key(state: Path | None = None) -> tuple[Path, str]:
    """The operator's SSH key pair (made once, 0600) whose public half goes into every department keypair.

    Returns (private key path, public key line).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    keys = (state or state_dir()) / "keys"
    priv = keys / "ops_ed25519"
    pub = keys / "ops_ed25519.pub"
    if not priv.exists() or not pub.exists():
        keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        k = Ed25519PrivateKey.generate()
        pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
        line = k.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        pub.write_text(f"{line} govcloud-ops\n")
    return priv, pub.read_text().strip()


@dataclass(frozen=True)
class ProvisionOptions:
    regions: tuple[str, ...] = ()
    departments: tuple[str, ...] = ()
    prune: bool = False
    image: str | None = None  # --image: one image for all; None: the topology's images per region
    headroom: float = 0.25
    clouds_yaml: Path | None = None
    timeout: float = 30.0
    concurrency: int = 8  # per region and service
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    overrides: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()  # region -> clouds.yaml keys (tests, bench)


@dataclass
class ApplyResult:
    done: list[tuple[Change, str]] = field(default_factory=list)
    failed: list[tuple[Change, GovcloudError]] = field(default_factory=list)
    skipped: list[tuple[Change, str]] = field(default_factory=list)
    seconds: float = 0.0
    calls: int = 0
    retries: int = 0
    recovered: int = 0
    request_id: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed and not [s for s in self.skipped if not s[1].startswith("needs --prune")]


def open_cloud(inventory: Inventory, options: ProvisionOptions, public_key: str, request_id: str | None = None) -> OpenStackCloud:
    return OpenStackCloud(inventory.topology, clouds_yaml=options.clouds_yaml, public_key=public_key,
                          timeout=options.timeout, retry=options.retry, request_id=request_id,
                          overrides={r: dict(kv) for r, kv in options.overrides})


def _all_regions(inventory: Inventory) -> set[str]:
    return {r.name for r in inventory.topology.regions}


def _regions(inventory: Inventory, options: ProvisionOptions) -> tuple[str, ...]:
    names = tuple(r.name for r in inventory.topology.regions)
    return tuple(r for r in names if not options.regions or r in options.regions)


def make_plan(root: Path, options: ProvisionOptions, cloud: OpenStackCloud | None = None,
              public_key: str | None = None) -> tuple[ProvisionPlan, Inventory, OpenStackCloud]:
    """Load the inventories, read the cloud, and diff. Raises InventoryError, PlanError, OpenStackError."""
    inventory = load_inventory(root)
    known = [d.id for d in inventory.departments]
    unknown = [d for d in options.departments if d not in known]
    if unknown and not options.prune:
        raise PlanError(f"unknown department: {', '.join(unknown)}",
                        hint=f"departments: {', '.join(known)} (a department that left the inventory can be named with --prune)")
    if public_key is None:
        public_key = ops_key()[1]
    cloud = cloud or open_cloud(inventory, options, public_key)
    regions = _regions(inventory, options)
    observed = cloud.read(regions)
    dopts = DesiredOptions(headroom=options.headroom, image=options.image, public_key=cloud.public_key or public_key,
                           regions=options.regions, departments=options.departments)
    desired = build_desired(inventory, dopts, existing_blocks(observed.resources, inventory))
    plan = diff(desired, observed, prune=options.prune, known_departments=known, scoped_departments=options.departments,
                ops_cidrs=inventory.topology.ops_cidrs, every_region=set(regions) >= _all_regions(inventory))
    plan = replace(plan, inventory_digest=inventory.digest,
                   created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return plan, inventory, cloud


def save_plan(plan: ProvisionPlan, path: Path) -> None:
    """Saved whole (temporary file, rename), never through a link; its directory is made if missing."""
    atomic_write(path, dump_plan(plan), mode=0o600, make_parents=True)


def read_plan(path: Path) -> ProvisionPlan:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"cannot read plan {path}: {exc.strerror}", hint="make one with `govcloud provision plan --out FILE`") from exc
    return load_plan(text, str(path))


def check_saved_plan(root: Path, saved: ProvisionPlan, options: ProvisionOptions,
                     public_key: str | None = None) -> tuple[Inventory, OpenStackCloud]:
    """Re-read the cloud and refuse (PlanDriftError) unless the saved plan still makes the same changes."""
    inventory = load_inventory(root)
    if public_key is None:
        public_key = ops_key()[1]
    cloud = open_cloud(inventory, options, public_key)
    regions = saved.regions or _regions(inventory, options)
    observed = cloud.read(regions)
    desired = Desired(saved.desired, (), saved.departments, saved.regions)
    now = diff(desired, observed, prune=saved.prune, known_departments=saved.known_departments,
               scoped_departments=saved.scoped_departments, every_region=set(regions) >= _all_regions(inventory))
    if not same_changes(now.changes, saved.changes):
        old = {(c.key, c.action) for c in saved.changes}
        new = {(c.key, c.action) for c in now.changes}
        gone = sorted(old - new)[:5]
        added = sorted(new - old)[:5]
        detail = "; ".join([*(f"no longer needed: {a.value} {k}" for k, a in gone), *(f"now needed: {a.value} {k}" for k, a in added)])
        raise PlanDriftError(
            f"the cloud changed since the plan was made ({saved.created_at or 'unknown time'}): "
            + (detail or "the objects the plan would change look different now"),
            hint="run `govcloud provision plan --out FILE` again, review it, and apply the new plan")
    return inventory, cloud


def execute(
    changes: Sequence[Change],
    run: Callable[[Change], str],
    *,
    concurrency: int = 8,
    prune: bool = False,
    on_step: Callable[[Change, str, str], None] | None = None,
) -> ApplyResult:
    """Run ``changes`` in dependency order: at most ``concurrency`` at a time per (region, service).

    A step whose dependency failed is skipped (and says so); deletions run only with ``prune``.
    ``run`` makes one change and returns a short note; it raises GovcloudError on failure.
    """
    result = ApplyResult()
    start = time.monotonic()
    todo: dict[str, Change] = {}
    for c in changes:
        if c.action is Action.DELETE and not prune:
            result.skipped.append((c, "needs --prune"))
            if on_step:
                on_step(c, "skipped", "needs --prune")
            continue
        todo[c.key] = c
    keys = set(todo)
    deps = {k: [d for d in c.depends if d in keys and d != k] for k, c in todo.items()}
    finished: set[str] = set()
    bad: set[str] = set()
    running: dict[Future[str], Change] = {}
    busy: dict[tuple[str, str], int] = {}
    lock = threading.Lock()

    def bucket(c: Change) -> tuple[str, str]:
        return (c.region, service_of(c))

    with ThreadPoolExecutor(max_workers=max(2, concurrency * 4)) as pool:
        while todo or running:
            progressed = False
            for k in list(todo):
                c = todo[k]
                if any(d in bad for d in deps[k]):
                    del todo[k]
                    bad.add(k)
                    failed_dep = next(d for d in deps[k] if d in bad)
                    result.skipped.append((c, f"not attempted: {failed_dep} failed"))
                    if on_step:
                        on_step(c, "skipped", f"{failed_dep} failed")
                    progressed = True
                    continue
                if all(d in finished for d in deps[k]) and busy.get(bucket(c), 0) < concurrency:
                    del todo[k]
                    busy[bucket(c)] = busy.get(bucket(c), 0) + 1
                    running[pool.submit(run, c)] = c
                    progressed = True
            if not running:
                if todo and not progressed:  # a cycle: cannot happen with the builder's depends
                    for k, c in todo.items():
                        result.skipped.append((c, "dependency cycle"))
                    break
                continue
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                c = running.pop(fut)
                busy[bucket(c)] -= 1
                try:
                    note = fut.result()
                except GovcloudError as exc:
                    with lock:
                        bad.add(c.key)
                        result.failed.append((c, exc))
                    if on_step:
                        on_step(c, "failed", exc.message)
                    continue
                finished.add(c.key)
                result.done.append((c, note))
                if on_step:
                    on_step(c, "done", note)
    result.seconds = time.monotonic() - start
    return result


def apply_plan(plan: ProvisionPlan, cloud: OpenStackCloud, options: ProvisionOptions, *,
               prune: bool, on_step: Callable[[Change, str, str], None] | None = None) -> ApplyResult:
    """Execute exactly ``plan`` through ``cloud`` (which must have read the cloud: it knows the ids)."""
    if plan.errors:
        raise PlanDriftError(f"the plan has {len(plan.errors)} blocking finding(s): " + "; ".join(f.message for f in plan.errors[:3]),
                             hint="fix them (see `govcloud provision plan`) and plan again")
    calls0, retries0, rec0 = cloud.stats.calls, cloud.stats.retries, cloud.stats.recovered_creates
    res = execute(plan.changes, cloud.apply, concurrency=options.concurrency, prune=prune, on_step=on_step)
    res.calls = cloud.stats.calls - calls0
    res.retries = cloud.stats.retries - retries0
    res.recovered = cloud.stats.recovered_creates - rec0
    res.request_id = cloud.request_id
    return res
