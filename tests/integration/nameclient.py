"""An HTTP client that reads a system by its DNS name every 100 ms, as its users would, and says what it saw.

Each fetch asks one of the zone's servers for the name (dnspython, no cache: a switched name is seen at
once), then GETs the page from that address with the name as Host. A fetch is ``ok`` (status 200 and
exactly the expected body), ``wrong`` (200 with another body: the worst a migration can do) or
``down`` (no answer, refused, another status). Measuring starts at the first ``ok`` fetch: before it,
the name may not be published yet.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field

import dns.message
import dns.query
import dns.rdatatype

PERIOD_S = 0.1


@dataclass(frozen=True)
class Fetch:
    at: float  # time.monotonic() when the fetch began
    address: str
    verdict: str  # ok, wrong, down
    detail: str = ""


@dataclass
class NameClient:
    fqdn: str
    path: str
    expected: bytes
    server: str  # the DNS server asked (one of the zone's)
    fetches: list[Fetch] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> NameClient:
        self._thread = threading.Thread(target=self._run, name=f"client-{self.fqdn}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=10)

    def _resolve(self) -> str:
        q = dns.message.make_query(self.fqdn, dns.rdatatype.A)
        r = dns.query.udp(q, self.server, timeout=0.5)
        return next((rr.address for rrset in r.answer for rr in rrset if rrset.rdtype == dns.rdatatype.A), "")

    def _fetch(self) -> Fetch:
        at = time.monotonic()
        try:
            address = self._resolve()
        except Exception as e:  # noqa: BLE001 - any failure to resolve is "down" for a user
            return Fetch(at, "", "down", f"dns: {type(e).__name__}")
        if not address:
            return Fetch(at, "", "down", "no address")
        conn = http.client.HTTPConnection(address, 80, timeout=1)
        try:
            conn.request("GET", self.path, headers={"Host": self.fqdn.rstrip(".")})
            resp = conn.getresponse()
            body = resp.read()
        except OSError as e:
            return Fetch(at, address, "down", type(e).__name__)
        finally:
            conn.close()
        if resp.status != 200:
            return Fetch(at, address, "down", f"HTTP {resp.status}")
        return Fetch(at, address, "ok" if body == self.expected else "wrong", body[:80].decode("utf-8", "replace"))

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.fetches.append(self._fetch())
            next_at += PERIOD_S
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    # ------------------------------------------------------------ what it saw

    def measured(self) -> list[Fetch]:
        """The fetches from the first ``ok`` one on."""
        first = next((i for i, f in enumerate(self.fetches) if f.verdict == "ok"), len(self.fetches))
        return self.fetches[first:]

    def wrong(self) -> list[Fetch]:
        return [f for f in self.measured() if f.verdict == "wrong"]

    def outages(self) -> list[tuple[float, float]]:
        """Each run of failed fetches as (start, seconds): from the last ok fetch before it to the first after."""
        out: list[tuple[float, float]] = []
        last_ok: float | None = None
        down = False
        for f in self.measured():
            if f.verdict == "ok":
                if down and last_ok is not None:
                    out.append((last_ok, f.at - last_ok))
                last_ok, down = f.at, False
            else:
                down = True
        if down and last_ok is not None:
            out.append((last_ok, float("inf")))
        return out

    def summary(self) -> str:
        m = self.measured()
        windows = ", ".join(f"{s:.2f} s" for _, s in self.outages()) or "none"
        return (f"{self.fqdn}: {len(m)} fetches every {PERIOD_S * 1000:.0f} ms, {sum(f.verdict == 'ok' for f in m)} ok, "
                f"{len(self.wrong())} wrong; without answers: {windows}; last from {m[-1].address if m else '-'}")
