"""The service zone in the site lab: one BIND 9 primary per site, each in its own lab host.

Layout (docs/dns.md): ``ns-gza`` 10.240.1.53, ``ns-gzb`` 10.240.2.53, ``ns-sta`` 10.240.3.53, each an
authoritative primary of ``svc.gdgov.internal.`` that govcloud updates itself (RFC 2136, TSIG
HMAC-SHA256). No transfers between them: a site that is down never holds a switch up, and a region
loss can switch names in st-a alone. Recursion is off, each listens only on its lab address, and
``update-policy`` grants the key the service zone only.

Each server has a guard beside it (``govcloud dns guard``, property (c) of docs/dns.md): it withdraws the
server from clients while the site is cut off or behind, repairs it, and lets it serve again. A server
(re)starts withdrawn; its guard opens it once it holds the newest generation. govcloud's own queries
are signed and always answered.

Files live in each host's ``/srv/dns`` (outside the repository). The key is generated once with
``tsig-keygen`` into govcloud's state directory (0600), where ``govcloud`` reads it, and copied 0600
into each server. ``named`` is started by us and stopped by the PID it wrote, never by name.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from devcloud import stale
from devcloud.errors import DevcloudError
from devcloud.lab.api import Lab
from devcloud.lab.nameservers import SERVERS, ZONE, NameServer
from devcloud.procs import kill_pids, wait_for

log = logging.getLogger(__name__)

KEY_NAME = "govcloud-key"
BASE = "/srv/dns"
CONF = f"{BASE}/named.conf"
ZONE_FILE = f"{BASE}/zone.db"
PID_FILE = f"{BASE}/named.pid"
LOG = f"{BASE}/named.log"
KEY_FILE = f"{BASE}/key.conf"
ACL_FILE = f"{BASE}/clients.conf"  # written by the guard: acl govcloud_clients { any | none; }
GUARD_CONF = f"{BASE}/guard.conf.json"
NAMED = "/usr/sbin/named"
WITNESS = ("10.240.0.2", 9478)  # the controller's lab address: a reset from it proves contact too
REPO = Path(__file__).resolve().parents[2]


class DnsLabError(DevcloudError):
    """A lab DNS operation failed; the message names the server and the command's output."""


def server(site: str) -> NameServer:
    for s in SERVERS:
        if s.site == site:
            return s
    raise DnsLabError(f"no lab DNS server in site {site!r} (sites: {', '.join(s.site for s in SERVERS)})")


def default_key_path() -> Path:
    """Where govcloud looks for the key: $GOVCLOUD_DNS_KEY, else <state dir>/dns/tsig.key."""
    env = os.environ.get("GOVCLOUD_DNS_KEY")
    if env:
        return Path(env)
    state = os.environ.get("GOVCLOUD_STATE_DIR")
    base = Path(state) if state else Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "govcloud"
    return base / "dns" / "tsig.key"


def named_conf(ns: NameServer) -> str:
    zone = ZONE.rstrip(".")
    return f"""// lab DNS server of {ns.site}: authoritative only, on its lab address only
include "{KEY_FILE}";
include "{ACL_FILE}";
options {{
    directory "{BASE}";
    pid-file "{PID_FILE}";
    listen-on port 53 {{ {ns.ip}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-recursion {{ none; }};
    allow-query {{ key {KEY_NAME}; govcloud_clients; }};  // clients only while the guard says so
    allow-transfer {{ key {KEY_NAME}; }};  // govcloud reads a current server's zone to repair a stale one
    notify no;
    dnssec-validation no;
    minimal-responses yes;
}};
controls {{ }};
logging {{
    channel lab {{ file "{LOG}" versions 2 size 5m; print-time yes; severity info; }};
    category default {{ lab; }};
    category update {{ lab; }};
    category update-security {{ lab; }};
}};
zone "{zone}" {{
    type primary;
    file "{ZONE_FILE}";
    update-policy {{ grant {KEY_NAME} zonesub ANY; }};
}};
"""


def guard_conf(ns: NameServer, srv: Path) -> str:
    """The guard's configuration. ``srv`` is the controller-side directory that is ``/srv`` in the
    server's host: the guard runs in the host's network namespace only (the host's own /root hides
    the interpreter), so it names the server's files by their controller-side paths."""
    base = srv / "dns"
    return json.dumps({
        "site": ns.site, "zone": ZONE, "acl_file": str(base / "clients.conf"),
        "named_pid_file": str(base / "named.pid"), "key_file": str(base / "key.conf"),
        "status_file": str(base / "guard-status.json"), "witness": list(WITNESS),
        "servers": [{"site": s.site, "region": s.site.split("-")[0], "address": s.ip} for s in SERVERS],
        "policy": {"lease_s": 2.0, "repair_after_s": 1.5, "interval_s": 0.5}, "probe_timeout_s": 0.3,
    }, indent=2) + "\n"


WITHDRAWN_ACL = "acl govcloud_clients { none; };\n"


def zone_file() -> str:
    lines = [f"$ORIGIN {ZONE}", "$TTL 30",
             f"@ IN SOA ns-gza.{ZONE} hostmaster.{ZONE} 1 60 10 86400 5"]
    lines += [f"@ IN NS {s.host}.{ZONE}" for s in SERVERS]
    lines += [f"{s.host} IN A {s.ip}" for s in SERVERS]
    lines.append('_generation IN TXT "0"')
    return "\n".join(lines) + "\n"


class LabDns:
    """The lab's three name servers: idempotent ``up``/``down``, ``status``, per-server ``stop``/``start``."""

    def __init__(self, lab: Lab | None = None, key_path: Path | None = None) -> None:
        self.lab = lab or Lab()
        self.key_path = key_path or default_key_path()
        self.last_up: stale.Verdict | None = None  # what the last `up` found (fresh, adopt or clean)

    # ------------------------------------------------------------ helpers
    def run(self, site: str, argv: list[str], *, check: bool = True, input: str | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        r = self.lab.exec(server(site).host, argv, input=input, timeout=timeout)
        if check and r.returncode != 0:
            raise DnsLabError(f"{site} ({server(site).host}): `{shlex.join(argv)[:200]}` failed "
                              f"(rc {r.returncode}): {(r.stderr or r.stdout).strip()[-600:]}")
        return r

    def _write(self, site: str, path: str, text: str, mode: str = "644") -> None:
        self.lab.write_file(server(site).host, path, text, mode=mode)

    def ensure_key(self) -> Path:
        """Generate the TSIG key once (0600, in a 0700 directory); never printed."""
        if self.key_path.exists():
            return self.key_path
        self.key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        r = subprocess.run(["tsig-keygen", "-a", "hmac-sha256", KEY_NAME], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise DnsLabError(f"tsig-keygen failed (rc {r.returncode}): {r.stderr.strip()[-300:]}")
        fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(r.stdout)
        return self.key_path

    def pid_state(self, site: str) -> tuple[str, int | None]:
        """``(running, pid)`` when named.pid names this very host's named (its command line, and the
        host's mount namespace: the three servers' command lines are identical); ``(stopped, None)``
        without a PID file; ``(stale, None)`` for one a killed named left (PID gone or recycled)."""
        ns = server(site)
        try:  # the host's /srv is a directory of the controller's: no console call needed
            txt = (self._srv(ns.host) / "dns" / "named.pid").read_text().strip()
        except FileNotFoundError:
            return "stopped", None
        except OSError:
            return "stale", None
        try:
            cmd = Path(f"/proc/{txt}/cmdline").read_bytes().split(b"\0") if txt.isdigit() else []
            sshd = self.lab.files.registry().pid(f"sshd-{self.lab.host(ns.host).key}")
            same = sshd is not None and os.readlink(f"/proc/{txt}/ns/mnt") == os.readlink(f"/proc/{sshd}/ns/mnt")
        except (OSError, DevcloudError):
            return "stale", None
        ours = same and bool(cmd) and cmd[0].endswith(b"named") and CONF.encode() in cmd
        return ("running", int(txt)) if ours else ("stale", None)

    def pid(self, site: str) -> int | None:
        """The PID named wrote, if that process is still our named (else None)."""
        return self.pid_state(site)[1]

    def running(self, site: str) -> bool:
        return self.pid(site) is not None

    # ------------------------------------------------------------ lifecycle
    def up(self, *, timeout: float = 30, say: Callable[[str], None] | None = None) -> list[dict[str, object]]:
        """Start what is not running (idempotent). Servers a killed run left (named.pid naming a dead
        or foreign process; zone journals perhaps mid-write) are stale: said in one line (``say``,
        default: a warning in the log), every server and guard stopped, their data removed, and the
        zone started afresh. ``self.last_up`` tells which it was."""
        if not self.lab.is_up():
            raise DnsLabError("the lab is not up (run `devcloud lab up`)")
        from devcloud.lab.install import DNS_PACKAGES, ensure_packages

        ensure_packages(DNS_PACKAGES)  # policy-rc.d keeps apt from starting the package's own named
        key = self.ensure_key().read_text()
        for ns in SERVERS:
            self.lab.add_host(ns.host, ns.site, ip=ns.ip)  # idempotent
        self.last_up = stale.judge_members("dns", {ns.site: self.pid_state(ns.site)[0] for ns in SERVERS},
                                           pidfile="named.pid", process="named")
        if self.last_up.action == stale.CLEAN:
            for ns in SERVERS:
                self.stop_guard(ns.site)
                self.stop(ns.site)
                self.run(ns.site, ["rm", "-rf", BASE])
            (say or log.warning)(self.last_up.line)
        for ns in SERVERS:
            self.run(ns.site, ["mkdir", "-p", "-m", "700", BASE])
            self._write(ns.site, KEY_FILE, key, "600")
            if self.run(ns.site, ["cat", CONF], check=False).stdout != named_conf(ns):
                self._write(ns.site, CONF, named_conf(ns))
                self.stop(ns.site)  # a changed configuration needs a restart (no rndc channel: controls {})
            if self.run(ns.site, ["test", "-f", ZONE_FILE], check=False).returncode != 0:
                self._write(ns.site, ZONE_FILE, zone_file())
            self._write(ns.site, GUARD_CONF, guard_conf(ns, self._srv(ns.host)))
            self.start(ns.site, timeout=timeout)
        for ns in SERVERS:
            self.start_guard(ns.site)
        for ns in SERVERS:
            self.wait_serving(ns.site, timeout=timeout)
        return self.status()

    def wait_serving(self, site: str, *, timeout: float = 30) -> None:
        """Until the server answers clients again (its guard found it current)."""
        ns = server(site)
        try:
            wait_for(lambda: self._answers(ns, signed=False), timeout=timeout, interval=0.1,
                     what=f"the guard of {ns.host} letting it answer clients")
        except TimeoutError as exc:
            raise DnsLabError(f"{exc}: {self.guard_status(site).get('reason', 'no guard status')} "
                              f"(log: {self._guard_file(site, 'guard.log')})") from None

    def start(self, site: str, *, timeout: float = 30) -> None:
        if self.running(site):
            return
        self._write(site, ACL_FILE, WITHDRAWN_ACL)  # a (re)started server serves only once its guard says so
        self.run(site, ["named-checkconf", CONF])
        self.run(site, [NAMED, "-c", CONF, "-u", "root"])  # daemonizes; writes PID_FILE
        ns = server(site)
        try:
            wait_for(lambda: self.running(site) and self._answers(ns), timeout=timeout, interval=0.1,
                     what=f"named on {ns.host} ({ns.ip}) answering")
        except TimeoutError as exc:
            log = (self._srv(ns.host) / "dns" / "named.log")
            tail = log.read_text(errors="replace").strip()[-600:] if log.exists() else "(no log)"
            raise DnsLabError(f"{exc}; {log}: {tail}") from None

    # ------------------------------------------------------------ guards
    def _srv(self, host: str) -> Path:
        return self.lab.files.host(host) / "srv"

    def _guard_file(self, site: str, name: str) -> Path:
        return self._srv(server(site).host) / "dns" / name

    def guard_pid(self, site: str) -> int | None:
        """The PID the guard wrote, if that process is still our guard (else None)."""
        try:
            txt = self._guard_file(site, "guard.pid").read_text().strip()
            cmd = Path(f"/proc/{txt}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        conf = str(self._guard_file(site, "guard.conf.json")).encode()
        return int(txt) if txt.isdigit() and b"guard" in cmd and conf in cmd else None

    def start_guard(self, site: str, *, timeout: float = 30) -> None:
        """Start the guard in the server's network namespace (``ip netns exec``), detached."""
        if self.guard_pid(site) is not None:
            return
        ns = server(site)
        log_path = self._guard_file(site, "guard.log")
        argv = ["ip", "netns", "exec", self._netns(ns.host), sys.executable, "-m", "govcloud", "dns", "guard",
                "--config", str(self._guard_file(site, "guard.conf.json")),
                "--pid-file", str(self._guard_file(site, "guard.pid"))]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(log_path, "ab") as log:
            subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd="/",
                             start_new_session=True)
        try:
            wait_for(lambda: self.guard_pid(site) is not None, timeout=timeout, interval=0.1,
                     what=f"the DNS guard of {site} running")
        except TimeoutError as exc:
            tail = log_path.read_text(errors="replace").strip()[-600:]
            raise DnsLabError(f"{exc}; its log {log_path}: {tail or '(empty)'}") from None

    @staticmethod
    def _netns(host: str) -> str:
        from devcloud.lab.net import host_ns

        return host_ns(host)

    def stop_guard(self, site: str, *, timeout: float = 10) -> bool:
        pid = self.guard_pid(site)
        if pid is None:
            return False
        kill_pids([pid], timeout)
        self._guard_file(site, "guard.pid").unlink(missing_ok=True)
        return True

    def guard_status(self, site: str) -> dict[str, object]:
        try:
            doc: dict[str, object] = json.loads(self._guard_file(site, "guard-status.json").read_text())
        except (OSError, ValueError):
            doc = {}
        return doc

    def stop(self, site: str, *, timeout: float = 15) -> bool:
        """Stop one server by the PID it wrote (SIGTERM, then SIGKILL); False if it was not running."""
        pid = self.pid(site)
        if pid is None:
            return False
        kill_pids([pid], timeout)
        self.run(site, ["rm", "-f", PID_FILE], check=False)
        return True

    def down(self, *, purge: bool = False) -> list[str]:
        stopped = []
        for ns in SERVERS:
            try:
                self.lab.host(ns.host)
            except DevcloudError:
                continue
            self.stop_guard(ns.site)
            if self.stop(ns.site):
                stopped.append(ns.site)
            if purge:
                self.lab.remove_host(ns.host)
        return stopped

    def _answers(self, ns: NameServer, *, signed: bool = True) -> bool:
        """Whether the server answers: to govcloud's signed queries, or (``signed=False``) to clients."""
        key = ["-k", KEY_FILE] if signed else []
        r = self.lab.exec(ns.host, ["dig", *key, "+short", "+time=1", "+tries=1", f"@{ns.ip}", f"_generation.{ZONE}",
                                    "TXT"], timeout=5)
        return r.returncode == 0 and bool(r.stdout.strip())

    def status(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for ns in SERVERS:
            try:
                self.lab.host(ns.host)
                present = True
            except DevcloudError:
                present = False
            running = present and self.running(ns.site)
            guard = self.guard_status(ns.site) if present else {}
            out.append({"site": ns.site, "host": ns.host, "ip": ns.ip, "running": running,
                        "answering": running and self._answers(ns),
                        "serving_clients": running and self._answers(ns, signed=False),
                        "guard": present and self.guard_pid(ns.site) is not None,
                        "guard_reason": guard.get("reason", "")})
        return out

    def forget(self, labels: list[str]) -> None:
        """Delete these names from every running server (a lab reset, e.g. before a demo runs again)."""
        if not labels:
            return
        for ns in SERVERS:
            if not self.running(ns.site):
                continue
            script = "\n".join([f"server {ns.ip} 53", f"zone {ZONE}",
                                *(f"update delete {label}.{ZONE} A" for label in labels), "send", ""])
            r = subprocess.run(["nsupdate", "-v", "-k", str(self.key_path)], input=script, text=True,
                               capture_output=True, timeout=60, check=False)
            if r.returncode != 0:
                raise DnsLabError(f"{ns.site}: nsupdate failed (rc {r.returncode}): {r.stderr.strip()[-300:]}")
