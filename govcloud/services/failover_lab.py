"""The failover controller's backend on the devcloud site lab (PostgreSQL members in pg-gza, pg-gzb, pg-sta).

Member operations go through the lab's out-of-band console (``devcloud.lab.pg``). The executor only
fences a member it can reach over the lab network (``reachable``); the *lease* acting on a cut primary
stands in for the agent that runs next to the primary in production (it acts on the primary's own
probes only). The witness is the controller: its probes run from the root namespace, and it answers
the sites' probes on ``10.240.0.2:<witness_port>`` (a lab address, never a wildcard).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from govcloud.adapters.dns import DnsClient, default_key_path, load_key
from govcloud.adapters.ports import ConnectOutcome
from govcloud.adapters.probe_connect import CONNECT_MANY, connect_here, parse_outcomes
from govcloud.adapters.postgres import PgTarget, targets_from, tcp_open
from govcloud.failover.reconcile import MemberObservation
from govcloud.model import DnsConfig, DnsServer
from govcloud.services import probes as P
from govcloud.services.names import NameService

log = logging.getLogger(__name__)

WITNESS_ADDRESS = "10.240.0.2"  # the controller's end of the lab's root link (docs/lab-addressing.md)
WITNESS_PORT = 9478
LAB_QUERY_TIMEOUT_S = 0.5


#: the lab's datacentres and their regions ("two places, three centres")
LAB_REGIONS: dict[str, str] = {"gz-a": "gz", "gz-b": "gz", "st-a": "st"}


class LabProber:
    """``probes.Prober`` on the lab: a site's batch runs inside its first infra host through the lab's
    out-of-band console (nsenter), so a cut site still reports. Only the lab's failover controller uses
    it (issue 31 replaces this controller); the exporter probes from the topology's probe hosts."""

    def __init__(self, lab: Any) -> None:
        self.lab = lab

    def _infra_host(self, site: str) -> str | None:
        hosts = sorted(self.lab.hosts(site=site, kind="infra"), key=lambda h: h.key)
        return str(hosts[0].key) if hosts else None

    def targets(self) -> list[P.ProbeTarget]:
        """One target per datacentre that has an infra host (its sshd on port 22)."""
        out = []
        for site, region in sorted(LAB_REGIONS.items()):
            key = self._infra_host(site)
            if key is not None:
                h = self.lab.host(key)
                out.append(P.ProbeTarget(site=site, region=region, host=h.key, ip=h.ip))
        return out

    def batch(self, source: str, targets: Sequence[P.ProbeTarget], timeout: float) -> list[P.ProbeResult]:
        if source == P.WITNESS or not targets:
            outcomes = connect_here([(t.ip, t.port) for t in targets], timeout)
        else:
            host = self._infra_host(source)
            if host is None:
                return [P.ProbeResult(source, t.site, False, None, time.time(), f"no infra host in {source}", t.service)
                        for t in targets]
            try:
                r = self.lab.exec(host, ["/usr/bin/python3", "-c", CONNECT_MANY, str(timeout)],
                                  input="".join(f"{t.ip} {t.port}\n" for t in targets), timeout=timeout + 10)
                parsed = parse_outcomes(r.stdout, len(targets)) if r.returncode == 0 else None
                err = "" if parsed is not None else (r.stderr.strip()[-200:] or "unreadable probe output")
            except Exception as exc:  # noqa: BLE001 - a host that vanished mid-probe is an observation, not a crash
                parsed, err = None, f"{type(exc).__name__}: {exc}"
            outcomes = parsed if parsed is not None else [ConnectOutcome(False, None, err)] * len(targets)
        now = time.time()
        return [P.ProbeResult(source, t.site, o.ok, o.latency_seconds if o.ok else None, now, o.error, t.service)
                for t, o in zip(targets, outcomes)]


class WitnessListener:
    """Accepts and closes TCP connections on the controller's lab address, so sites can probe the witness."""

    def __init__(self, address: str = WITNESS_ADDRESS, port: int = WITNESS_PORT) -> None:
        self.address, self.port = address, port
        self.sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> WitnessListener:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.address, self.port))
        s.listen(64)
        s.settimeout(0.2)
        self.sock = s
        self._thread = threading.Thread(target=self._serve, name="govcloud-witness", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self.sock is not None
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
                c.close()
            except TimeoutError:
                continue
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.sock is not None:
            self.sock.close()


def lab_names(key_file: Path | None = None) -> NameService:
    """The lab's service zone (``devcloud lab dns``) as the failover's endpoint port: ``pg.<zone>``.

    The lab's cluster is not in any inventory, so its zone comes from the lab's own servers (the same
    addresses the shipped topology's ``dns`` section names); the key from govcloud's state directory.
    """
    from devcloud.lab.nameservers import SERVERS, ZONE

    from govcloud.services.provision import state_dir

    config = DnsConfig(zone=ZONE, servers=tuple(DnsServer(s.site, s.ip) for s in SERVERS))
    # the lab's servers are one hop away: a server that does not answer in 0.5 s is down or cut off,
    # and a failover's switch waits for that timeout once (the RTO counts it)
    client = DnsClient(load_key(key_file or default_key_path(state_dir())), query_timeout=LAB_QUERY_TIMEOUT_S)
    return NameService(config, client)


class LabBackend:
    """``services.failover.Backend`` over the lab's PostgreSQL cluster and probes."""

    service = "pg"

    def __init__(self, lab: Any | None = None, *, probe_timeout: float = 0.5, witness_port: int = WITNESS_PORT,
                 reports_need_network: bool = True) -> None:
        from devcloud.lab import pg as labpg
        from devcloud.lab.api import Lab

        self.lab = lab if lab is not None else Lab()
        self.pg = labpg.LabPostgres(self.lab)
        self._labpg = labpg
        self.home_primary = labpg.HOME_PRIMARY
        self.prober = LabProber(self.lab)
        self.probe_timeout = probe_timeout
        self.witness_port = witness_port
        self.reports_need_network = reports_need_network

    def sites(self) -> dict[str, str]:
        return dict(LAB_REGIONS)

    def members(self) -> list[str]:
        return [m.site for m in self._labpg.MEMBERS]

    def sync_partner(self, primary: str) -> str | None:
        m = self._labpg.sync_partner(primary)
        return None if m is None else m.site

    def target(self, site: str) -> PgTarget:
        return targets_from(self.pg.conninfo(site, with_password=True))

    def site_of(self, address: str) -> str | None:
        return next((m.site for m in self._labpg.MEMBERS if self.pg.ip(m.site) == address), None)

    def client_resolve(self, site: str, fqdn: str) -> str | None:
        """What a client in ``site`` resolves ``fqdn`` to: glibc in the member's lab host, through its
        resolv.conf (its own site's server first); None when nothing answers."""
        r = self.lab.exec(self._labpg.member(site).host, ["getent", "ahostsv4", fqdn], timeout=15)
        first = r.stdout.split()
        return first[0] if r.returncode == 0 and first else None

    def service_targets(self) -> list[P.ProbeTarget]:
        return [P.ProbeTarget(m.site, LAB_REGIONS[m.site], m.host, self.pg.ip(m.site), self._labpg.PORT,
                              service=self.service) for m in self._labpg.MEMBERS]

    def probe_round(self) -> P.ProbeSnapshot:
        sites = self.prober.targets()
        witness = [P.ProbeTarget(P.WITNESS, "", "controller", WITNESS_ADDRESS, self.witness_port)]
        snap = P.probe_sites_and_services(self.prober, sites, self.service_targets(), timeout=self.probe_timeout,
                                          site_extra=witness)
        if not self.reports_need_network:
            return snap
        # a site's probe agent reports to the controller over the network: a site the controller cannot
        # reach this round sent nothing (the lab's console would carry it anyway; production's would not)
        heard = {r.target for r in snap.results if r.source == P.WITNESS and r.service is None and r.ok}
        return P.ProbeSnapshot(snap.taken_at, snap.regions,
                               tuple(r for r in snap.results if r.source == P.WITNESS or r.source in heard))

    def reachable(self, site: str) -> bool:
        """Whether the controller reaches ``site``'s member over the lab network (not the console)."""
        return tcp_open(self.pg.ip(site), self._labpg.PORT, 0.5)

    def discover_primary(self) -> tuple[str, int] | None:
        p = self.pg.primary_site()
        return None if p is None else (p, self.pg.epoch(p) or 1)

    def observe_members(self) -> list[MemberObservation]:
        """Every member's role and epoch markers (one console call each; read every controller cycle)."""
        out = []
        for m in self._labpg.MEMBERS:
            try:
                d = self.pg.markers(m.site)
            except Exception as exc:  # noqa: BLE001 - a missing lab host or console failure: not observed
                log.debug("%s: markers unreadable: %s", m.site, exc)
                out.append(MemberObservation(m.site, observed=False))
                continue
            out.append(MemberObservation(m.site, observed=bool(d["observed"]), running=bool(d["running"]),
                                         writable=bool(d["writable"]), epoch=d["epoch"],
                                         fenced_epoch=d["fenced_epoch"]))
        return out

    def fence(self, site: str, epoch: int, reason: str) -> str:
        was = self.pg.fence(site, epoch, reason)
        return f"marked fenced at epoch {epoch} and stopped" if was else f"marked fenced at epoch {epoch} (was stopped)"

    def promote(self, site: str, epoch: int) -> str:
        done = self.pg.promote(site, epoch)
        return f"promoted {site} at epoch {epoch}" if done else f"{site} already primary (epoch {epoch})"

    def repoint(self, site: str, primary: str) -> str:
        self.pg.repoint(site, primary)
        return f"{site} now follows {primary}"

    def set_sync(self, primary: str, standby: str | None) -> None:
        names = "" if standby is None else self._labpg.member(standby).name
        self.pg.set_sync(primary, names)

    def rejoin(self, site: str, primary: str) -> str:
        return self.pg.rejoin(site, primary)

    def stop(self, site: str) -> None:
        self.pg.stop(site, mode="fast")

    def checkpoint_lsn(self, site: str) -> str:
        out = self.pg.as_pg(site, [str(self._labpg.PG_BIN / "pg_controldata"), "-D", self._labpg.DATA]).stdout
        for line in out.splitlines():
            if line.startswith("Latest checkpoint location:"):
                return line.split(":", 1)[1].strip()
        raise RuntimeError(f"{site}: no checkpoint location in pg_controldata output")

    def primaries(self) -> list[str]:
        out = []
        for m in self._labpg.MEMBERS:
            if self.pg.running(m.site) and self.pg.psql(m.site, "SELECT pg_is_in_recovery()", check=False) == "f":
                out.append(m.site)
        return out

    def healthy(self) -> dict[str, Any]:
        st = self.pg.status()
        names = {self._labpg.member(s).name: s for s in self.members()}
        streaming = [names[r["name"]] for r in st["replication"] if r["state"] == "streaming" and r["name"] in names]
        return {**st, "streaming": streaming,
                "healthy": st["primary"] is not None and len(streaming) == len(self.members()) - 1}
