"""Service names on the lab's real BIND 9 servers (one primary per site), switched by RFC 2136 update.

Every test uses its own name (``it-<random>``) and deletes it at the end with ``nsupdate`` and the key,
the way an operator would. The servers are brought up by ``devcloud lab dns up`` (reused when running).
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from devcloud.testing import require

ZONE = "svc.gdgov.internal."


@dataclass
class Zone:
    lab: Any
    dns: Any  # devcloud.lab.dns.LabDns
    names: Any  # govcloud.services.names.NameService
    key_file: Path


@pytest.fixture(scope="module")
def zone() -> Iterator[Zone]:
    from devcloud.lab.install import DNS_PACKAGES, ensure_packages

    try:
        ensure_packages(DNS_PACKAGES)
    except Exception as exc:  # noqa: BLE001 - any install failure is a missing prerequisite here
        require(False, f"BIND 9 is not installed and could not be: {exc}")
    from devcloud.lab.dns import SERVERS, LabDns
    from devcloud.lab.testing import lab_session
    from govcloud.adapters.dns import DnsClient, load_key
    from govcloud.model import DnsConfig, DnsServer
    from govcloud.services.names import NameService

    with lab_session() as lab:
        dns = LabDns(lab)
        dns.up()
        config = DnsConfig(ZONE, tuple(DnsServer(s.site, s.ip) for s in SERVERS))
        yield Zone(lab, dns, NameService(config, DnsClient(load_key(dns.key_path)), ttl_of=lambda _s: 5),
                   dns.key_path)
        for s in SERVERS:  # a test that stopped a server or its guard must not leave it stopped
            dns.start(s.site)
            dns.start_guard(s.site)


@pytest.fixture
def label(zone: Zone) -> Iterator[str]:
    name = f"it-{secrets.token_hex(4)}"
    yield name
    for s in zone.names.config.servers:
        if zone.dns.running(s.site):
            nsupdate(zone, s.address, f"update delete {name}.{ZONE} A")


def nsupdate(zone: Zone, server: str, *commands: str) -> None:
    """What an operator with the key would type (bind9-dnsutils' nsupdate over TCP)."""
    script = "\n".join([f"server {server} 53", f"zone {ZONE}", *commands, "send", ""])
    r = subprocess.run(["nsupdate", "-v", "-k", str(zone.key_file)], input=script, text=True, capture_output=True,
                       timeout=30, check=False)
    assert r.returncode == 0, r.stderr


def dig(server: str, name: str) -> list[str]:
    r = subprocess.run(["dig", "+short", "+norecurse", "+time=1", "+tries=1", f"@{server}", name, "A"],
                       text=True, capture_output=True, timeout=10, check=False)
    return sorted(r.stdout.split())


def test_a_switch_reaches_every_server_and_a_rerun_sends_nothing(zone: Zone, label: str) -> None:
    names = zone.names
    first = names.switch(label, address="10.244.0.10", port=8080, expect=None)
    assert first.address == "10.244.0.10"
    for s in names.config.servers:
        assert dig(s.address, f"{label}.{ZONE}") == ["10.244.0.10"], s.site
    reports: list[Any] = []
    names.on_switch = reports.append
    try:
        names.switch(label, address="10.244.0.11", port=8080, expect="10.244.0.10")
        names.switch(label, address="10.244.0.11", port=8080, expect="10.244.0.10")  # a resumed run
    finally:
        names.on_switch = None
    moved, again = reports
    assert sorted(moved.sent) == ["gz-a", "gz-b", "st-a"] and moved.unreachable == ()
    assert again.sent == () and sorted(again.already) == ["gz-a", "gz-b", "st-a"]
    assert again.generation == moved.generation  # nothing was written the second time
    for s in names.config.servers:
        assert dig(s.address, f"{label}.{ZONE}") == ["10.244.0.11"], s.site


def test_an_out_of_band_change_refuses_the_next_switch_and_keeps_its_value(zone: Zone, label: str) -> None:
    from govcloud.errors import DnsConflictError

    names = zone.names
    names.switch(label, address="10.244.0.20", port=8080, expect=None)
    gz_b = names.config.server("gz-b").address
    nsupdate(zone, gz_b, f"update delete {label}.{ZONE} A", f"update add {label}.{ZONE} 5 A 10.9.9.9")
    with pytest.raises(DnsConflictError) as err:
        names.switch(label, address="10.244.0.21", port=8080, expect="10.244.0.20")
    assert err.value.message == (f"{label}.{ZONE} was changed outside govcloud: expected 10.244.0.20, "
                                 "gz-b answers 10.9.9.9; nothing was changed")
    assert err.value.exit_code == 1
    assert dig(gz_b, f"{label}.{ZONE}") == ["10.9.9.9"]
    for site in ("gz-a", "st-a"):  # refused as a whole: no server took the new address
        assert dig(names.config.server(site).address, f"{label}.{ZONE}") == ["10.244.0.20"]


def test_a_server_that_missed_a_switch_never_answers_clients_with_the_old_address(zone: Zone, label: str) -> None:
    """st-a is stopped during a switch. Restarted, it is stale, and refuses clients (they ask the next
    server) instead of handing out the old address. Without its guard the next switch repairs it; the
    guard then lets it serve again."""
    from govcloud.dns.stale import Freshness

    names = zone.names
    fqdn = f"{label}.{ZONE}"
    names.switch(label, address="10.244.0.30", port=8080, expect=None)
    st_a = names.config.server("st-a")
    assert zone.dns.stop("st-a")
    zone.dns.stop_guard("st-a")
    try:
        reports: list[Any] = []
        names.on_switch = reports.append
        names.switch(label, address="10.244.0.31", port=8080, expect="10.244.0.30")
        names.on_switch = None
        assert reports[0].unreachable == ("st-a",)
        assert {s.site: s.freshness for s in names.status()}["st-a"] is Freshness.UNKNOWN
    finally:
        names.on_switch = None
        zone.dns.start("st-a")
    try:
        status = {s.site: s for s in names.status()}
        assert status["st-a"].freshness is Freshness.STALE and status["gz-a"].freshness is Freshness.CURRENT
        assert names.servers.answer(st_a, fqdn).addresses == {"10.244.0.30"}  # govcloud sees the stale record
        assert dig(st_a.address, fqdn) == []  # a client is refused: it never gets 10.244.0.30
        assert names.servers.serving(st_a, ZONE) is False
        # the next switch repairs st-a from a current server first, then switches everywhere
        names.switch(label, address="10.244.0.32", port=8080, expect="10.244.0.31")
        assert all(s.freshness is Freshness.CURRENT for s in names.status())
        assert names.servers.answer(st_a, fqdn).addresses == {"10.244.0.32"}
    finally:
        zone.dns.start_guard("st-a")
    zone.dns.wait_serving("st-a", timeout=10)  # its guard found it current
    for s in names.config.servers:
        assert dig(s.address, fqdn) == ["10.244.0.32"], s.site


def test_a_site_cut_off_withdraws_and_comes_back_only_with_the_new_address(zone: Zone, label: str) -> None:
    """Property (c): gz-a is cut off while its name is switched. Its guard withdraws it within the lease;
    when the site comes back, a client inside gz-a asking its own server directly is refused until the
    guard has repaired it, and then gets the new address: never the old one."""
    import time

    names = zone.names
    fqdn = f"{label}.{ZONE}"
    names.switch(label, address="10.244.0.60", port=8080, expect=None)
    gz_a = names.config.server("gz-a").address

    def inside() -> list[str]:  # a client in gz-a, asking gz-a's server (the first in its resolv.conf)
        r = zone.lab.exec("ns-gza", ["dig", "+short", "+norecurse", "+time=1", "+tries=1", f"@{gz_a}", fqdn, "A"])
        return sorted(r.stdout.split())

    assert inside() == ["10.244.0.60"]
    zone.lab.cut("gz-a")
    try:
        cut_at = time.monotonic()
        while inside():
            assert time.monotonic() - cut_at < 2.0 + 2.0, "gz-a still answers clients while cut off"
            time.sleep(0.1)
        withdrawn_after = time.monotonic() - cut_at
        reports: list[Any] = []
        names.on_switch = reports.append
        names.switch(label, address="10.244.0.61", port=8080, expect="10.244.0.60")
        assert reports[0].unreachable == ("gz-a",)
    finally:
        names.on_switch = None
        zone.lab.restore("gz-a")
    restored_at = time.monotonic()
    seen = []
    while (got := inside()) != ["10.244.0.61"]:
        seen.append(got)
        assert got != ["10.244.0.60"], f"gz-a handed a client the old address {time.monotonic() - restored_at:.2f} s after restore"
        assert time.monotonic() - restored_at < 15, f"gz-a still not serving: {zone.dns.guard_status('gz-a')}"
        time.sleep(0.05)
    print(f"\ngz-a withdrew {withdrawn_after:.2f} s after the cut; served the new address "
          f"{time.monotonic() - restored_at:.2f} s after restore ({len(seen)} refused polls)")


def test_preflight_names_the_server_and_the_reason(zone: Zone) -> None:
    from govcloud.adapters.dns import DnsClient, TsigKey, load_key
    from govcloud.errors import DnsError
    from govcloud.services.names import NameService

    names = zone.names
    names.preflight()  # all three up, zone served, key accepted
    key = load_key(zone.key_file)
    wrong = NameService(names.config, DnsClient(replace(key, secret="A" * 43 + "=")))
    with pytest.raises(DnsError, match=r"DNS server gz-a \(10\.240\.1\.53 port 53\) rejected the TSIG signature"):
        wrong.preflight()
    unknown = NameService(names.config, DnsClient(TsigKey("someone-else", key.algorithm, key.secret)))
    with pytest.raises(DnsError, match="does not know the TSIG key 'someone-else'"):
        unknown.preflight()
    missing = NameService(replace(names.config, zone="nowhere.internal."), names.servers)
    with pytest.raises(DnsError, match=r"DNS server gz-a \(10\.240\.1\.53 port 53\) does not serve zone nowhere\.internal\."):
        missing.preflight()
    assert zone.dns.stop("gz-b")
    try:
        with pytest.raises(DnsError, match=r"DNS server gz-b \(10\.240\.2\.53 port 53\) cannot be updated: connection refused"):
            names.preflight()
    finally:
        zone.dns.start("gz-b")


def test_the_key_never_reaches_output_and_servers_refuse_recursion(zone: Zone) -> None:
    from govcloud.adapters.dns import load_key

    key = load_key(zone.key_file)
    assert key.secret not in repr(key)
    assert oct(zone.key_file.stat().st_mode & 0o777) == "0o600"
    srv = zone.names.config.server("gz-a").address
    r = subprocess.run(["dig", "+time=1", "+tries=1", f"@{srv}", "example.com", "A"], text=True, capture_output=True,
                       timeout=10, check=False)
    assert "status: REFUSED" in r.stdout and "recursion requested but not available" in r.stdout


def test_dns_status_lists_managed_names_and_exits_1_when_servers_disagree(zone: Zone, tmp_path: Path) -> None:
    import json
    import shutil

    from click.testing import CliRunner

    from govcloud.cli.main import cli

    shutil.copytree(Path(__file__).resolve().parents[1] / "data" / "mini" / "inventories", tmp_path / "inventories")
    (tmp_path / "govcloud.yaml").write_text("version: 1\n")
    system = "hrss-si"
    fqdn = f"{system}.{ZONE}"
    for s in zone.names.config.servers:
        nsupdate(zone, s.address, f"update delete {fqdn} A")
    try:
        zone.names.switch(system, address="10.244.0.40", port=8080, expect=None)
        run = CliRunner().invoke(cli, ["--root", str(tmp_path), "--output", "json", "dns", "status",
                                       "--key-file", str(zone.key_file)], catch_exceptions=False)
        assert run.exit_code == 0, run.output
        payload = json.loads(run.stdout)
        rows = {r["name"]: r for r in payload["records"]}
        assert rows[fqdn]["address"] == "10.244.0.40" and rows[fqdn]["agree"] and rows[fqdn]["ttl"] == 30
        assert {s["site"] for s in payload["servers"]} == {"gz-a", "gz-b", "st-a"}
        nsupdate(zone, zone.names.config.server("gz-b").address, f"update delete {fqdn} A",
                 f"update add {fqdn} 30 A 10.9.9.9")
        run = CliRunner().invoke(cli, ["--root", str(tmp_path), "dns", "status", "--key-file", str(zone.key_file)],
                                 catch_exceptions=False)
        assert run.exit_code == 1, run.output
        assert "DISAGREE: gz-a=10.244.0.40, gz-b=10.9.9.9, st-a=10.244.0.40" in run.stdout
        assert zone.names.servers._key.secret not in run.output  # noqa: SLF001 - the secret must not leak
    finally:
        for s in zone.names.config.servers:
            nsupdate(zone, s.address, f"update delete {fqdn} A")


def test_a_client_in_another_site_follows_a_switch_by_name_and_its_app_reaches_the_new_address(
        zone: Zone, label: str) -> None:
    """Two servers of a service (gz-a, gz-b) and a client in st-a whose sample app depends on it by name.

    The client resolves through its own resolv.conf (st-a's server first); after the switch it resolves
    the new address within TTL + 2 s, and its app's /health shows the dependency reachable there.
    """
    import json
    import time

    from devcloud.lab.legacy import LegacyHost, app_control, install_app

    lab = zone.lab
    hosts = {"svc-a": "gz-a", "svc-b": "gz-b", "client": "st-a"}
    made = {}
    try:
        for key, site in hosts.items():
            made[key] = lab.add_host(f"dnsit-{key}", site)
            deps = (label,) if key == "client" else ()
            install_app(lab, LegacyHost(label if key != "client" else "client", "it", f"dnsit-{key}", made[key].ip, 22,
                                        "root", "app", (), deps))
            assert app_control(lab, f"dnsit-{key}", "start")[0] == 0
        client = "dnsit-client"
        assert "nameserver 10.240.3.53" in lab.exec(client, ["head", "-2", "/etc/resolv.conf"]).stdout  # own site first

        def resolved() -> str:
            r = lab.exec(client, ["getent", "ahostsv4", f"{label}.{ZONE}"])
            return r.stdout.split()[0] if r.returncode == 0 and r.stdout else ""

        def dependency() -> dict[str, Any]:
            r = lab.exec(client, ["python3", "-c", "import json,urllib.request;print(urllib.request.urlopen("
                                  "'http://127.0.0.1:8080/health',timeout=2).read().decode())"])
            return dict(json.loads(r.stdout)["dependencies"].get(label, {}))

        old, new = made["svc-a"].ip, made["svc-b"].ip
        zone.names.switch(label, address=old, port=8080, expect=None)
        deadline = time.monotonic() + 5 + 2 + 5  # TTL + 2 s, plus one of the app's 5 s check intervals
        while not (resolved() == old and dependency().get("address") == old and dependency().get("reachable")):
            assert time.monotonic() < deadline, (resolved(), dependency())
            time.sleep(0.2)
        switched_at = time.monotonic()
        zone.names.switch(label, address=new, port=8080, expect=old)
        while resolved() != new:
            assert time.monotonic() - switched_at < 5 + 2, f"client still resolves {resolved()}"
            time.sleep(0.1)
        while not (dependency().get("address") == new and dependency().get("reachable")):
            assert time.monotonic() - switched_at < 5 + 2 + 5, dependency()
            time.sleep(0.2)
        assert dependency().get("app") == label
    finally:
        for key in made:
            lab.remove_host(f"dnsit-{key}")


def test_concurrent_switches_each_take_their_own_generation(zone: Zone) -> None:
    from concurrent.futures import ThreadPoolExecutor

    names = zone.names
    labels = [f"it-{secrets.token_hex(4)}" for _ in range(6)]
    reports: list[Any] = []
    names.on_switch = reports.append
    try:
        before = max(g.generation or 0 for g in names.generations())
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(lambda lb: names.switch(lb, address="10.244.0.50", port=8080, expect=None), labels))
        assert sorted(r.generation for r in reports) == list(range(before + 1, before + 7))
        assert {g.generation for g in names.generations()} == {before + 6}
    finally:
        names.on_switch = None
        for s in names.config.servers:
            nsupdate(zone, s.address, *(f"update delete {lb}.{ZONE} A" for lb in labels))


RACER = r"""
import sys, time
from pathlib import Path
from govcloud.adapters.dns import DnsClient, load_key
from govcloud.errors import DnsConflictError
from govcloud.model import DnsConfig, DnsServer
from govcloud.services.names import NameService

barrier, me, label, expect, new = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] or None, sys.argv[5]
servers = tuple(DnsServer(site, ip) for site, ip in (s.split("=") for s in sys.argv[7].split(",")))


class Together(DnsClient):
    # the injected timing (no real part waits on cue): each writer's first update waits until both writers
    # have surveyed the zone, so both planned from the same generation and race for the next one
    waited = False

    def switch(self, server, change, generation, previous):
        if not Together.waited:
            Together.waited = True
            (barrier / me).touch()
            deadline = time.monotonic() + 20
            while len(list(barrier.iterdir())) < 2:
                assert time.monotonic() < deadline, "the other writer never came"
                time.sleep(0.001)
        return super().switch(server, change, generation, previous)


names = NameService(DnsConfig(sys.argv[6], servers), Together(load_key(Path(sys.argv[8]))), ttl_of=lambda _s: 5)
try:
    ep = names.switch(label, address=new, port=5432, expect=expect)
    print(f"won {ep.version}")
except DnsConflictError as exc:
    print(f"refused: {exc.message}")
"""


def _race(zone: Zone, tmp_path: Path, jobs: list[tuple[str, str | None, str]]) -> list[str]:
    """Two writers (two processes, each its own NameService) switching at once; what each said."""
    import sys

    barrier = tmp_path / "barrier"
    barrier.mkdir()
    servers = ",".join(f"{s.site}={s.address}" for s in zone.names.config.servers)
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(barrier), f"w{i}", label, expect or "", new, ZONE,
                               servers, str(zone.key_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, (label, expect, new) in enumerate(jobs)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    return [o[0].strip() for o in outs]


def test_two_processes_switching_one_name_at_once_exactly_one_wins(zone: Zone, label: str, tmp_path: Path) -> None:
    """Issue 31, check 2 (fencing): both writers read generation N and the name at its old address;
    exactly one writes N+1 on every server, the other is refused with nothing changed."""
    names = zone.names
    names.switch(label, address="10.244.0.10", port=5432, expect=None)
    before = max(g.generation or 0 for g in names.generations())
    said = _race(zone, tmp_path, [(label, "10.244.0.10", "10.244.0.11"), (label, "10.244.0.10", "10.244.0.12")])
    won = [s for s in said if s.startswith("won")]
    refused = [s for s in said if s.startswith("refused")]
    assert len(won) == 1 and len(refused) == 1, said
    assert won[0] == f"won {before + 1}", said
    assert "nothing was changed" in refused[0], said
    winner = "10.244.0.11" if said[0].startswith("won") else "10.244.0.12"
    assert [a.addresses for a in names.answers(label)] == [frozenset({winner})] * 3  # what govcloud reads, signed
    assert {g.generation for g in names.generations()} == {before + 1}
    _clients_answer(names, {label: winner})


def _clients_answer(names: Any, wanted: dict[str, str]) -> None:
    """Every server answers clients (unsigned) the winner's addresses: a server's guard may withhold its
    answers for a moment while it is behind the others during the race (test_a_server_that_missed_...)."""
    from devcloud.procs import wait_for

    for s in names.config.servers:
        for lb, address in wanted.items():
            wait_for(lambda a=s.address, n=f"{lb}.{ZONE}", w=address: dig(a, n) == [w], timeout=10, interval=0.1,
                     what=f"{s.site} answering {lb} with {address}")


def test_two_processes_switching_two_names_at_once_take_one_generation_each(zone: Zone, tmp_path: Path) -> None:
    """The loser of the generation (its own name unmoved) reads again and takes the next one: both
    switches land, with generations N+1 and N+2, and every server agrees."""
    names = zone.names
    labels = [f"it-{secrets.token_hex(4)}" for _ in range(2)]
    try:
        before = max(g.generation or 0 for g in names.generations())
        said = _race(zone, tmp_path, [(labels[0], None, "10.244.0.21"), (labels[1], None, "10.244.0.22")])
        assert sorted(said) == [f"won {before + 1}", f"won {before + 2}"], said
        assert {g.generation for g in names.generations()} == {before + 2}
        _clients_answer(names, {labels[0]: "10.244.0.21", labels[1]: "10.244.0.22"})
    finally:
        for s in names.config.servers:
            nsupdate(zone, s.address, *(f"update delete {lb}.{ZONE} A" for lb in labels))
