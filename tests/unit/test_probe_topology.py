"""Site probes from the topology (issue 30, item 4): which sites, from which host, at which port.

The estate declares a probe host per site (``regions.R.sites.S.probe``); nothing about the lab is
assumed. The connects themselves are the ConnectPort's (SSH to the probe host); here a table stands
in for it, so that what the exporter makes of the topology and of the answers is checked without I/O.
The real connects over SSH run in tests/integration/test_monitoring.py against the lab's hosts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from govcloud.adapters.ports import ConnectOutcome, Endpoint
from govcloud.adapters.probe_connect import parse_outcomes
from govcloud.errors import InvalidInputError
from govcloud.inventory import load_inventory
from govcloud.services.exporter import ExporterOptions, site_probe_round
from govcloud.services.probes import WITNESS, TopologyProber, aggregate, observers_of, probe_all, topology_targets

PROBES = {"gz-a": "10.240.1.11", "gz-b": "10.240.2.11", "st-a": "10.240.3.11"}


def with_probes(project: Path, sites: dict[str, str] = PROBES) -> Path:
    """Declare each of ``sites``' probe host in the project's topology; returns the topology file."""
    topo = project / "inventories" / "topology.yaml"
    text = topo.read_text()
    for site, address in sites.items():
        text = text.replace(f"{site}: {{availability_zone:", f"{site}: {{probe: {{host: {site}-h1, address: {address}}}, "
                                                           "availability_zone:")
    topo.write_text(text)
    return topo


class _Table:
    """A ConnectPort answering from a table of (observer address or None, target address) that fail."""

    def __init__(self, down: set[tuple[str | None, str]]) -> None:
        self.down = down
        self.calls: list[tuple[str | None, tuple[tuple[str, int], ...]]] = []

    def connect_from(self, observer: Endpoint | None, endpoints: Sequence[tuple[str, int]],
                     timeout: float) -> list[ConnectOutcome]:
        who = None if observer is None else observer.address
        self.calls.append((who, tuple(endpoints)))
        return [ConnectOutcome(False, None, "timed out") if (who, a) in self.down else ConnectOutcome(True, 0.001)
                for a, _port in endpoints]


def test_sites_and_observers_come_from_the_topology(project: Path) -> None:
    with_probes(project)
    topology = load_inventory(project).topology
    targets = topology_targets(topology)
    assert [(t.site, t.region, t.host, t.ip, t.port) for t in targets] == [
        ("gz-a", "gz", "gz-a-h1", "10.240.1.11", 22), ("gz-b", "gz", "gz-b-h1", "10.240.2.11", 22),
        ("st-a", "st", "st-a-h1", "10.240.3.11", 22)]
    observers = observers_of(topology, known_hosts=project / "kh", key_file=None)
    assert observers["st-a"] == Endpoint("10.240.3.11", project / "kh", None, "root", 22, "st-a-h1")


def test_a_round_runs_each_sites_batch_on_its_probe_host_and_the_witness_here(project: Path) -> None:
    """st-a's link is cut: nobody reaches it and it reaches nobody (nor does its observer answer)."""
    with_probes(project)
    topology = load_inventory(project).topology
    st = PROBES["st-a"]
    table = _Table({(None, st), (PROBES["gz-a"], st), (PROBES["gz-b"], st), (st, PROBES["gz-a"]), (st, PROBES["gz-b"])})
    prober = TopologyProber(observers_of(topology, known_hosts=project / "kh", key_file=None), table)
    snap = probe_all(prober, topology_targets(topology), witnesses=(WITNESS,), clock=lambda: 7.0)
    assert sorted(who or "here" for who, _ in table.calls) == sorted([*PROBES.values(), "here"])  # one batch each
    assert {(r.source, r.target) for r in snap.results if not r.ok} == {
        ("controller", "st-a"), ("gz-a", "st-a"), ("gz-b", "st-a"), ("st-a", "gz-a"), ("st-a", "gz-b")}
    health = aggregate(snap)
    assert [(v.site, v.up) for v in health.sites] == [("gz-a", True), ("gz-b", True), ("st-a", False)]


def test_a_site_without_a_probe_host_is_warned_and_not_probed(project: Path, run_cli: object) -> None:
    with_probes(project, {"gz-a": PROBES["gz-a"], "gz-b": PROBES["gz-b"]})
    r = run_cli("--root", str(project), "validate")  # type: ignore[operator]
    assert r.exit_code == 0, r.stderr
    assert "site 'st-a' declares no probe host" in r.stderr
    assert [t.site for t in topology_targets(load_inventory(project).topology)] == ["gz-a", "gz-b"]


def test_two_sites_on_one_probe_endpoint_is_an_input_error_with_its_place(project: Path, run_cli: object) -> None:
    topo = with_probes(project, {"gz-a": "10.240.1.11", "gz-b": "10.240.1.11", "st-a": "10.240.3.11"})
    r = run_cli("--root", str(project), "validate")  # type: ignore[operator]
    assert r.exit_code == 2
    line = next(i for i, text in enumerate(topo.read_text().splitlines(), 1) if text.strip().startswith("gz-b:"))
    assert f"topology.yaml:{line}:" in r.stderr
    assert "sites 'gz-a' and 'gz-b' share the probe endpoint 10.240.1.11 port 22" in r.stderr


def test_without_probe_hosts_the_exporter_probes_nothing_and_with_them_needs_known_hosts(project: Path) -> None:
    assert site_probe_round(ExporterOptions(topology=load_inventory(project).topology)) is None
    with_probes(project)
    topology = load_inventory(project).topology
    with pytest.raises(InvalidInputError, match="known_hosts"):
        site_probe_round(ExporterOptions(topology=topology, known_hosts=project / "missing"))
    (project / "kh").write_text("")
    assert site_probe_round(ExporterOptions(topology=topology, known_hosts=project / "kh")) is not None
    assert site_probe_round(ExporterOptions(topology=topology, probes=False)) is None


def test_probe_output_is_read_only_when_it_answers_every_target() -> None:
    assert parse_outcomes('[[true, 0.01, ""], [false, null, "ConnectionRefusedError x"]]\n', 2) == [
        ConnectOutcome(True, 0.01), ConnectOutcome(False, None, "ConnectionRefusedError x")]
    assert parse_outcomes("[[true, 0.01, \"\"]]", 2) is None
    assert parse_outcomes("Traceback ...", 1) is None
    assert parse_outcomes("", 1) is None
