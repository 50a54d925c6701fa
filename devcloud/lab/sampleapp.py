#!/usr/bin/python3
"""A legacy system's stand-in application: stdlib only, so it runs on any lab host as a plain file.

The lab copies this file to ``/srv/app/sampleapp.py`` of each legacy host, next to ``app.json``
(``{"name": SYSTEM, "port": 8080, "data": [paths]}``). A migration drives it over ssh::

    python3 /srv/app/sampleapp.py start    # daemonises, waits until /health answers; exit 0
    python3 /srv/app/sampleapp.py status   # exit 0 running and healthy, 3 stopped; prints JSON
    python3 /srv/app/sampleapp.py stop     # TERM (then KILL) the recorded PID; exit 0
    python3 /srv/app/sampleapp.py serve    # foreground

HTTP (inside the host's netns, port from app.json):
    GET /health            -> 200 {"status": "ok", "hostname", "app", "data": {path: {files, bytes}},
                                   "dependencies": {dep: {name, address, reachable, checked_at}}, ...}
    GET /ping              -> 200 {"status": "ok", "app"} (cheap: what dependants call)
With ``"depends_on": [ids]`` (and ``"zone"``) in app.json, each dependency's /ping is called by name every 5 s.
With ``"databases": [{"engine": "postgresql"|"mariadb", "port": N}]``, the app commits one numbered row to
each server's ``app.ledger`` every 50 ms (through the engine's own client on 127.0.0.1, the password from
``/srv/app/db-<engine>-<port>.secret``) and appends each id the server acknowledged to
``/srv/app/ledger-<engine>-<port>.log``: what a migration must not lose. /health reports per server
``{acknowledged, last_id, errors, last_error}``, and says "degraded" while a server's last commit failed.
    GET /<data path>/<f>   -> the file's bytes (only below the configured data paths)
    GET /                  -> 200 JSON list of every served file with its size
The PID file and log live next to this script (``/srv/app/sampleapp.pid``, ``sampleapp.log``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONFIG = Path(os.environ.get("SAMPLEAPP_CONFIG", str(HERE / "app.json")))
PIDFILE = HERE / "sampleapp.pid"
LOGFILE = HERE / "sampleapp.log"


def load_config() -> dict[str, Any]:
    cfg: dict[str, Any] = json.loads(CONFIG.read_text())
    cfg.setdefault("port", 8080)
    cfg.setdefault("data", [])
    cfg.setdefault("name", socket.gethostname())
    return cfg


DEP_INTERVAL_S = 5.0  # how often each declared dependency is called by name (/ping: no data walk)


class Dependencies:
    """Calls each declared dependency by its service name (``<dep>.<zone>``, through the host's
    resolv.conf: the lab's DNS servers) every few seconds, so a name switch is visible from the client
    side, and the traffic is real TCP between lab hosts."""

    def __init__(self, names: list[str], zone: str, port: int) -> None:
        self.names, self.zone, self.port = names, zone.rstrip("."), port
        self.state: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def check(self, name: str) -> dict[str, Any]:
        fqdn = f"{name}.{self.zone}"
        out: dict[str, Any] = {"name": fqdn, "address": None, "reachable": False, "checked_at": time.time()}
        try:
            out["address"] = socket.getaddrinfo(fqdn, self.port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(f"http://{out['address']}:{self.port}/ping", timeout=2) as r:
                out["reachable"] = r.status == 200
                out["app"] = json.loads(r.read()).get("app")
        except (OSError, ValueError) as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"[:200]
        return out

    def loop(self) -> None:
        while True:
            for name in self.names:
                result = self.check(name)
                with self.lock:
                    self.state[name] = result
            time.sleep(DEP_INTERVAL_S)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return dict(self.state)


COMMIT_INTERVAL_S = 0.05


class Committer:
    """Commits numbered rows to one database server; every id the server acknowledged is appended
    (and fsynced) to the ledger file, so "nothing lost" can be checked against the database."""

    def __init__(self, engine: str, port: int) -> None:
        self.engine, self.port = engine, port
        key = f"{engine}-{port}"
        self.ledger = HERE / f"ledger-{key}.log"
        self.secret_file = HERE / f"db-{key}.secret"
        ids = [int(x) for x in self.ledger.read_text().split()] if self.ledger.exists() else []
        self.acknowledged = len(ids)
        self.next_id = (max(ids) + 1) if ids else 1
        self.last_id = max(ids) if ids else 0
        self.errors = 0
        self.last_error = ""
        self.last_ok = False
        self.lock = threading.Lock()

    def _argv_env(self, sql: str) -> tuple[list[str], dict[str, str]]:
        password = self.secret_file.read_text().strip()
        if self.engine == "postgresql":
            return (["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port), "-U", "app",
                     "-d", "app", "-c", sql], {**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "2"})
        return (["mariadb", "-h", "127.0.0.1", "-P", str(self.port), "-u", "app", "--connect-timeout=2", "app", "-e",
                 sql], {**os.environ, "MYSQL_PWD": password})

    def commit_one(self) -> None:
        n = self.next_id
        self.next_id += 1  # never reused: an unacknowledged id may still have been committed
        try:
            argv, env = self._argv_env(f"INSERT INTO ledger (id, payload) VALUES ({n}, 'commit {n}')")
            r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, err = False, f"{type(exc).__name__}: {exc}"
        else:
            ok, err = r.returncode == 0, (r.stderr or r.stdout).strip()[-200:]
        with self.lock:
            if ok:
                with open(self.ledger, "a") as f:
                    f.write(f"{n}\n")
                    f.flush()
                    os.fsync(f.fileno())
                self.acknowledged += 1
                self.last_id = n
            else:
                self.errors += 1
                self.last_error = err
            self.last_ok = ok

    def loop(self) -> None:
        while True:
            started = time.monotonic()
            self.commit_one()
            time.sleep(max(0.0, COMMIT_INTERVAL_S - (time.monotonic() - started)))

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"engine": self.engine, "port": self.port, "acknowledged": self.acknowledged,
                    "last_id": self.last_id, "errors": self.errors, "last_error": self.last_error,
                    "ok": self.last_ok}


def data_summary(paths: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for p in paths:
        files = size = 0
        for root, _, names in os.walk(p):
            for n in names:
                try:
                    size += os.path.getsize(os.path.join(root, n))
                    files += 1
                except OSError:
                    pass
        out[p] = {"files": files, "bytes": size}
    return out


class Handler(BaseHTTPRequestHandler):
    server_version = "govcloud-sampleapp/1"
    cfg: dict[str, Any] = {}
    deps: Dependencies | None = None
    committers: list[Committer] = []
    started = time.time()

    def log_message(self, fmt: str, *args: Any) -> None:  # to the log file, not stderr noise
        sys.stdout.write("%s %s\n" % (self.address_string(), fmt % args))
        sys.stdout.flush()

    def _json(self, obj: Any, status: int = 200) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        data = [str(Path(p)) for p in self.cfg["data"]]
        if path == "/ping":  # what dependants call every few seconds: cheap, no walk of the data paths
            self._json({"status": "ok", "app": self.cfg["name"]})
            return
        if path == "/health":
            dbs = {f"{c.engine}-{c.port}": c.snapshot() for c in self.committers}
            self._json(
                {
                    "status": "ok" if all(d["ok"] for d in dbs.values()) else "degraded",
                    "databases": dbs,
                    "hostname": socket.gethostname(),
                    "app": self.cfg["name"],
                    "pid": os.getpid(),
                    "uptime_s": round(time.time() - self.started, 3),
                    "data": data_summary(data),
                    "dependencies": self.deps.snapshot() if self.deps else {},
                }
            )
            return
        if path == "/":
            files = []
            for p in data:
                for root, _, names in os.walk(p):
                    for n in sorted(names):
                        f = os.path.join(root, n)
                        files.append({"path": f, "bytes": os.path.getsize(f)})
            self._json({"app": self.cfg["name"], "files": files})
            return
        target = os.path.realpath(path)
        if not any(target.startswith(p.rstrip("/") + "/") for p in data) or not os.path.isfile(target):
            self._json({"error": "not found", "path": path}, HTTPStatus.NOT_FOUND)
            return
        with open(target, "rb") as fh:
            body = fh.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind() does a reverse DNS lookup (getfqdn); lab hosts have no resolver
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


def _on_term(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # leave serve_forever() and close the socket


def serve() -> int:
    cfg = load_config()
    Handler.cfg = cfg
    if cfg.get("depends_on"):
        Handler.deps = Dependencies(list(cfg["depends_on"]), str(cfg.get("zone", "svc.gdgov.internal.")), int(cfg["port"]))
        threading.Thread(target=Handler.deps.loop, name="dependencies", daemon=True).start()
    for db in cfg.get("databases", []):
        c = Committer(str(db["engine"]), int(db["port"]))
        c.commit_one()  # the first commit before /health answers: "ok" means the database takes writes
        Handler.committers.append(c)
        threading.Thread(target=c.loop, name=f"commit-{db['engine']}", daemon=True).start()
    httpd = Server(("0.0.0.0", int(cfg["port"])), Handler)  # inside the host's netns only
    signal.signal(signal.SIGTERM, _on_term)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


def running_pid() -> int | None:
    """The recorded PID if it is alive and really this app (not a recycled PID)."""
    try:
        pid = int(PIDFILE.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return None
    try:  # every lab host runs this app with the same command line: a recycled PID may be another host's
        if os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"):
            return None
    except OSError:
        pass  # not allowed to look (not root): the command line alone decides
    return pid if "sampleapp" in cmdline and "serve" in cmdline else None


def health(port: int, timeout: float = 2.0) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=timeout) as r:
            body: dict[str, Any] = json.loads(r.read())
            return body
    except (OSError, ValueError):
        return None


def start(timeout: float = 15.0) -> int:
    cfg = load_config()
    if running_pid() is not None and health(cfg["port"]):
        print(json.dumps({"state": "running", "pid": running_pid()}))
        return 0
    with open(LOGFILE, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "serve"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,  # survives the ssh session that started it
        )
    PIDFILE.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(json.dumps({"state": "failed", "rc": proc.returncode, "log": str(LOGFILE)}))
            return 1
        if health(cfg["port"], timeout=0.5):
            print(json.dumps({"state": "running", "pid": proc.pid}))
            return 0
        time.sleep(0.05)
    print(json.dumps({"state": "timeout", "pid": proc.pid, "log": str(LOGFILE)}))
    return 1


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop(timeout: float = 10.0) -> int:
    pid = running_pid()
    if pid is None:
        PIDFILE.unlink(missing_ok=True)
        print(json.dumps({"state": "stopped"}))
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    PIDFILE.unlink(missing_ok=True)
    print(json.dumps({"state": "stopped", "pid": pid}))
    return 0


def status() -> int:
    cfg = load_config()
    pid = running_pid()
    h = health(cfg["port"]) if pid else None
    print(json.dumps({"state": "running" if h else "stopped", "pid": pid, "health": h}))
    return 0 if h else 3


def main(argv: list[str]) -> int:
    cmds = {"serve": serve, "start": start, "stop": stop, "status": status}
    if len(argv) != 1 or argv[0] not in cmds:
        print(f"usage: {Path(__file__).name} start|stop|status|serve", file=sys.stderr)
        return 2
    return cmds[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
