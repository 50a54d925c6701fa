"""What each database host is given (issue 31, second slice): Patroni's configuration and etcd's arguments.

Built purely from the shape (govcloud/failover/patroni_config.py); the settings that carry docs/ha.md's
safety argument are asserted one by one, and each configuration is put to the real Patroni's
``--validate-config`` (the pinned release `devcloud lab install` puts in /opt/govcloud/patroni).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from devcloud.testing import require
from govcloud.failover.patroni_config import (
    HaSecrets,
    etcd_args,
    member_config,
    member_paths,
    with_passwords,
)
from govcloud.failover.shape import HaShape, plan_shape
from govcloud.inventory import load_inventory
from govcloud.model.ha import HaPostgres

REPO = Path(__file__).resolve().parents[2]
PATRONI = Path("/opt/govcloud/patroni/bin/patroni")
SECRETS = HaSecrets("s" * 24, "r" * 24, "w" * 24, "a" * 24)
CLIENTS = ("10.244.0.0/15", "10.246.0.0/15", "10.240.0.0/24")


def shipped() -> tuple[HaShape, HaPostgres]:
    topology = load_inventory(REPO).topology
    assert topology.ha_postgres is not None
    return plan_shape(topology, topology.ha_postgres), topology.ha_postgres


def test_the_primary_clusters_members_carry_the_safety_settings() -> None:
    shape, ha = shipped()
    main = shape.primary
    docs = [member_config(shape, main, h, ha, CLIENTS) for h in main.members]
    assert [d["name"] for d in docs] == ["gz-a-db1", "gz-b-db1"]
    for d in docs:
        dcs = d["bootstrap"]["dcs"]
        assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (20, 1, 3)
        assert dcs["synchronous_mode"] is True and dcs["synchronous_mode_strict"] is False
        assert dcs["failsafe_mode"] is True and "standby_cluster" not in dcs
        assert dcs["postgresql"]["use_pg_rewind"] is True
        assert dcs["postgresql"]["parameters"]["wal_log_hints"] == "on"
        assert dcs["postgresql"]["parameters"]["wal_sender_timeout"] == "5s"
        assert "data-checksums" in d["bootstrap"]["initdb"]
        assert d["etcd3"]["hosts"] == ["10.240.1.21:2379", "10.240.2.21:2379", "10.240.3.21:2379"]
        assert d["postgresql"]["data_dir"] == "/srv/govcloud-ha/gdgov/pgdata"
        assert d["postgresql"]["bin_dir"] == "/usr/lib/postgresql/15/bin"
    assert docs[0]["postgresql"]["connect_address"] == "10.240.1.21:5432"


def test_the_standby_cluster_follows_the_service_name_with_its_own_ring() -> None:
    shape, ha = shipped()
    standby = shape.standby
    assert standby is not None
    d = member_config(shape, standby, standby.members[0], ha, CLIENTS)
    assert d["scope"] == "gdgov-st"
    assert d["bootstrap"]["dcs"]["standby_cluster"] == {"host": "pg.svc.gdgov.internal", "port": 5432,
                                                        "create_replica_methods": ["basebackup"]}
    assert d["etcd3"]["hosts"] == ["10.240.3.21:2479"]
    assert member_paths(ha, standby).data_dir == "/srv/govcloud-ha/gdgov-st/pgdata"


def test_pg_hba_admits_replication_from_members_only_and_clients_from_the_declared_networks() -> None:
    shape, ha = shipped()
    hba = member_config(shape, shape.primary, shape.primary.members[0], ha, CLIENTS)["postgresql"]["pg_hba"]
    assert [x for x in hba if " replication " in x] == [
        f"host replication replicator {a}/32 scram-sha-256" for a in ("10.240.1.21", "10.240.2.21", "10.240.3.21")]
    assert [x.split()[3] for x in hba if x.startswith("host all all ")] == list(CLIENTS)
    assert not any("0.0.0.0/0" in x or " trust" in x for x in hba)
    with pytest.raises(ValueError, match="not a member"):
        member_config(shape, shape.primary, shape.standby.members[0], ha, CLIENTS)  # type: ignore[union-attr]


def test_secrets_never_show_in_a_repr_nor_in_the_configuration_until_merged() -> None:
    assert "s" * 24 not in repr(SECRETS) and "masked" in repr(SECRETS)
    shape, ha = shipped()
    doc = member_config(shape, shape.primary, shape.primary.members[0], ha, CLIENTS)
    assert not re.search(r"\bpassword\b", yaml.safe_dump(doc))  # (password_encryption is a setting)
    full = with_passwords(doc, SECRETS)
    assert full["restapi"]["authentication"] == {"username": "govcloud", "password": "a" * 24}
    auth = full["postgresql"]["authentication"]
    assert auth == {"superuser": {"username": "postgres", "password": "s" * 24},
                    "replication": {"username": "replicator", "password": "r" * 24},
                    "rewind": {"username": "rewinder", "password": "w" * 24}}
    assert not re.search(r"\bpassword\b", yaml.safe_dump(doc))  # the document itself is left as it was


def test_each_ring_member_gets_its_own_urls_and_the_whole_ring() -> None:
    shape, ha = shipped()
    args = etcd_args(ha, shape.primary, shape.primary.etcd[2])
    opt = dict(zip(args[1::2], args[2::2]))
    assert opt["--name"] == "st-a-db1" and opt["--listen-client-urls"] == "http://10.240.3.21:2379"
    assert opt["--initial-cluster"] == ("gz-a-db1=http://10.240.1.21:2380,gz-b-db1=http://10.240.2.21:2380,"
                                        "st-a-db1=http://10.240.3.21:2380")
    assert opt["--data-dir"] == "/srv/govcloud-ha/etcd-gdgov/data"
    standby = shape.standby
    assert standby is not None
    opt = dict(zip(*[iter(etcd_args(ha, standby, standby.etcd[0])[1:])] * 2))
    assert opt["--initial-cluster"] == "st-a-db1=http://10.240.3.21:2480"
    assert opt["--data-dir"] == "/srv/govcloud-ha/etcd-gdgov-st/data"


def test_the_real_patroni_accepts_every_generated_configuration(tmp_path: Path) -> None:
    """Each configuration as generated, but for what only its host can check: the listen addresses and
    the etcd endpoints are moved to this machine's loopback (a listening socket stands in for etcd), so
    the result does not depend on whether the lab's network is up; the host's own check at deployment
    binds and reaches the real ones."""
    import socket

    require(PATRONI.exists(), f"{PATRONI} (devcloud lab install puts Patroni there)")
    shape, ha = shipped()
    with socket.socket() as etcd:
        etcd.bind(("127.0.0.1", 0))
        etcd.listen()
        endpoint = f"127.0.0.1:{etcd.getsockname()[1]}"
        for cluster in shape.clusters:
            for host in cluster.members:
                doc = with_passwords(member_config(shape, cluster, host, ha, CLIENTS), SECRETS)
                doc["etcd3"]["hosts"] = [endpoint]
                doc["restapi"]["listen"] = "127.0.0.1:8008"
                doc["postgresql"]["listen"] = f"127.0.0.1:{ha.port}"
                conf = tmp_path / f"{cluster.scope}-{host.name}.yml"
                conf.write_text(yaml.safe_dump(doc))
                r = subprocess.run([str(PATRONI), "--validate-config", "--ignore-listen-port", str(conf)],
                                   capture_output=True, text=True, timeout=60, check=False)
                assert (r.returncode, r.stdout + r.stderr) == (0, ""), (conf.name, r.stdout + r.stderr)
        bad = tmp_path / "bad.yml"  # and it does reject what is wrong
        doc["bootstrap"]["dcs"]["ttl"] = 5
        bad.write_text(yaml.safe_dump(doc))
        r = subprocess.run([str(PATRONI), "--validate-config", "--ignore-listen-port", str(bad)], capture_output=True,
                           text=True, timeout=60, check=False)
        assert r.returncode != 0 and "bootstrap.dcs.ttl 5 didn't pass validation" in r.stdout + r.stderr
