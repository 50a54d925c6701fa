"""The pure parts of a name switch: the per-server plan, the prerequisite choice, the stale-server rule."""

from __future__ import annotations

from govcloud.dns.stale import Freshness, ServerGeneration, classify, parse_generation, repair_for
from govcloud.dns.switch import Answer, RecordChange, ServerStep, complete, lagging, plan_switch
from govcloud.model import DnsServer

Z = "svc.gdgov.internal."
A, B, S = DnsServer("gz-a", "10.240.1.53"), DnsServer("gz-b", "10.240.2.53"), DnsServer("st-a", "10.240.3.53")
CHANGE = RecordChange(Z, "hrss-si", "10.240.16.10", "10.244.0.12", 30)


def ans(server: DnsServer, *addrs: str) -> Answer:
    return Answer(server, frozenset(addrs))


def test_servers_holding_the_expected_address_get_the_update() -> None:
    plan = plan_switch(CHANGE, [ans(A, "10.240.16.10"), ans(B, "10.240.16.10"), ans(S, "10.240.16.10")])
    assert [p.step for p in plan.servers] == [ServerStep.SEND] * 3
    assert not plan.refused and plan.refusal() == ""


def test_a_resumed_switch_sends_nothing_to_a_server_that_already_answers_the_new_address() -> None:
    plan = plan_switch(CHANGE, [ans(A, "10.244.0.12"), ans(B, "10.240.16.10"), ans(S, "10.244.0.12")])
    assert [p.step for p in plan.servers] == [ServerStep.DONE, ServerStep.SEND, ServerStep.DONE]
    assert [p.server.site for p in plan.to_send] == ["gz-b"]


def test_an_out_of_band_value_anywhere_refuses_the_whole_switch_naming_both_values() -> None:
    plan = plan_switch(CHANGE, [ans(A, "10.240.16.10"), ans(B, "10.9.9.9"), ans(S, "10.240.16.10")])
    assert plan.refused
    assert plan.refusal() == ("hrss-si.svc.gdgov.internal. was changed outside govcloud: expected 10.240.16.10, "
                              "gz-b answers 10.9.9.9; nothing was changed")


def test_two_addresses_where_one_is_expected_is_a_conflict_too() -> None:
    plan = plan_switch(CHANGE, [ans(A, "10.240.16.10", "10.9.9.9")])
    assert plan.refused and "gz-a answers 10.240.16.10, 10.9.9.9" in plan.refusal()


def test_a_first_publication_expects_the_name_absent() -> None:
    first = RecordChange(Z, "hrss-si", None, "10.240.16.10", 30)
    assert [p.step for p in plan_switch(first, [ans(A), ans(B, "10.240.16.10")]).servers] == [ServerStep.SEND, ServerStep.DONE]
    refused = plan_switch(first, [ans(A, "10.1.1.1")])
    assert refused.refused and "expected (absent), gz-a answers 10.1.1.1" in refused.refusal()


def test_a_silent_server_is_skipped_and_the_switch_goes_on() -> None:
    plan = plan_switch(CHANGE, [Answer(A, None, "no answer (timeout)"), ans(B, "10.240.16.10"), ans(S, "10.240.16.10")])
    assert [p.server.site for p in plan.unreachable] == ["gz-a"] and not plan.refused


def test_no_server_answering_refuses_with_each_reason() -> None:
    plan = plan_switch(CHANGE, [Answer(A, None, "no answer (timeout)"), Answer(S, None, "connection refused")])
    assert plan.refused
    assert plan.refusal() == ("hrss-si.svc.gdgov.internal.: no DNS server answers (gz-a: no answer (timeout); "
                              "st-a: connection refused); nothing was changed")


def test_complete_means_every_answering_server_answers_the_new_address() -> None:
    assert complete(CHANGE, [ans(A, "10.244.0.12"), Answer(B, None), ans(S, "10.244.0.12")])
    assert not complete(CHANGE, [ans(A, "10.244.0.12"), ans(S, "10.240.16.10")])
    assert lagging(CHANGE, [ans(A, "10.244.0.12"), ans(S, "10.240.16.10")]) == ("st-a",)
    assert not complete(CHANGE, [Answer(A, None), Answer(B, None)])  # nobody answering is not done


def test_the_stale_server_rule() -> None:
    gens = [ServerGeneration("gz-a", 7), ServerGeneration("gz-b", 5), ServerGeneration("st-a", None),
            ServerGeneration("x", 9)]
    assert classify(7, gens) == {"gz-a": Freshness.CURRENT, "gz-b": Freshness.STALE, "st-a": Freshness.UNKNOWN,
                                 "x": Freshness.AHEAD}


def test_a_repair_makes_the_stale_server_hold_what_the_current_one_holds() -> None:
    current = {"pg": (frozenset({"10.240.2.12"}), 30), "hrss-si": (frozenset({"10.244.0.12"}), 5),
               "multi": (frozenset({"10.1.1.1", "10.1.1.2"}), 30), "same": (frozenset({"10.0.0.1"}), 30)}
    stale = {"pg": (frozenset({"10.240.1.12"}), 30), "same": (frozenset({"10.0.0.1"}), 30),
             "gone": (frozenset({"10.0.0.9"}), 30)}
    fix = repair_for("gz-a", current, stale, 5, 7)
    assert fix.wanted == {"pg": ("10.240.2.12", 30), "hrss-si": ("10.244.0.12", 5)}
    assert fix.remove == ("gone",) and (fix.stale_generation, fix.generation) == (5, 7) and not fix.empty
    assert repair_for("gz-a", current, {**current}, 7, 7).empty


def test_generation_text_must_be_one_whole_number() -> None:
    assert parse_generation(["12"]) == 12
    assert parse_generation([]) is None and parse_generation(["1", "2"]) is None and parse_generation(["x"]) is None
