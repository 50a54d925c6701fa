"""The pure parts of the migration engine: targets per placement, flavors, windows, dependency order,
and the per-system step plan that `--dry-run` prints and `run`/`resume` follow."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from govcloud.inventory import load_inventory
from govcloud.migrate.state import Action, State, Status
from govcloud.migrate.steps import CRASH_POINTS, composite, next_steps
from govcloud.migrate.targets import (
    FlavorInfo,
    order_by_dependencies,
    pick_flavor,
    target_sites,
    targets_of,
    window_state,
)
from govcloud.model import SitePlacement, Window

MIG = Path(__file__).resolve().parents[1] / "data" / "mig"
TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def inventory():  # type: ignore[no-untyped-def]
    return load_inventory(MIG)


def test_one_server_per_legacy_host_and_assigned_site(inventory) -> None:  # type: ignore[no-untyped-def]
    topo = inventory.topology
    aa = inventory.system("tmig-db")
    specs = targets_of(aa, SitePlacement("gz-a", "gz-b", "st-a"), topo)
    assert [(s.name, s.site, s.region, s.primary) for s in specs] == [
        ("tmig-db-01-gz-a", "gz-a", "gz", True), ("tmig-db-01-gz-b", "gz-b", "gz", False)]
    assert (specs[0].vcpus, specs[0].ram_mb) == (2, 8192)  # half of 4 vCPU / 16 GB per Guangzhou site
    standby = inventory.system("tmig-app")
    specs = targets_of(standby, SitePlacement("gz-b", None, "st-a"), topo)
    assert [(s.site, s.region) for s in specs] == [("gz-b", "gz"), ("st-a", "st")]
    assert all((s.vcpus, s.ram_mb) == (2, 8192) for s in specs)  # the standby is full size
    single = inventory.system("tmig-web")
    assert target_sites(single, SitePlacement("gz-a", None, "st-a")) == ("gz-a",)
    meta = targets_of(single, SitePlacement("gz-a"), topo)[0].metadata("p")
    assert meta["govcloud:migration"] == "p/tmig-web" and meta["govcloud:legacy-host"] == "tmig-web-01"


def test_pick_flavor_takes_the_smallest_that_fits() -> None:
    flavors = [FlavorInfo("gov.4c16g", 4, 16384), FlavorInfo("gov.2c8g", 2, 8192), FlavorInfo("m1.large", 4, 8192)]
    assert pick_flavor(flavors, 2, 8192) == FlavorInfo("gov.2c8g", 2, 8192)
    assert pick_flavor(flavors, 3, 8192) == FlavorInfo("m1.large", 4, 8192)
    assert pick_flavor(flavors, 8, 1024) is None


@pytest.mark.parametrize(("when", "inside", "closes"), [
    ("2026-11-28 22:00", True, "2026-11-29 06:00"),  # Saturday evening: opens
    ("2026-11-29 05:59", True, "2026-11-29 06:00"),  # Saturday's window runs into Sunday morning
    ("2026-11-29 06:00", False, "2026-11-30 06:00"),  # closed; next: Sunday 22:00 -> Monday 06:00
    ("2026-11-30 03:00", True, "2026-11-30 06:00"),  # Sunday's window crosses into Monday
    ("2026-11-26 15:00", False, "2026-11-29 06:00"),  # a Thursday: next Saturday
])
def test_window_state_handles_windows_crossing_midnight(when: str, inside: bool, closes: str) -> None:
    w = Window(("sat", "sun"), "22:00", "06:00")
    ws = window_state(w, datetime.fromisoformat(when).replace(tzinfo=TZ))
    assert ws.inside is inside
    assert ws.closes == datetime.fromisoformat(closes).replace(tzinfo=TZ)


def test_dependency_order_puts_dependencies_first_and_cycles_together() -> None:
    deps = {"app": ["db"], "web": ["app", "outside"], "a": ["b"], "b": ["a"], "db": []}
    assert order_by_dependencies(["web", "app", "db", "a", "b"], deps) == [["a", "b", "db"], ["app"], ["web"]]


@given(st.dictionaries(st.sampled_from("abcdefg"), st.lists(st.sampled_from("abcdefg"), max_size=3), min_size=1))
def test_dependency_order_property(deps: dict[str, list[str]]) -> None:
    systems = sorted(deps)
    batches = order_by_dependencies(systems, deps)
    level = {s: i for i, b in enumerate(batches) for s in b}
    assert sorted(level) == systems
    for s, ds in deps.items():
        for d in ds:
            if d in level and d != s:
                # a dependency is never later; same level only inside a cycle
                assert level[d] <= level[s]


def test_next_steps_follow_the_state_machine() -> None:
    assert next_steps("x", Status()).steps == (Action.PREFLIGHT, Action.PROVISION, Action.WARM_SYNC, Action.CUTOVER,
                                               Action.VERIFY, Action.FINISH)
    manual = next_steps("x", Status(State.SYNCED, State.SYNCED), manual_cutover=True)
    assert manual.steps == () and "govcloud migrate cutover x" in manual.note
    assert next_steps("x", Status(State.CUTOVER, State.CUTOVER)).steps == (Action.VERIFY, Action.FINISH)
    failed_early = next_steps("x", Status(State.FAILED, State.PROVISIONED))
    assert failed_early.reopen and failed_early.steps[0] == Action.WARM_SYNC
    failed_late = next_steps("x", Status(State.FAILED, State.CUTOVER))
    assert not failed_late.reopen and failed_late.steps == (Action.ROLLBACK,)
    assert next_steps("x", Status(State.DONE, State.DONE)).steps == ()
    assert next_steps("x", Status(State.ROLLED_BACK, State.CUTOVER)).steps[0] == Action.PREFLIGHT
    assert next_steps("x", Status(State.ROLLED_BACK, State.CUTOVER), retry_rolled_back=False).steps == ()


def test_crash_points_are_named_once_and_composites_ignore_order() -> None:
    assert len(CRASH_POINTS) == len(set(CRASH_POINTS)) >= 10
    assert composite({"a": "1", "b": "2"}) == composite({"b": "2", "a": "1"}) != composite({"a": "2", "b": "1"})
