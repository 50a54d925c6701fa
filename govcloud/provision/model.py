"""Frozen data of provisioning: desired resources, what the cloud has, and the plan between them.

A resource is named by its key ``<region>/<kind>/<name>``; ``region`` is ``global`` for Keystone
objects (one Keystone serves every region). ``params`` holds only what govcloud owns and compares
(os-migrate's ``params``); ids and timestamps live on :class:`ObservedResource` and are never diffed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

MANAGED_TAG = "govcloud:managed"
DEPT_TAG_PREFIX = "govcloud:dept="
GLOBAL = "global"

# Kinds in dependency order (a kind only depends on kinds before it). The executor uses the
# explicit ``depends`` of each resource; this order is for stable rendering.
KINDS: tuple[str, ...] = (
    "project",
    "role_assignment",
    "quota_compute",
    "quota_network",
    "network",
    "subnet",
    "router",
    "router_interface",
    "security_group",
    "keypair",
    "server_group",
)

# Kinds that carry tags in OpenStack; the others are owned through their project (quotas, role
# assignments, server groups live in a managed project) or a fingerprint (keypairs: our public key).
TAGGED_KINDS = frozenset({"project", "network", "subnet", "router", "security_group"})

Params = tuple[tuple[str, Any], ...]


def freeze(value: Any) -> Any:
    """Lists (from JSON) become tuples, dicts become sorted item tuples: hashable and comparable."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    return value


def thaw(value: Any) -> Any:
    """Tuples back to lists for JSON."""
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def make_params(mapping: Mapping[str, Any]) -> Params:
    return tuple(sorted((k, freeze(v)) for k, v in mapping.items()))


def dept_tag(department: str) -> str:
    return f"{DEPT_TAG_PREFIX}{department}"


def key_of(region: str, kind: str, name: str) -> str:
    return f"{region}/{kind}/{name}"


def _record_to_dict(record: Any) -> dict[str, Any]:
    """A resource record as JSON data: params thawed, depends as a list, other fields as they are."""
    out: dict[str, Any] = {}
    for f in fields(record):
        value = getattr(record, f.name)
        if f.name == "params":
            value = {k: thaw(v) for k, v in value}
        elif f.name == "depends":
            value = list(value)
        out[f.name] = value
    return out


def _record_kwargs(cls: type, d: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments for ``cls`` from JSON data (the inverse of :func:`_record_to_dict`)."""
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name == "params":
            kwargs["params"] = make_params(d.get("params", {}))
        elif f.name == "depends":
            kwargs["depends"] = tuple(d.get("depends", ()))
        elif f.name in d:
            kwargs[f.name] = bool(d[f.name]) if f.type in ("bool", bool) else str(d[f.name])
    return kwargs


class _Record:
    """What desired and observed records share: the key, params as a dict, JSON form."""

    kind: str
    region: str
    name: str
    params: Params

    @property
    def key(self) -> str:
        return key_of(self.region, self.kind, self.name)

    @property
    def p(self) -> dict[str, Any]:
        return dict(self.params)

    def as_dict(self) -> dict[str, Any]:
        return _record_to_dict(self)


@dataclass(frozen=True)
class Resource(_Record):
    """One desired object. ``depends`` are keys of resources that must exist first."""

    kind: str
    region: str
    department: str
    name: str
    params: Params = ()
    depends: tuple[str, ...] = ()


    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Resource:
        return cls(**_record_kwargs(cls, d))


@dataclass(frozen=True)
class ObservedResource(_Record):
    """One object the cloud has, normalised by the adapter to the same ``params`` keys as desired.

    ``managed``: carries the ``govcloud:managed`` tag (or, for untaggable kinds, belongs to a managed
    project / holds our public key). ``department`` comes from the ``govcloud:dept=`` tag ("" if none).
    """

    kind: str
    region: str
    name: str
    id: str
    managed: bool
    department: str = ""
    params: Params = ()
    depends: tuple[str, ...] = ()


    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ObservedResource:
        return cls(**_record_kwargs(cls, d))


@dataclass(frozen=True)
class Requirement:
    """Something the landing zone needs but does not create: a flavor or an image in a region."""

    kind: str  # "flavor" | "image"
    region: str
    name: str  # image name, or a human label for the flavor need ("4 vCPU / 16384 MB")
    vcpus: int = 0
    ram_mb: int = 0
    needed_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class Flavor:
    name: str
    vcpus: int
    ram_mb: int


@dataclass(frozen=True)
class Observed:
    """Everything the adapter read, per region: resources plus the flavors and images on offer."""

    resources: tuple[ObservedResource, ...]
    flavors: tuple[tuple[str, tuple[Flavor, ...]], ...] = ()  # (region, flavors)
    images: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (region, image names)
    regions: tuple[str, ...] = ()  # regions that were read

    def by_key(self) -> dict[str, list[ObservedResource]]:
        out: dict[str, list[ObservedResource]] = {}
        for r in self.resources:
            out.setdefault(r.key, []).append(r)
        return out

    def flavors_in(self, region: str) -> tuple[Flavor, ...]:
        return dict(self.flavors).get(region, ())

    def images_in(self, region: str) -> tuple[str, ...]:
        return dict(self.images).get(region, ())


@dataclass(frozen=True)
class Desired:
    resources: tuple[Resource, ...]
    requirements: tuple[Requirement, ...] = ()
    departments: tuple[str, ...] = ()  # in scope (after filters)
    regions: tuple[str, ...] = ()  # in scope (after filters)

    def by_key(self) -> dict[str, Resource]:
        return {r.key: r for r in self.resources}


class Action(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True)
class Change:
    """One step of a plan. ``before`` is what the cloud had (None for create); ``after`` the target."""

    action: Action
    kind: str
    region: str
    department: str
    name: str
    after: Params = ()
    before: Params | None = None
    observed_id: str = ""
    fields: tuple[str, ...] = ()  # for update: which params differ
    depends: tuple[str, ...] = ()  # keys (creates/updates: resources first; deletes: dependents first)

    @property
    def key(self) -> str:
        return key_of(self.region, self.kind, self.name)

    @property
    def destructive(self) -> bool:
        return self.action is Action.DELETE

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "kind": self.kind,
            "region": self.region,
            "department": self.department,
            "name": self.name,
            "after": {k: thaw(v) for k, v in self.after},
            "before": None if self.before is None else {k: thaw(v) for k, v in self.before},
            "observed_id": self.observed_id,
            "fields": list(self.fields),
            "depends": list(self.depends),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Change:
        before = d.get("before")
        return cls(
            action=Action(d["action"]),
            kind=str(d["kind"]),
            region=str(d["region"]),
            department=str(d["department"]),
            name=str(d["name"]),
            after=make_params(d.get("after", {})),
            before=None if before is None else make_params(before),
            observed_id=str(d.get("observed_id", "")),
            fields=tuple(d.get("fields", ())),
            depends=tuple(d.get("depends", ())),
        )


@dataclass(frozen=True)
class Finding:
    """Something the plan reports but does not change: a clash, an orphan, a missing flavor."""

    severity: str  # "error" blocks apply; "warning" is reported
    region: str
    department: str
    message: str
    hint: str = ""

    def render(self) -> str:
        prefix = "" if self.severity == "error" else "warning: "
        text = f"{self.region}/{self.department or '-'}: {prefix}{self.message}"
        return text + (f"\n  hint: {self.hint}" if self.hint else "")

    def as_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "region": self.region, "department": self.department,
                "message": self.message, "hint": self.hint}


@dataclass(frozen=True)
class ProvisionPlan:
    """The reviewable plan: what will change, what was found, and the desired state it came from."""

    changes: tuple[Change, ...]
    findings: tuple[Finding, ...] = ()
    desired: tuple[Resource, ...] = ()
    regions: tuple[str, ...] = ()
    departments: tuple[str, ...] = ()
    prune: bool = False
    known_departments: tuple[str, ...] = ()  # the inventory's departments when the plan was made
    scoped_departments: tuple[str, ...] = ()  # --department filter (scopes orphans too)
    inventory_digest: str = ""
    created_at: str = ""
    meta: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    def counts(self) -> dict[str, int]:
        out = {a.value: 0 for a in Action}
        for c in self.changes:
            out[c.action.value] += 1
        return out

    def grouped(self) -> dict[tuple[str, str], list[Change]]:
        """Changes grouped by (region, department), in a stable order."""
        out: dict[tuple[str, str], list[Change]] = {}
        for c in self.changes:
            out.setdefault((c.region, c.department), []).append(c)
        return dict(sorted(out.items()))


def unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
