"""The topology's `dns` section: loaded into the model, and every mistake pointed at file:line:col."""

from __future__ import annotations

from pathlib import Path

from govcloud.inventory.loader import load_inventory
from tests.unit.test_validate_errors import TOPO, edit, validate


def test_the_zone_and_its_servers_are_loaded(project: Path) -> None:
    inv = load_inventory(project)
    dns = inv.topology.dns
    assert dns is not None and dns.zone == "svc.gdgov.internal." and dns.default_ttl == 30
    assert [(s.site, s.address, s.port) for s in dns.servers] == [
        ("gz-a", "10.240.1.53", 53), ("gz-b", "10.240.2.53", 53), ("st-a", "10.240.3.53", 53)]
    assert dns.name_of("hrss-si") == "hrss-si.svc.gdgov.internal."


def test_a_system_may_override_the_ttl(project: Path) -> None:
    edit(project, "inventories/departments/hrss.yaml", "    rpo_minutes:", "    dns_ttl: 5\n    rpo_minutes:")
    inv = load_inventory(project)
    dns = inv.topology.dns
    assert dns is not None
    ttls = {s.id: s.ttl_in(dns) for s in inv.systems}
    assert 5 in ttls.values() and 30 in ttls.values()


def test_a_server_in_an_unknown_site(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, TOPO, "    st-a: {address: 10.240.3.53}", "    st-b: {address: 10.240.3.53}")
    r = validate(project, run_cli)
    assert r.exit_code == 2
    assert f"{TOPO}:27:5: dns.servers.st-b: DNS server for unknown site 'st-b'" in r.stderr
    assert "did you mean 'st-a'?" in r.stderr
    # and st-a now has none: a warning, on top
    assert "site 'st-a' has no DNS server" in r.stderr


def test_a_zone_without_its_final_dot(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, TOPO, "zone: svc.gdgov.internal.", "zone: svc.gdgov.internal")
    r = validate(project, run_cli)
    assert r.exit_code == 2
    assert f"{TOPO}:23:9: dns.zone:" in r.stderr and "mind the final dot" in r.stderr


def test_two_servers_on_one_address(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, TOPO, "gz-b: {address: 10.240.2.53}", "gz-b: {address: 10.240.1.53}")
    r = validate(project, run_cli)
    assert r.exit_code == 2
    assert f"{TOPO}:26:21: dns.servers.gz-b.address: DNS servers of 'gz-a' and 'gz-b' share 10.240.1.53 port 53" in r.stderr


def test_a_wildcard_listener_is_refused(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, TOPO, "gz-b: {address: 10.240.2.53}", "gz-b: {address: 0.0.0.0}")
    r = validate(project, run_cli)
    assert r.exit_code == 2
    assert "dns.servers.gz-b.address: DNS server address 0.0.0.0 is not one server's address" in r.stderr
    assert "never listen on every interface" in r.stderr


def test_a_bad_address_and_a_bad_ttl(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, TOPO, "gz-b: {address: 10.240.2.53}", "gz-b: {address: 10.240.2.353}")
    edit(project, TOPO, "  zone: svc.gdgov.internal.", "  zone: svc.gdgov.internal.\n  default_ttl: 0")
    r = validate(project, run_cli)
    assert r.exit_code == 2
    assert "dns.default_ttl" in r.stderr
    # the schema error blocks the cross-checks, so the address is reported on the next run
    edit(project, TOPO, "  default_ttl: 0\n", "")
    r = validate(project, run_cli)
    assert "invalid DNS server address '10.240.2.353'" in r.stderr
