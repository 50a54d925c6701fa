"""diff(desired, observed) -> ProvisionPlan: pure, over frozen data (pip-tools' sync.diff, Terraform's plan).

Rules:
- only ``params`` are compared (ids and timestamps never are); for ``tags`` only govcloud's own tags
  must be present (someone else's extra tag is not drift);
- an object with a desired name that govcloud does not own (no ``govcloud:managed`` tag, or a keypair
  holding another key) is a *clash*: reported, never touched, and everything that needs it is held back;
- managed objects nobody wants any more (a department left the inventory, a system stopped being
  active-active) are *orphans*: reported, and turned into deletions only when pruning;
- immutable fields that differ (a subnet's CIDR) are errors: apply refuses until a human decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from govcloud.provision.model import (
    GLOBAL,
    Action,
    Change,
    Desired,
    Finding,
    Observed,
    ObservedResource,
    ProvisionPlan,
    Resource,
)

IMMUTABLE: Mapping[str, frozenset[str]] = {
    "subnet": frozenset({"cidr", "network", "ip_version", "project"}),
    "network": frozenset({"project"}),
    "router": frozenset({"project"}),
    "security_group": frozenset({"project"}),
    "server_group": frozenset({"policy", "project"}),
    "router_interface": frozenset({"router", "subnet"}),
}

# Kinds that are removed together with their project (no delete step of their own).
GONE_WITH_PROJECT = frozenset({"quota_compute", "quota_network", "role_assignment"})


def differing_fields(desired: Mapping[str, Any], observed: Mapping[str, Any]) -> tuple[str, ...]:
    out = []
    for k, want in desired.items():
        have = observed.get(k)
        if k == "tags":
            if not set(want) <= set(have or ()):
                out.append(k)
        elif have != want:
            out.append(k)
    return tuple(sorted(out))


@dataclass(frozen=True)
class Scope:
    """Which managed objects may count as orphans (see ``diff``)."""

    known: frozenset[str]
    scoped: frozenset[str]
    every_region: bool
    regions: frozenset[str]


def diff(
    desired: Desired,
    observed: Observed,
    *,
    prune: bool = False,
    known_departments: Iterable[str] = (),
    scoped_departments: Iterable[str] = (),
    ops_cidrs: Iterable[str] = (),
    every_region: bool = True,
) -> ProvisionPlan:
    """The plan that takes ``observed`` to ``desired``.

    ``known_departments``: every department of the inventory (an orphan is a managed object of a
    department outside it, or one its department no longer wants). ``scoped_departments``: when given
    (``--department``), only those departments' orphans are considered. ``every_region``: all of the
    topology's regions are in scope (only then may a department's Keystone project be pruned).
    Phases: open-SSH warnings, clashes (and what they hold back), creates and updates, orphans
    (warnings, or deletions when pruning), requirements; then the changes in dependency order.
    """
    want = desired.by_key()
    have = observed.by_key()
    findings = _ops_warnings(ops_cidrs)
    clash_findings, blocked = _clashes(want, have)
    findings += clash_findings
    upserts, upsert_findings = _creates_and_updates(want, have, blocked)
    findings += upsert_findings
    scope = Scope(frozenset(known_departments), frozenset(scoped_departments), every_region,
                  frozenset(desired.regions))
    orphans = _orphans(want, have, desired, scope)
    deletions = _deletions(orphans) if prune else []
    if not prune:
        findings += _orphan_warnings(orphans)
    findings += _requirement_findings(desired, observed)
    return ProvisionPlan(
        changes=tuple(_in_apply_order([*upserts, *deletions])),
        findings=tuple(findings),
        desired=desired.resources,
        regions=desired.regions,
        departments=desired.departments,
        prune=prune,
        known_departments=tuple(sorted(scope.known)),
        scoped_departments=tuple(sorted(scope.scoped)),
    )


Wanted = Mapping[str, Resource]
Found = Mapping[str, list[ObservedResource]]


def _ops_warnings(ops_cidrs: Iterable[str]) -> list[Finding]:
    return [Finding("warning", GLOBAL, "", f"SSH is opened to {cidr} because topology.yaml's ops_cidrs says so",
                    "narrow security.ops_cidrs to the operators' networks")
            for cidr in ops_cidrs if cidr.endswith("/0")]


def _clashes(want: Wanted, have: Found) -> tuple[list[Finding], set[str]]:
    """Objects govcloud does not own, duplicates, and the keys held back (transitively) by a clash."""
    findings: list[Finding] = []
    blocked: set[str] = set()
    for key, res in want.items():
        found = have.get(key, [])
        managed = [o for o in found if o.managed]
        foreign = [o for o in found if not o.managed]
        if foreign and not managed:
            o = foreign[0]
            findings.append(Finding(
                "warning", res.region, res.department,
                f"{res.kind} {res.name} exists (id {o.id}) but is not managed by govcloud: not touched",
                "rename or remove it, or tag it `govcloud:managed` + `govcloud:dept=<id>` to adopt it"
                if res.kind in ("project", "network", "subnet", "router", "security_group")
                else "rename or remove it (this kind cannot carry tags)"))
            blocked.add(key)
        if len(managed) > 1:
            findings.append(Finding("warning", res.region, res.department,
                                    f"{len(managed)} managed {res.kind}s named {res.name} (ids {', '.join(o.id for o in managed)}); "
                                    "govcloud uses the first", "delete the extra copies"))
    changed = True
    while changed:  # hold back everything that (transitively) needs a clashing object
        changed = False
        for key, res in want.items():
            if key not in blocked and any(d in blocked for d in res.depends):
                blocked.add(key)
                changed = True
    for key in sorted(blocked):
        res = want[key]
        if not any(o.managed for o in have.get(key, [])) and have.get(key):
            continue  # the clash itself was reported above
        findings.append(Finding("warning", res.region, res.department,
                                f"{res.kind} {res.name} held back: it needs an object govcloud does not own"))
    return findings, blocked


def _creates_and_updates(want: Wanted, have: Found, blocked: set[str]) -> tuple[list[Change], list[Finding]]:
    """A create for each missing object, an update for each drifted one (an immutable field is an error)."""
    changes: list[Change] = []
    findings: list[Finding] = []
    for key, res in want.items():
        if key in blocked:
            continue
        managed = [o for o in have.get(key, []) if o.managed]
        if not managed:
            changes.append(Change(Action.CREATE, res.kind, res.region, res.department, res.name,
                                  after=res.params, depends=res.depends))
            continue
        o = managed[0]
        fields = differing_fields(res.p, o.p)
        if not fields:
            continue
        frozen = [f for f in fields if f in IMMUTABLE.get(res.kind, frozenset())]
        if frozen:
            findings.append(Finding(
                "error", res.region, res.department,
                f"{res.kind} {res.name} (id {o.id}) has {', '.join(f'{f}={o.p.get(f)!r}' for f in frozen)}; "
                f"wanted {', '.join(f'{f}={res.p.get(f)!r}' for f in frozen)}, which cannot change in place",
                "move what uses it, delete it by hand, and plan again"))
            continue
        changes.append(Change(Action.UPDATE, res.kind, res.region, res.department, res.name,
                              after=res.params, before=tuple((k, v) for k, v in o.params if k in res.p),
                              observed_id=o.id, fields=fields, depends=res.depends))
    return changes, findings


def _orphans(want: Wanted, have: Found, desired: Desired, scope: Scope) -> list[ObservedResource]:
    """Managed objects nobody wants any more, within the departments and regions in scope."""
    orphans: list[ObservedResource] = []
    for key, found in sorted(have.items()):
        if key in want:
            continue
        for o in found:
            if not o.managed or o.kind in GONE_WITH_PROJECT or not o.department:
                continue
            if scope.scoped and o.department not in scope.scoped:
                continue
            if o.department in scope.known and o.department not in desired.departments:
                continue  # filtered out by --department, not orphaned
            if o.region == GLOBAL and not scope.every_region:
                continue  # a project goes only when every region is in scope
            if o.region != GLOBAL and scope.regions and o.region not in scope.regions:
                continue
            orphans.append(o)
    return orphans


def _orphan_warnings(orphans: list[ObservedResource]) -> list[Finding]:
    by_dept: dict[tuple[str, str], list[ObservedResource]] = {}
    for o in orphans:
        by_dept.setdefault((o.region, o.department), []).append(o)
    return [Finding("warning", region, dept,
                    f"{len(items)} managed object(s) no longer in the inventory: "
                    + ", ".join(f"{o.kind} {o.name}" for o in items[:6]) + (" ..." if len(items) > 6 else ""),
                    "plan and apply with --prune to delete them")
            for (region, dept), items in sorted(by_dept.items())]


def _deletions(orphans: list[ObservedResource]) -> list[Change]:
    """One delete per orphan; each waits for the orphans that need it (a project for all of its objects)."""
    orphan_keys = {o.key for o in orphans}
    dependents: dict[str, list[str]] = {}
    for o in orphans:
        for d in o.depends:
            if d in orphan_keys:
                dependents.setdefault(d, []).append(o.key)
    # a project's objects in every region go before the project
    for o in orphans:
        if o.kind != "project":
            pk = f"{GLOBAL}/project/gov-{o.department}"
            if pk in orphan_keys and o.key != pk:
                dependents.setdefault(pk, []).append(o.key)
    return [Change(Action.DELETE, o.kind, o.region, o.department, o.name, after=(), before=o.params,
                   observed_id=o.id, depends=tuple(sorted(set(dependents.get(o.key, []))))) for o in orphans]


def _requirement_findings(desired: Desired, observed: Observed) -> list[Finding]:
    """Flavors and images are checked, never created."""
    findings: list[Finding] = []
    for req in desired.requirements:
        if req.region not in observed.regions:
            continue
        if req.kind == "image" and req.name not in observed.images_in(req.region):
            findings.append(Finding("error", req.region, "", f"image {req.name!r} not found in region {req.region} "
                                    f"(needed by {len(req.needed_by)} department(s))",
                                    "upload it to Glance in that region or pass --image with an existing one"))
        if req.kind == "flavor" and not any(f.vcpus >= req.vcpus and f.ram_mb >= req.ram_mb for f in observed.flavors_in(req.region)):
            findings.append(Finding("warning", req.region, "", f"no flavor with at least {req.name} in region {req.region} "
                                    f"(needed by {', '.join(req.needed_by[:5])}{' ...' if len(req.needed_by) > 5 else ''})",
                                    "create a matching flavor before migrating these systems"))
    return findings


_KIND_ORDER = {k: i for i, k in enumerate(("project", "role_assignment", "quota_compute", "quota_network", "network",
                                           "subnet", "router", "router_interface", "security_group", "keypair",
                                           "server_group"))}


def _in_apply_order(changes: list[Change]) -> list[Change]:
    """Global first, then per region and department; creates in dependency order, deletes in reverse."""
    return sorted(changes, key=lambda c: (c.region != GLOBAL, c.region, c.department, c.action is Action.DELETE,
                                          _KIND_ORDER.get(c.kind, 99) * (-1 if c.action is Action.DELETE else 1),
                                          c.name))


def same_changes(a: Iterable[Change], b: Iterable[Change]) -> bool:
    """True if two plans would make the same changes (used to refuse an apply after drift)."""
    return sorted(c.as_dict().__repr__() for c in a) == sorted(c.as_dict().__repr__() for c in b)
