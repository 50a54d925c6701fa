"""`ha deploy`'s plan (govcloud/failover/ha_deploy.py), its readiness rule and its passwords file (issue 31);
the name's publication is tests/unit/test_ha_follow.py's."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from govcloud.adapters.ha_secrets import load_or_create
from govcloud.errors import InvalidInputError
from govcloud.failover.ha_deploy import Phase, client_networks, plan_deploy, role_vars
from govcloud.failover.ha_status import ClusterView, MemberView, ready
from govcloud.failover.shape import plan_shape
from govcloud.inventory import load_inventory

REPO = Path(__file__).resolve().parents[2]


def shipped():  # type: ignore[no-untyped-def]
    topology = load_inventory(REPO).topology
    assert topology.ha_postgres is not None
    shape = plan_shape(topology, topology.ha_postgres)
    return topology, shape, plan_deploy(topology, topology.ha_postgres, shape)


def _patroni(plan, phase):  # type: ignore[no-untyped-def]
    return {h.host.name: [p.scope for p in h.patroni] for h in plan.phase(phase)}


def test_each_host_gets_its_ring_members_and_patroni_members_by_phase() -> None:
    _topology, _shape, plan = shipped()
    etcd = {h.host.name: [(e.scope, e.client_url) for e in h.etcd] for h in plan.hosts}
    assert etcd == {"gz-a-db1": [("gdgov", "http://10.240.1.21:2379")],
                    "gz-b-db1": [("gdgov", "http://10.240.2.21:2379")],
                    "st-a-db1": [("gdgov", "http://10.240.3.21:2379"), ("gdgov-st", "http://10.240.3.21:2479")]}
    # the home member bootstraps alone; then the primary cluster; then the standby cluster, after the name
    assert _patroni(plan, Phase.HOME) == {"gz-a-db1": ["gdgov"], "gz-b-db1": [], "st-a-db1": []}
    assert _patroni(plan, Phase.PRIMARY) == {"gz-a-db1": ["gdgov"], "gz-b-db1": ["gdgov"], "st-a-db1": []}
    assert _patroni(plan, Phase.ALL) == {"gz-a-db1": ["gdgov"], "gz-b-db1": ["gdgov"], "st-a-db1": ["gdgov-st"]}
    assert all(h.etcd == full.etcd for phase in Phase for h, full in zip(plan.phase(phase), plan.hosts))


def test_role_variables_are_declared_by_their_roles_and_hold_no_password() -> None:
    _topology, _shape, plan = shipped()
    declared: dict[str, set[str]] = {}
    for role in ("govcloud_etcd", "govcloud_patroni"):
        spec = yaml.safe_load((REPO / "playbooks" / "roles" / role / "meta" / "argument_specs.yml").read_text())
        declared[role] = set(spec["argument_specs"]["main"]["options"])
    for host in plan.hosts:
        variables = role_vars(plan, host)
        for name in variables:
            role = "govcloud_etcd" if name.startswith("govcloud_etcd_") else "govcloud_patroni"
            assert name in declared[role], name
        assert not re.search(r"\bpassword\b", json.dumps(variables))  # (password_encryption is a setting)
    st = role_vars(plan, plan.hosts[2])["govcloud_etcd_members"]
    assert st[1]["argv"][:3] == ["etcd", "--name", "st-a-db1"] and st[1]["home"] == "/srv/govcloud-ha/etcd-gdgov-st"


def test_clients_are_the_landing_zones_and_the_operators_networks_only() -> None:
    topology, _shape, _plan = shipped()
    assert client_networks(topology) == ("10.244.0.0/15", "10.246.0.0/15", "10.240.0.0/24")


def _view(*members: tuple[str, str, str]) -> ClusterView:
    return ClusterView("gdgov", tuple(MemberView(n, r, s, "") for n, r, s in members))


def test_ready_waits_for_a_running_leader_every_member_and_the_sync_standby() -> None:
    _topology, shape, _plan = shipped()
    main = shape.primary
    assert ready(main, ClusterView("gdgov", error="no member of gdgov answered")) == "no member of gdgov answered"
    assert "no running leader" in ready(main, _view(("gz-a-db1", "leader", "starting")))
    assert "gz-b-db1 not running" in ready(main, _view(("gz-a-db1", "leader", "running")))
    assert "no synchronous standby" in ready(main, _view(("gz-a-db1", "leader", "running"),
                                                         ("gz-b-db1", "replica", "streaming")))
    assert ready(main, _view(("gz-a-db1", "leader", "running"), ("gz-b-db1", "sync_standby", "streaming"))) == ""
    standby = shape.standby
    assert standby is not None
    assert "not a standby leader" in ready(standby, ClusterView("gdgov-st", (MemberView("st-a-db1", "leader",
                                                                                        "running", ""),)))


def test_passwords_are_made_once_0600_and_a_readable_or_broken_file_is_refused(tmp_path: Path) -> None:
    first, path = load_or_create(tmp_path, "gdgov")
    again, _ = load_or_create(tmp_path, "gdgov")
    assert first == again and path.stat().st_mode & 0o777 == 0o600
    assert len({first.superuser, first.replication, first.rewind, first.restapi}) == 4
    os.chmod(path, 0o644)
    with pytest.raises(InvalidInputError, match="readable by others"):
        load_or_create(tmp_path, "gdgov")
    os.chmod(path, 0o600)
    path.write_text("superuser: x\n")
    with pytest.raises(InvalidInputError, match="must hold superuser, replication, rewind, restapi"):
        load_or_create(tmp_path, "gdgov")


def test_the_view_believed_is_the_one_agreeing_with_etcds_leader_key() -> None:
    """A member cut off from etcd answers with its last view (it still thinks it leads): only the leader
    key, read from a quorum, tells which view is current."""
    from govcloud.failover.ha_status import choose

    stale = ClusterView("gdgov", (MemberView("gz-a-db1", "leader", "running", ""),
                                  MemberView("gz-b-db1", "sync_standby", "streaming", "")), asked="a")
    fresh = ClusterView("gdgov", (MemberView("gz-b-db1", "leader", "running", ""),
                                  MemberView("gz-a-db1", "replica", "stopped", "")), asked="b")
    assert choose("gdgov", [stale, fresh], "gz-b-db1") is fresh
    # the elected member's own view did not answer: the stale one is not believed instead
    assert "no member's view of gdgov has gz-b-db1 leading" in choose("gdgov", [stale], "gz-b-db1").error
    # etcd could not be asked: believed only if the views agree
    assert "disagree on the leader" in choose("gdgov", [stale, fresh], None).error
    assert choose("gdgov", [fresh, fresh], None) is fresh
    down = ClusterView("gdgov", error="a: refused")
    assert choose("gdgov", [down, fresh], "gz-b-db1") is fresh
    assert choose("gdgov", [down], "gz-a-db1").error == "a: refused"
