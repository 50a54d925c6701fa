"""The guard's rule for property (c) (govcloud.dns.guard) and its configuration file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from govcloud.dns.guard import GuardAction, GuardPolicy, GuardView, PeerState, decide, in_contact
from govcloud.errors import InvalidInputError
from govcloud.services.dns_guard import acl_text, load_guard_config

POLICY = GuardPolicy(lease_s=2.0, repair_after_s=1.5, interval_s=0.5)


def view(now: float = 10.0, *, own: int | None = 5, gzb: int | None = 5, sta: int | None = 5,
         witness: bool = True, serving: bool = True, last_contact: float | None = 9.5,
         behind_since: float | None = None) -> GuardView:
    return GuardView(now, "gz", own, (PeerState("gz-b", "gz", gzb), PeerState("st-a", "st", sta)), witness, serving,
                     last_contact, behind_since)


def test_contact_is_the_witness_or_another_regions_server() -> None:
    gzb_only = (PeerState("gz-b", "gz", 5), PeerState("st-a", "st", None))
    assert not in_contact("gz", gzb_only, witness_ok=False)  # a region cut off from the rest
    assert in_contact("gz", gzb_only, witness_ok=True)
    assert in_contact("gz", (PeerState("gz-b", "gz", None), PeerState("st-a", "st", 5)), witness_ok=False)


def test_a_current_server_in_contact_keeps_serving() -> None:
    assert decide(view(), POLICY).action is GuardAction.KEEP


def test_cut_off_it_withdraws_only_after_the_lease() -> None:
    cut = dict(gzb=None, sta=None, witness=False, last_contact=9.0)
    assert decide(view(now=10.5, **cut), POLICY).action is GuardAction.KEEP  # 1.5 s: still within the lease
    d = decide(view(now=11.0, **cut), POLICY)
    assert d.action is GuardAction.WITHDRAW and "cut off" in d.reason
    assert decide(view(now=20.0, serving=False, **cut), POLICY).action is GuardAction.KEEP


def test_a_region_cut_off_together_withdraws_although_its_sites_see_each_other() -> None:
    d = decide(view(now=12.0, sta=None, witness=False, last_contact=9.0), POLICY)
    assert d.action is GuardAction.WITHDRAW


def test_behind_it_withdraws_at_once_and_repairs_once_it_stays_behind() -> None:
    d = decide(view(own=5, sta=6), POLICY)
    assert d.action is GuardAction.WITHDRAW and d.behind and "st-a holds 6" in d.reason
    d = decide(view(now=10.5, own=5, sta=6, serving=False, behind_since=10.0), POLICY)
    assert d.action is GuardAction.KEEP  # a switch in flight reaches the servers moments apart
    d = decide(view(now=11.6, own=5, sta=6, serving=False, behind_since=10.0), POLICY)
    assert d.action is GuardAction.REPAIR and d.source == "st-a"


def test_back_after_a_failover_it_serves_only_once_current() -> None:
    back = dict(serving=False, last_contact=3.0, witness=True)
    assert decide(view(own=5, gzb=6, sta=6, **back), POLICY).action is GuardAction.KEEP  # behind: not yet
    d = decide(view(own=6, gzb=6, sta=6, **back), POLICY)
    assert d.action is GuardAction.SERVE and "newest of gz-b, st-a" in d.reason


def test_withdrawn_with_no_other_server_to_compare_with_it_stays_withdrawn() -> None:
    d = decide(view(gzb=None, sta=None, witness=True, serving=False), POLICY)
    assert d.action is GuardAction.KEEP and "no other server" in d.reason


def test_a_server_that_does_not_answer_is_left_alone() -> None:
    assert decide(view(own=None, sta=9), POLICY).action is GuardAction.KEEP


def test_ahead_of_the_others_it_serves_and_they_repair_from_it() -> None:
    assert decide(view(own=7, gzb=6, sta=6, serving=False), POLICY).action is GuardAction.SERVE


def test_acl_text_opens_or_closes_the_client_acl() -> None:
    assert "{ any; }" in acl_text(True) and "{ none; }" in acl_text(False)


def test_configuration_errors_name_the_file_and_field(tmp_path: Path) -> None:
    good = {"site": "gz-a", "zone": "svc.test.", "acl_file": "/a", "named_pid_file": "/p", "key_file": "/k",
            "servers": [{"site": "gz-a", "region": "gz", "address": "10.0.0.1"},
                        {"site": "st-a", "region": "st", "address": "10.0.0.3"}], "witness": ["10.0.0.9", 9478]}
    f = tmp_path / "guard.json"
    f.write_text(json.dumps(good))
    cfg = load_guard_config(f)
    assert cfg.own.address == "10.0.0.1" and [p.site for p in cfg.peers] == ["st-a"] and cfg.witness == ("10.0.0.9", 9478)
    f.write_text(json.dumps({k: v for k, v in good.items() if k != "zone"}))
    with pytest.raises(InvalidInputError, match=r"guard.json: guard configuration field 'zone' is missing"):
        load_guard_config(f)
    f.write_text(json.dumps({**good, "site": "gz-b"}))
    with pytest.raises(InvalidInputError, match="site 'gz-b' is not among the servers"):
        load_guard_config(f)
    f.write_text("{")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        load_guard_config(f)


class _Servers:
    """Each server's generation per look (the guard's observations), for Guard.tick without a network."""

    def __init__(self, looks: list[dict[str, int]]) -> None:
        self.looks = looks
        self.calls = 0

    def generation(self, server: object, zone: str) -> int:
        site = server.site  # type: ignore[attr-defined]
        look = self.looks[min(self.calls // 3, len(self.looks) - 1)]
        self.calls += 1
        return look[site]


class _Access:
    def __init__(self) -> None:
        self.on = True

    def serving(self) -> bool:
        return self.on

    def set_serving(self, serving: bool) -> None:
        self.on = serving


def _guard(looks: list[dict[str, int]]) -> tuple[object, _Access, list[float]]:
    from govcloud.services.dns_guard import Guard, GuardConfig, GuardServer

    cfg = GuardConfig("gz-b", "svc.test.", (GuardServer("gz-a", "gz", "10.0.0.1"), GuardServer("gz-b", "gz", "10.0.0.2"),
                                            GuardServer("st-a", "st", "10.0.0.3")), Path("/a"), Path("/p"), Path("/k"))
    access = _Access()
    pauses: list[float] = []
    g = Guard(cfg, _Servers(looks), access, witness_probe=lambda: True, pause=pauses.append)  # type: ignore[arg-type]
    return g, access, pauses


def test_a_switch_in_flight_does_not_withdraw_a_server_seen_behind_for_a_moment() -> None:
    """gz-a already holds the switch's generation 6, gz-b not yet (a few ms apart): the second look
    finds gz-b current, and it keeps serving its clients."""
    g, access, pauses = _guard([{"gz-a": 6, "gz-b": 5, "st-a": 5}, {"gz-a": 6, "gz-b": 6, "st-a": 6}])
    d = g.tick()  # type: ignore[attr-defined]
    assert d.action is GuardAction.KEEP and access.on and pauses == [0.1]


def test_a_server_still_behind_at_the_second_look_withdraws() -> None:
    g, access, pauses = _guard([{"gz-a": 6, "gz-b": 5, "st-a": 6}])
    d = g.tick()  # type: ignore[attr-defined]
    assert d.action is GuardAction.WITHDRAW and not access.on and pauses == [0.1]
    assert g.tick().action is GuardAction.KEEP and pauses == [0.1]  # type: ignore[attr-defined]  # no second look twice
