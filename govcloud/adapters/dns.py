"""The service zone's servers, reached with dnspython: direct queries and TSIG-signed RFC 2136 updates.

Why direct: a switch is complete only when every server answers the new address when asked itself
(no resolver, no cache). Updates go over TCP, signed with the HMAC-SHA256 key from the state
directory; the key's secret never leaves this module (``TsigKey.__repr__`` hides it, and no message
built here contains it).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.zone

from govcloud.dns.stale import GENERATION_LABEL, parse_generation
from govcloud.dns.switch import Answer, RecordChange
from govcloud.errors import DnsError
from govcloud.model import DnsServer

QUERY_TIMEOUT_S = 1.0
UPDATE_TIMEOUT_S = 3.0
_KEY_RE = re.compile(r'key\s+"?([A-Za-z0-9._-]+)"?\s*\{[^}]*?algorithm\s+([a-z0-9-]+)\s*;[^}]*?secret\s+"([^"]+)"\s*;', re.DOTALL)


@dataclass(frozen=True)
class TsigKey:
    name: str
    algorithm: str
    secret: str

    def __repr__(self) -> str:  # never in logs or tracebacks
        return f"TsigKey(name={self.name!r}, algorithm={self.algorithm!r}, secret=***)"

    def keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        ring: dict[dns.name.Name, dns.tsig.Key] = dns.tsigkeyring.from_text({self.name: (self.algorithm, self.secret)})
        return ring


def load_key(path: Path) -> TsigKey:
    """The TSIG key from a BIND ``key`` clause file (as ``tsig-keygen`` writes it); it must be 0600."""
    try:
        st = path.stat()
        text = path.read_text()
    except FileNotFoundError:
        raise DnsError(f"TSIG key {path} not found",
                          hint="run `devcloud lab dns up` (it generates the key), or set GOVCLOUD_DNS_KEY") from None
    except OSError as exc:
        raise DnsError(f"TSIG key {path} cannot be read: {exc.strerror}", hint="check its owner and mode (0600)") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise DnsError(f"TSIG key {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o})",
                          hint=f"chmod 600 {path}")
    m = _KEY_RE.search(text)
    if m is None:
        raise DnsError(f"TSIG key {path} holds no `key \"NAME\" {{ algorithm ...; secret \"...\"; }};` clause",
                          hint="write it with `tsig-keygen -a hmac-sha256 NAME`")
    if m.group(2) != "hmac-sha256":
        raise DnsError(f"TSIG key {path} uses {m.group(2)}; govcloud signs with hmac-sha256",
                          hint="generate a new key with `tsig-keygen -a hmac-sha256 NAME`")
    return TsigKey(m.group(1), m.group(2), m.group(3))


def default_key_path(state_dir: Path) -> Path:
    env = os.environ.get("GOVCLOUD_DNS_KEY")
    return Path(env) if env else state_dir / "dns" / "tsig.key"


@dataclass(frozen=True)
class UpdateResult:
    server: DnsServer
    rcode: str  # NOERROR, NXRRSET (a prerequisite failed), YXRRSET, NOTAUTH, REFUSED, ...

    @property
    def ok(self) -> bool:
        return self.rcode == "NOERROR"

    @property
    def prerequisite_failed(self) -> bool:
        return self.rcode in ("NXRRSET", "YXRRSET", "NXDOMAIN", "YXDOMAIN")


class NameServers(Protocol):
    """The port the services use (the adapter below, or a fault-injecting wrapper in tests)."""

    def answer(self, server: DnsServer, fqdn: str) -> Answer: ...
    def serving(self, server: DnsServer, zone: str) -> bool | None: ...
    def resolve(self, servers: Sequence[DnsServer], fqdn: str) -> frozenset[str] | None: ...
    def generation(self, server: DnsServer, zone: str) -> int | None: ...
    def switch(self, server: DnsServer, change: RecordChange, generation: int, previous: int | None) -> UpdateResult: ...
    def records(self, server: DnsServer, zone: str) -> dict[str, tuple[frozenset[str], int]]: ...
    def repair(self, server: DnsServer, zone: str, stale_generation: int, wanted: dict[str, tuple[str, int]],
               remove: tuple[str, ...], generation: int) -> UpdateResult: ...
    def probe(self, server: DnsServer, zone: str) -> UpdateResult: ...


def _where(server: DnsServer) -> str:
    return f"DNS server {server.site} ({server.address} port {server.port})"


class DnsClient:
    """dnspython against the zone's authoritative servers."""

    def __init__(self, key: TsigKey, *, query_timeout: float = QUERY_TIMEOUT_S, update_timeout: float = UPDATE_TIMEOUT_S) -> None:
        self._key = key
        self._ring = key.keyring()
        self.query_timeout = query_timeout
        self.update_timeout = update_timeout

    # ---------------------------------------------------------------- reads
    def _query(self, server: DnsServer, fqdn: str, rdtype: str, *, signed: bool = True) -> dns.message.Message:
        """Signed by default: a server whose guard withdrew it from clients still answers govcloud, so
        it can be read and repaired (``serving`` asks as a client does)."""
        q = dns.message.make_query(fqdn, rdtype)
        q.flags &= ~dns.flags.RD
        if signed:
            q.use_tsig(self._ring, keyname=dns.name.from_text(self._key.name), algorithm=dns.tsig.HMAC_SHA256)
        r = dns.query.udp(q, server.address, port=server.port, timeout=self.query_timeout)
        if r.flags & dns.flags.TC:
            r = dns.query.tcp(q, server.address, port=server.port, timeout=self.query_timeout)
        return r

    def answer(self, server: DnsServer, fqdn: str) -> Answer:
        try:
            r = self._query(server, fqdn, "A")
        except (dns.exception.DNSException, OSError) as exc:
            return Answer(server, None, _reason(exc))
        rcode = dns.rcode.to_text(r.rcode())
        if rcode not in ("NOERROR", "NXDOMAIN"):
            return Answer(server, None, f"answered {rcode}")
        if not r.flags & dns.flags.AA:
            return Answer(server, None, "answered without authority (zone not loaded?)")
        addrs = frozenset(rr.address for rrset in r.answer if rrset.rdtype == dns.rdatatype.A for rr in rrset)
        return Answer(server, addrs)

    def serving(self, server: DnsServer, zone: str) -> bool | None:
        """Whether the server answers clients (an unsigned query): False when its guard withdrew it
        (REFUSED), None when it does not answer at all."""
        try:
            r = self._query(server, zone, "SOA", signed=False)
        except (dns.exception.DNSException, OSError):
            return None
        return dns.rcode.to_text(r.rcode()) == "NOERROR" and bool(r.flags & dns.flags.AA)

    def resolve(self, servers: Sequence[DnsServer], fqdn: str) -> frozenset[str] | None:
        """As a client resolves: unsigned, the servers in order, the first that answers; None if none does."""
        for server in servers:
            try:
                r = self._query(server, fqdn, "A", signed=False)
            except (dns.exception.DNSException, OSError):
                continue
            rcode = dns.rcode.to_text(r.rcode())
            if rcode in ("NOERROR", "NXDOMAIN") and r.flags & dns.flags.AA:
                return frozenset(rr.address for rrset in r.answer if rrset.rdtype == dns.rdatatype.A for rr in rrset)
        return None

    def generation(self, server: DnsServer, zone: str) -> int | None:
        try:
            r = self._query(server, f"{GENERATION_LABEL}.{zone}", "TXT")
        except (dns.exception.DNSException, OSError):
            return None
        if dns.rcode.to_text(r.rcode()) == "NXDOMAIN":
            return 0
        texts = [b"".join(rr.strings).decode() for rrset in r.answer if rrset.rdtype == dns.rdatatype.TXT for rr in rrset]
        return 0 if not texts and r.flags & dns.flags.AA else parse_generation(texts)

    def _has_generation_record(self, server: DnsServer, zone: str) -> bool:
        try:
            r = self._query(server, f"{GENERATION_LABEL}.{zone}", "TXT")
        except (dns.exception.DNSException, OSError):
            return True  # unknown: require "0", which a server without the record refuses (nothing changes)
        return any(rrset.rdtype == dns.rdatatype.TXT for rrset in r.answer)

    def records(self, server: DnsServer, zone: str) -> dict[str, tuple[frozenset[str], int]]:
        """Every A record of the zone on one server (label -> addresses, TTL), by a signed AXFR."""
        try:
            z = dns.zone.from_xfr(dns.query.xfr(server.address, zone, port=server.port, keyring=self._ring,
                                                keyname=dns.name.from_text(self._key.name),
                                                keyalgorithm=dns.tsig.HMAC_SHA256, timeout=self.update_timeout,
                                                lifetime=self.update_timeout * 3))
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsError(f"{_where(server)}: the zone {zone} cannot be read: {_reason(exc)}",
                           hint="the server must allow transfers signed with the key") from None
        out: dict[str, tuple[frozenset[str], int]] = {}
        for name, rdataset in z.iterate_rdatasets(dns.rdatatype.A):
            label = name.to_text()
            if label != "@" and not label.startswith("ns-"):
                out[label] = (frozenset(rr.address for rr in rdataset), int(rdataset.ttl))
        return out

    def repair(self, server: DnsServer, zone: str, stale_generation: int, wanted: dict[str, tuple[str, int]],
               remove: tuple[str, ...], generation: int) -> UpdateResult:
        """Bring a stale server to ``wanted`` (label -> address, TTL) in one update, only if it still
        holds ``stale_generation`` (a concurrent repair or switch makes it refuse)."""
        u = self._message(zone)
        u.present(GENERATION_LABEL, "TXT", str(stale_generation))
        for label, (address, ttl) in sorted(wanted.items()):
            u.replace(label, ttl, "A", address)
        for label in remove:
            u.delete(label, "A")
        u.replace(GENERATION_LABEL, 30, "TXT", str(generation))
        return self._send(server, u)

    # ---------------------------------------------------------------- updates
    def _message(self, zone: str) -> dns.update.UpdateMessage:
        return dns.update.UpdateMessage(zone, keyring=self._ring, keyname=dns.name.from_text(self._key.name),
                                        keyalgorithm=dns.tsig.HMAC_SHA256)

    def _send(self, server: DnsServer, msg: dns.update.UpdateMessage) -> UpdateResult:
        try:
            r = dns.query.tcp(msg, server.address, port=server.port, timeout=self.update_timeout)
        except dns.tsig.PeerBadKey:
            raise DnsError(f"{_where(server)} does not know the TSIG key {self._key.name!r}",
                           hint="the server's key and the state directory's key differ: re-run `devcloud lab dns up`, "
                                "or install the key on the server") from None
        except (dns.tsig.PeerBadSignature, dns.tsig.PeerBadTime, dns.tsig.PeerError) as exc:
            raise DnsError(f"{_where(server)} rejected the TSIG signature ({type(exc).__name__})",
                           hint="the key's secret differs from the server's (or the clocks differ)") from None
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsError(f"{_where(server)} cannot be updated: {_reason(exc)}",
                           hint="check that the server runs and is reachable from the controller") from None
        return UpdateResult(server, dns.rcode.to_text(r.rcode()))

    def switch(self, server: DnsServer, change: RecordChange, generation: int, previous: int | None) -> UpdateResult:
        """Compare-and-swap: only if the name holds ``change.expected`` (or is absent when that is None)
        and the zone's generation is still ``previous`` (absent for 0; None: not known, not checked), so
        that of two writers that read the same generation only one can write the next."""
        u = self._message(change.zone)
        if change.expected is None:
            u.absent(change.label, "A")
        else:
            u.present(change.label, "A", change.expected)
        if previous == 0 and not self._has_generation_record(server, change.zone):
            u.absent(GENERATION_LABEL, "TXT")  # a zone never switched (a zone file may also start it at "0")
        elif previous is not None:
            u.present(GENERATION_LABEL, "TXT", str(previous))
        u.replace(change.label, change.ttl, "A", change.new)
        u.replace(GENERATION_LABEL, change.ttl, "TXT", str(generation))
        return self._send(server, u)

    def probe(self, server: DnsServer, zone: str) -> UpdateResult:
        """An update holding only a prerequisite (the zone's SOA exists): checks reachability, zone and key."""
        u = self._message(zone)
        u.present("@", "SOA")
        return self._send(server, u)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, dns.exception.Timeout):
        return "no answer (timeout)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (not running?)"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc) or type(exc).__name__
