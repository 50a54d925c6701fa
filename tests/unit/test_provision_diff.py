"""diff(desired, observed): no-op, drift, untagged clashes, orphans and prune; plan files; the executor."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from govcloud.errors import GovcloudError, PlanError
from govcloud.inventory import load_inventory
from govcloud.provision import DesiredOptions, Observed, ObservedResource, build_desired, diff
from govcloud.provision.diff import same_changes
from govcloud.provision.model import Action, Change, Flavor, Resource, make_params
from govcloud.provision.planfile import dump_plan, load_plan
from govcloud.services.provision import execute

REPO = Path(__file__).resolve().parents[2]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"
FLAVORS = (("gz", (Flavor("big", 64, 262144),)), ("st", (Flavor("big", 64, 262144),)))
IMAGES = (("gz", ("fake-image",)), ("st", ("fake-image",)))


@pytest.fixture(scope="module")
def inv():  # type: ignore[no-untyped-def]
    return load_inventory(REPO / "tests" / "data" / "mini")


@pytest.fixture(scope="module")
def desired(inv):  # type: ignore[no-untyped-def]
    return build_desired(inv, DesiredOptions(public_key=KEY))


def as_observed(res: Resource, *, managed: bool = True, ident: str = "") -> ObservedResource:
    return ObservedResource(res.kind, res.region, res.name, ident or f"id-{res.key}", managed, res.department, res.params,
                            res.depends)


def converged(desired) -> list[ObservedResource]:  # type: ignore[no-untyped-def]
    return [as_observed(r) for r in desired.resources]


def run(desired, observed: list[ObservedResource], **kw):  # type: ignore[no-untyped-def]
    return diff(desired, Observed(tuple(observed), FLAVORS, IMAGES, ("gz", "st")), known_departments=["hrss", "zsj"], **kw)


def test_empty_cloud_creates_everything(desired) -> None:  # type: ignore[no-untyped-def]
    plan = run(desired, [])
    assert plan.counts() == {"create": len(desired.resources), "update": 0, "delete": 0}
    assert not plan.errors
    # dependency order in the rendering: projects first
    assert plan.changes[0].kind == "project"


def test_converged_cloud_is_a_no_op(desired) -> None:  # type: ignore[no-untyped-def]
    plan = run(desired, converged(desired))
    assert plan.changes == () and not plan.findings


def test_foreign_extra_tag_is_not_drift(desired) -> None:  # type: ignore[no-untyped-def]
    obs = converged(desired)
    net = next(i for i, o in enumerate(obs) if o.kind == "network")
    p = obs[net].p
    obs[net] = ObservedResource(obs[net].kind, obs[net].region, obs[net].name, obs[net].id, True, obs[net].department,
                                make_params({**p, "tags": [*p["tags"], "someone:else"]}))
    assert run(desired, obs).changes == ()


def test_rule_added_by_hand_is_removed_and_deleted_subnet_recreated(desired) -> None:  # type: ignore[no-untyped-def]
    obs = converged(desired)
    i = next(i for i, o in enumerate(obs) if o.kind == "security_group" and o.name == "gov-hrss-base" and o.region == "gz")
    p = obs[i].p
    obs[i] = ObservedResource("security_group", "gz", "gov-hrss-base", obs[i].id, True, "hrss",
                              make_params({**p, "rules": [*p["rules"], "tcp:22:0.0.0.0/0"]}))
    obs = [o for o in obs if not (o.kind in ("subnet", "router_interface") and o.name == "gov-zsj-data" and o.region == "st")]
    plan = run(desired, obs)
    got = {(c.action, c.kind, c.region, c.name) for c in plan.changes}
    assert got == {(Action.UPDATE, "security_group", "gz", "gov-hrss-base"),
                   (Action.CREATE, "subnet", "st", "gov-zsj-data"),
                   (Action.CREATE, "router_interface", "st", "gov-zsj-data")}
    upd = next(c for c in plan.changes if c.action is Action.UPDATE)
    assert upd.fields == ("rules",) and "tcp:22:0.0.0.0/0" not in dict(upd.after)["rules"]


def test_untagged_clash_is_reported_never_touched_and_holds_back_dependents(desired) -> None:  # type: ignore[no-untyped-def]
    obs = [o for o in converged(desired) if not (o.kind in ("network", "subnet", "router_interface") and o.name == "gov-hrss-app"
                                                  and o.region == "gz")]
    net = next(r for r in desired.resources if r.kind == "network" and r.name == "gov-hrss-app" and r.region == "gz")
    obs.append(ObservedResource("network", "gz", "gov-hrss-app", "theirs", False, "", make_params({"project": "other", "tags": []})))
    plan = run(desired, obs)
    assert all(c.observed_id != "theirs" for c in plan.changes)
    assert not [c for c in plan.changes if c.name == "gov-hrss-app" and c.region == "gz"]
    msgs = [f.message for f in plan.findings]
    assert any("network gov-hrss-app exists (id theirs) but is not managed" in m for m in msgs)
    assert any("subnet gov-hrss-app held back" in m for m in msgs)
    assert net.key not in {c.key for c in plan.changes}


def test_orphans_are_reported_and_deleted_only_with_prune_in_dependency_order(desired) -> None:  # type: ignore[no-untyped-def]
    inv2 = load_inventory(REPO / "tests" / "data" / "mini")
    gone = build_desired(inv2, DesiredOptions(public_key=KEY, departments=("zsj",)))
    obs = converged(desired)
    keep = Observed(tuple(obs), FLAVORS, IMAGES, ("gz", "st"))
    # the inventory now only knows hrss
    only_hrss = build_desired(inv2, DesiredOptions(public_key=KEY, departments=("hrss",)))
    plan = diff(only_hrss, keep, known_departments=["hrss"])
    assert plan.changes == ()
    assert any("no longer in the inventory" in f.message and f.department == "zsj" for f in plan.findings)
    pruned = diff(only_hrss, keep, known_departments=["hrss"], prune=True)
    deletes = [c for c in pruned.changes if c.action is Action.DELETE]
    zsj_keys = {r.key for r in gone.resources if r.kind not in ("quota_compute", "quota_network", "role_assignment")}
    assert {c.key for c in deletes} == zsj_keys
    proj = next(c for c in deletes if c.kind == "project")
    assert len(proj.depends) == len(zsj_keys) - 1  # everything else goes first
    net = next(c for c in deletes if c.kind == "network" and c.region == "gz" and c.name == "gov-zsj-app")
    assert net.depends == ("gz/subnet/gov-zsj-app",)
    # one region only: the region's objects go, the Keystone project stays
    gz_only = build_desired(inv2, DesiredOptions(public_key=KEY, departments=("hrss",), regions=("gz",)))
    partial = diff(gz_only, Observed(tuple(o for o in obs if o.region in ("gz", "global")), FLAVORS, IMAGES, ("gz",)),
                   known_departments=["hrss"], prune=True, every_region=False)
    kinds = {(c.region, c.kind) for c in partial.changes if c.action is Action.DELETE}
    assert ("gz", "network") in kinds and ("global", "project") not in kinds
    # scoped prune: naming another department leaves zsj alone
    scoped = diff(only_hrss, keep, known_departments=["hrss"], prune=True, scoped_departments=["other"])
    assert not [c for c in scoped.changes if c.action is Action.DELETE]


def test_immutable_difference_is_a_blocking_error(desired) -> None:  # type: ignore[no-untyped-def]
    obs = converged(desired)
    i = next(i for i, o in enumerate(obs) if o.kind == "subnet")
    obs[i] = ObservedResource("subnet", obs[i].region, obs[i].name, obs[i].id, True, obs[i].department,
                              make_params({**obs[i].p, "cidr": "10.244.250.0/24"}))
    plan = run(desired, obs)
    assert plan.errors and "cannot change in place" in plan.errors[0].message and plan.changes == ()


def test_missing_image_blocks_and_small_flavors_warn(inv) -> None:  # type: ignore[no-untyped-def]
    desired = build_desired(inv, DesiredOptions(public_key=KEY, image="fake-image"))  # --image: no topology images
    plan = diff(desired, Observed(tuple(converged(desired)), (("gz", (Flavor("tiny", 1, 512),)),), (("gz", ()),), ("gz",)))
    assert any("image 'fake-image' not found in region gz" in f.message for f in plan.errors)
    assert any(f.severity == "warning" and "no flavor with at least" in f.message for f in plan.findings)


def test_plan_file_round_trip(desired) -> None:  # type: ignore[no-untyped-def]
    plan = run(desired, [])
    back = load_plan(dump_plan(plan))
    assert same_changes(back.changes, plan.changes) and back.desired == plan.desired
    with pytest.raises(PlanError, match="not a govcloud provision plan"):
        load_plan('{"format": "x"}')
    with pytest.raises(PlanError, match="not a plan file"):
        load_plan("{")


def test_executor_respects_dependencies_and_the_concurrency_bound() -> None:
    changes = [Change(Action.CREATE, "network", "gz", "d", f"n{i}", depends=("global/project/p",)) for i in range(12)]
    changes.append(Change(Action.CREATE, "project", "global", "d", "p"))
    changes.append(Change(Action.CREATE, "subnet", "gz", "d", "s", depends=("gz/network/n3",)))
    order: list[str] = []
    running = 0
    peak = 0
    lock = threading.Lock()

    def work(c: Change) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            order.append(c.key)
        time.sleep(0.01)  # a stand-in for an API round trip; lets steps overlap
        with lock:
            running -= 1
        return "ok"

    res = execute(changes, work, concurrency=3)
    assert res.ok and len(res.done) == 14
    assert order[0] == "global/project/p"
    assert order.index("gz/subnet/s") > order.index("gz/network/n3")
    assert peak <= 3


def test_executor_skips_dependents_of_a_failure_and_deletes_without_prune() -> None:
    changes = [Change(Action.CREATE, "project", "global", "d", "p"),
               Change(Action.CREATE, "network", "gz", "d", "n", depends=("global/project/p",)),
               Change(Action.CREATE, "project", "global", "e", "q"),
               Change(Action.DELETE, "network", "gz", "x", "old")]

    def work(c: Change) -> str:
        if c.name == "p":
            raise GovcloudError("boom")
        return "ok"

    res = execute(changes, work)
    assert [c.name for c, _ in res.failed] == ["p"]
    assert {c.name: why for c, why in res.skipped} == {"n": "not attempted: global/project/p failed", "old": "needs --prune"}
    assert [c.name for c, _ in res.done] == ["q"] and not res.ok
