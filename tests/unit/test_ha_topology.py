"""The topology's highly available PostgreSQL (issue 31, first slice): its validation and its shape.

An estate names the database hosts of each site (``ha.postgres``); which Patroni cluster each joins,
where the etcd members run, synchronous mode and the backup region's standby cluster follow from
that (``govcloud.failover.shape``), and a smaller estate gets a smaller shape whose every loss is
said. Bad input is caught by `govcloud validate` with its place and exit 2, before any host is touched.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from govcloud.errors import InventoryError
from govcloud.failover.shape import ClusterRole, plan_shape
from govcloud.inventory import load_inventory, validate_inventory

REPO = Path(__file__).resolve().parents[2]
THREE = """ha:
  postgres:
    name: pg
    version: "15"
    scope: gdgov
    hosts:
      gz-a: [{name: gz-a-db1, address: 10.240.1.21}]
      gz-b: [{name: gz-b-db1, address: 10.240.2.21}]
      st-a: [{name: st-a-db1, address: 10.240.3.21}]
"""


def with_ha(project: Path, section: str = THREE, *, drop_region: str | None = None) -> Path:
    topo = project / "inventories" / "topology.yaml"
    text = topo.read_text()
    if drop_region == "st":  # a single-region estate (without the departments, whose placements need two)
        for f in (project / "inventories" / "departments").glob("*.yaml"):
            f.unlink()
        text = text.replace(text[text.index("  st:\n"):text.index("replication:")], "")
        text = text.replace("  - {from: gz, to: st, mode: async, max_lag_seconds: 30}\n", "")
        text = text.replace("    st-a: {address: 10.240.3.53}\n", "")
    topo.write_text(text + section)
    return topo


def test_the_shipped_topology_makes_a_sync_cluster_in_gz_a_standby_cluster_in_st_and_gives_up_nothing() -> None:
    topology = load_inventory(REPO).topology
    assert topology.ha_postgres is not None
    shape = plan_shape(topology, topology.ha_postgres)
    assert shape.service == "pg.svc.gdgov.internal."
    main, standby = shape.primary, shape.standby
    assert (main.scope, main.region, main.synchronous) == ("gdgov", "gz", True)
    assert [h.name for h in main.members] == ["gz-a-db1", "gz-b-db1"]
    assert [(m.site, m.client_url) for m in main.etcd] == [
        ("gz-a", "http://10.240.1.21:2379"), ("gz-b", "http://10.240.2.21:2379"), ("st-a", "http://10.240.3.21:2379")]
    assert standby is not None and standby.role is ClusterRole.STANDBY
    assert (standby.scope, standby.region, standby.follows) == ("gdgov-st", "st", "pg.svc.gdgov.internal.")
    assert [m.client_url for m in standby.etcd] == ["http://10.240.3.21:2479"]  # its own ring, other ports
    assert shape.degradations == ()


@pytest.mark.parametrize(("hosts", "drop", "expected"), [
    # one region, two sites: etcd has two members, and nothing stands by in another region
    ("      gz-a: [{name: a1, address: 10.240.1.21}]\n      gz-b: [{name: b1, address: 10.240.2.21}]\n", "st",
     ["etcd ring has 2 members", "no backup region"]),
    # one site with three hosts: a host's loss is survived, the site's is not
    (("      gz-a: [{name: a1, address: 10.240.1.21}, {name: a2, address: 10.240.1.22}, "
      "{name: a3, address: 10.240.1.23}]\n"), None,
     ["every member of the gz cluster is in site gz-a", "gz-b of region gz have no database host",
      "etcd ring spans 1 site", "backup region has no database host"]),
    # a single host: no failover at all
    ("      gz-a: [{name: a1, address: 10.240.1.21}]\n", "st",
     ["has one member (a1)", "gz-b of region gz have no database host", "etcd ring has 1 member",
      "no backup region"]),
])
def test_a_smaller_estate_gets_a_smaller_shape_and_each_loss_is_said(project: Path, hosts: str, drop: str | None,
                                                                       expected: list[str]) -> None:
    with_ha(project, "ha:\n  postgres:\n    name: pg\n    version: \"15\"\n    scope: s\n    hosts:\n" + hosts,
            drop_region=drop)
    topology = load_inventory(project).topology
    assert topology.ha_postgres is not None
    shape = plan_shape(topology, topology.ha_postgres)
    said = [str(d) for d in shape.degradations]
    assert len(said) == len(expected), said
    for text, found in zip(expected, said):
        assert text in found, (text, found)
    assert shape.primary.synchronous == (len(shape.primary.members) >= 2)


BAD = [
    ("      gz-c: [{name: c1, address: 10.240.4.21}]\n", "ha.postgres.hosts.gz-c",
     "database hosts in site 'gz-c', which no region declares", "did you mean 'gz-b'?"),
    ("      gz-a: [{name: a1, address: 10.240.1.21}]\n      gz-b: [{name: b1, address: 10.240.1.21}]\n",
     "ha.postgres.hosts.gz-b[0].address", "'b1' and another database host share address 10.240.1.21",
     "its own address"),
    ("      gz-a: [{name: a1, address: 127.0.0.1}]\n", "ha.postgres.hosts.gz-a[0].address",
     "is not one host's address", "own address"),
    ("      st-a: [{name: s1, address: 10.240.3.21}]\n", "ha.postgres.hosts",
     "no database host in the primary region 'gz'", "gz-a, gz-b"),
    ("      gz-a: [{name: a1, address: 10.240.1.21}]\n    patroni: {ttl_s: 10}\n", "ha.postgres.patroni.ttl_s",
     "below Patroni's minimum of 20 s", "accelerator"),
    ("      gz-a: [{name: a1, address: 10.240.1.21}]\n    patroni: {loop_wait_s: 10, retry_timeout_s: 6}\n",
     "ha.postgres.patroni.loop_wait_s", "exceeds ttl_s 20", "loop_wait + 2 * retry_timeout <= ttl"),
]


@pytest.mark.parametrize(("hosts", "path", "message", "hint"), BAD, ids=[
    "unknown-site", "shared-address", "loopback", "no-primary-host", "ttl", "loop-wait"])
def test_bad_ha_input_is_reported_at_its_line_with_a_fix(project: Path, hosts: str, path: str, message: str,
                                                          hint: str) -> None:
    topo = with_ha(project, "ha:\n  postgres:\n    name: pg\n    version: \"15\"\n    scope: s\n    hosts:\n" + hosts)
    report = validate_inventory(project)
    found = [d for d in report.errors if d.path == path]
    assert found, [(d.path, d.message) for d in report.errors]
    d = found[0]
    assert message in d.message and hint in d.hint, (d.message, d.hint)
    assert d.location.file.endswith("topology.yaml") and d.location.line > 0
    line = topo.read_text().splitlines()[d.location.line - 1]
    assert path.split(".")[-1].split("[")[0] in line, line  # the line that holds the key
    with pytest.raises(InventoryError):
        load_inventory(project)


def test_a_service_name_needs_the_dns_zone(project: Path) -> None:
    topo = project / "inventories" / "topology.yaml"
    text = topo.read_text()
    topo.write_text(text[:text.index("dns:")] + THREE)
    report = validate_inventory(project)
    assert [(d.path, d.message) for d in report.errors] == [
        ("ha.postgres.name", "'pg' is a service name, but the topology declares no dns zone")]


def test_ha_plan_prints_the_shape_and_json_and_exits_2_without_a_section(
        project: Path, run_cli: Callable[..., Any]) -> None:
    r = run_cli("--root", str(project), "ha", "plan")
    assert r.exit_code == 2 and "declares no highly available PostgreSQL" in r.stderr, r
    assert "Traceback" not in r.stderr
    with_ha(project)
    r = run_cli("--root", str(project), "ha", "plan")
    assert r.exit_code == 0, r
    assert "cluster gdgov (primary, region gz, synchronous)" in r.stdout
    assert "gives up nothing" in r.stdout
    r = run_cli("--root", str(project), "--output", "json", "ha", "plan")
    data = json.loads(r.stdout)
    assert [c["scope"] for c in data["clusters"]] == ["gdgov", "gdgov-st"] and data["degradations"] == []
