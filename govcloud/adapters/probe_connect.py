"""Site probes' connects: from a site's probe host over SSH (strict host keys), or from here.

Why SSH to a host *in* the site: a site's view of the others is only real when the connect is made
from inside it. One SSH connection per observer and round, opened and closed: a round is then bounded
by the connect timeout even when an observer's site has just been cut (a kept connection to a host
behind a dead link would hang until TCP gives up), at the cost of one login per round in the host's
auth log. All of a round's targets are tried in one process on the observer, in parallel.
"""

from __future__ import annotations

import json
import shlex
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from govcloud.adapters import ssh
from govcloud.adapters.ports import CommandResult, ConnectOutcome, Endpoint
from govcloud.errors import GovcloudError

# run on the observer with python3 (which Ansible needs on every managed host anyway): connect to every
# "address port" line of stdin in parallel, print one JSON list of [ok, latency, error]
CONNECT_MANY = ("import json, socket, sys, time\n"
                "from concurrent.futures import ThreadPoolExecutor\n"
                "timeout = float(sys.argv[1])\n"
                "def one(line):\n"
                "    ip, port = line.split()\n"
                "    t = time.monotonic()\n"
                "    try:\n"
                "        socket.create_connection((ip, int(port)), timeout=timeout).close()\n"
                "        return [True, time.monotonic() - t, '']\n"
                "    except OSError as e:\n"
                "        return [False, None, type(e).__name__ + ' ' + str(e)]\n"
                "lines = [ln for ln in sys.stdin.read().splitlines() if ln.strip()]\n"
                "with ThreadPoolExecutor(max_workers=max(1, len(lines))) as pool:\n"
                "    print(json.dumps(list(pool.map(one, lines))))\n")

#: an SSH handshake on a loaded machine can take longer than one probe's connect timeout
MIN_SSH_TIMEOUT = 3.0


def parse_outcomes(stdout: str, expected: int) -> list[ConnectOutcome] | None:
    """CONNECT_MANY's last output line as outcomes, or None when it is not ``expected`` answers."""
    try:
        answers = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    if not isinstance(answers, list) or len(answers) != expected:
        return None
    return [ConnectOutcome(bool(ok), float(lat) if ok and lat is not None else None, str(err or ""))
            for ok, lat, err in answers]


def connect_here(endpoints: Sequence[tuple[str, int]], timeout: float) -> list[ConnectOutcome]:
    """The connects made from this process's own network (the controller as a witness)."""

    def one(endpoint: tuple[str, int]) -> ConnectOutcome:
        started = time.monotonic()
        try:
            socket.create_connection(endpoint, timeout=timeout).close()
        except OSError as exc:
            return ConnectOutcome(False, None, f"{type(exc).__name__}: {exc}")
        return ConnectOutcome(True, time.monotonic() - started)

    if not endpoints:
        return []
    with ThreadPoolExecutor(max_workers=len(endpoints)) as pool:
        return list(pool.map(one, endpoints))


class SshConnector:
    """``ConnectPort`` over SSH: the connects run on the observer, reached with strict host keys."""

    def connect_from(self, observer: Endpoint | None, endpoints: Sequence[tuple[str, int]],
                     timeout: float) -> list[ConnectOutcome]:
        if observer is None or not endpoints:
            return connect_here(endpoints, timeout)
        command = f"/usr/bin/python3 -c {shlex.quote(CONNECT_MANY)} {timeout}"
        stdin = "".join(f"{address} {port}\n" for address, port in endpoints)
        box: dict[str, object] = {}

        def exchange() -> None:
            try:
                with ssh.connect(observer, timeout=max(timeout, MIN_SSH_TIMEOUT)) as session:
                    box["session"] = session
                    box["result"] = session.run(command, check=False, timeout=timeout + MIN_SSH_TIMEOUT, input=stdin)
            except GovcloudError as exc:  # unreachable, refused, wrong host key: what it saw is unknown
                box["error"] = exc

        # the whole exchange has a deadline: a site cut just after the handshake leaves paramiko waiting
        # for a channel that never opens (no timeout of its own), and one stuck observer would stall the
        # round, so the exporter would go on showing the last snapshot (every site up) after a cut
        worker = threading.Thread(target=exchange, name=f"probe-{observer.address}", daemon=True)
        worker.start()
        worker.join(timeout + 2 * MIN_SSH_TIMEOUT)
        if worker.is_alive():
            stuck = box.get("session")
            if isinstance(stuck, ssh.SSHSession):
                stuck.close()  # wakes the waiting thread up; it ends on its own
            return [ConnectOutcome(False, None, f"observer {observer.label} did not answer within "
                                                f"{timeout + 2 * MIN_SSH_TIMEOUT:.0f} s")] * len(endpoints)
        if "error" in box:
            return [ConnectOutcome(False, None, f"observer {observer.label} not reached: {box['error']}")] * len(endpoints)
        result = box["result"]
        assert isinstance(result, CommandResult)
        outcomes = parse_outcomes(result.stdout, len(endpoints)) if result.status == 0 else None
        if outcomes is None:
            why = result.stderr.strip()[-200:] or f"unreadable probe output {result.stdout[-200:]!r}"
            return [ConnectOutcome(False, None, f"probe on {observer.label} failed: {why}")] * len(endpoints)
        return outcomes
