"""Benchmark: service-name switch latency on the lab's three BIND 9 primaries, against plain nsupdate.

A switch is timed from sending the first update until every server answers the new value, asked
directly. govcloud's switch (``NameService.switch``: read every server's answer and generation,
compare-and-swap update to each, poll until all answer) is run N times; the peer is what an operator
would script by hand with the same key: one ``nsupdate`` per server (no prerequisite), then the same
polling. The ratio says what the compare-and-swap, the generation record and the per-server plan cost.

    .venv/bin/python bench/dns_bench.py [--switches 50] [--json out.json]

Needs the lab up; runs ``devcloud lab dns up`` (idempotent). Uses the name ``bench-switch`` only and
deletes it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devcloud.lab.dns import SERVERS, ZONE, LabDns  # noqa: E402
from govcloud.adapters.dns import DnsClient, load_key  # noqa: E402
from govcloud.model import DnsConfig, DnsServer  # noqa: E402
from govcloud.services.names import NameService  # noqa: E402

LABEL = "bench-switch"


def summary(values: list[float]) -> dict[str, float]:
    return {"min_ms": min(values) * 1000, "median_ms": statistics.median(values) * 1000, "max_ms": max(values) * 1000}


def nsupdate(key: Path, server: str, *commands: str) -> None:
    script = "\n".join([f"server {server} 53", f"zone {ZONE}", *commands, "send", ""])
    subprocess.run(["nsupdate", "-v", "-k", str(key)], input=script, text=True, check=True, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--switches", type=int, default=50)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    lab_dns = LabDns()
    lab_dns.up()
    config = DnsConfig(ZONE, tuple(DnsServer(s.site, s.ip) for s in SERVERS))
    names = NameService(config, DnsClient(load_key(lab_dns.key_path)), ttl_of=lambda _s: 30)
    for s in SERVERS:
        nsupdate(lab_dns.key_path, s.ip, f"update delete {LABEL}.{ZONE} A")

    def converge(new: str) -> None:
        while any(a.addresses != frozenset({new}) for a in names.answers(LABEL)):
            time.sleep(0.001)

    ours: list[float] = []
    current: str | None = None
    for i in range(args.switches):
        new = f"10.244.{200 + i // 250}.{1 + i % 250}"
        t0 = time.perf_counter()
        names.switch(LABEL, address=new, port=8080, expect=current)  # returns once every server answers `new`
        ours.append(time.perf_counter() - t0)
        current = new
    peer: list[float] = []
    for i in range(args.switches):
        new = f"10.244.{210 + i // 250}.{1 + i % 250}"
        t0 = time.perf_counter()
        for s in SERVERS:
            nsupdate(lab_dns.key_path, s.ip, f"update delete {LABEL}.{ZONE} A", f"update add {LABEL}.{ZONE} 30 A {new}")
        converge(new)
        peer.append(time.perf_counter() - t0)
    for s in SERVERS:
        nsupdate(lab_dns.key_path, s.ip, f"update delete {LABEL}.{ZONE} A")
    result: dict[str, Any] = {"switches": args.switches, "servers": len(SERVERS), "govcloud": summary(ours),
                              "nsupdate": summary(peer), "loadavg": os.getloadavg()[0]}
    result["ratio_median"] = result["govcloud"]["median_ms"] / result["nsupdate"]["median_ms"]
    for who in ("govcloud", "nsupdate"):
        r = result[who]
        print(f"{who:<9} {args.switches} switches x {len(SERVERS)} servers: min {r['min_ms']:.1f} ms, "
              f"median {r['median_ms']:.1f} ms, max {r['max_ms']:.1f} ms")
    print(f"govcloud / nsupdate (median): {result['ratio_median']:.2f}x; load average {result['loadavg']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
