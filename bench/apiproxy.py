"""A loopback HTTP proxy in front of one OpenStack API endpoint: counts requests, optionally injects faults.

Used by the provisioning fault test (5xx, timeouts and 429 on a share of requests: the one fault a real
service cannot be made to produce on demand) and by the benchmark (to count the API requests each tool
makes). Listens on 127.0.0.1 only. Response bodies and Location headers are rewritten so version
discovery links point back at the proxy, not around it.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te", "upgrade"}
FAULTS = ("503-before", "502-after", "timeout-after", "429")


class ApiProxy:
    """``ApiProxy(upstream).start()`` -> the proxy's base URL; ``stop()`` when done.

    ``fault_rate``: share of requests (chosen at random, seeded) that get a fault, the FAULTS in turn so
    that every kind occurs once four requests were hit (a random kind left one out now and then, and a
    test that needs each kind failed for no fault of the code under test):
    ``503-before`` (never forwarded), ``502-after`` and ``timeout-after`` (forwarded, the service acted,
    the answer is lost: the client must not create a duplicate), ``429`` with ``Retry-After``.
    """

    def __init__(self, upstream: str, *, fault_rate: float = 0.0, seed: int = 4, hang_seconds: float = 3.0,
                 retry_after: int = 1) -> None:
        u = urlsplit(upstream)
        self.upstream_host = u.hostname or "127.0.0.1"
        self.upstream_port = u.port or 80
        self.upstream_path = u.path.rstrip("/")
        self.fault_rate = fault_rate
        self.hang_seconds = hang_seconds
        self.retry_after = retry_after
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.requests = 0
        self.by_method: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.upstream_path}"

    def start(self) -> str:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: object) -> None:  # quiet
                return

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"apiproxy-{self.port}", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _pick_fault(self, path: str) -> str | None:
        with self.lock:
            self.requests += 1
            # version discovery (GET / or /v2.x/) is spared: openstacksdk silently falls back to an
            # unversioned URL when it fails, which is a different failure than the one under test
            if self.fault_rate and path.split("?")[0].rstrip("/").count("/") > 1 and self.rng.random() < self.fault_rate:
                fault = FAULTS[sum(self.faults.values()) % len(FAULTS)]
                self.faults[fault] += 1
                return fault
        return None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        with self.lock:
            self.by_method[h.command] += 1
        fault = self._pick_fault(h.path)
        if fault == "503-before":
            self._reply(h, 503, {"Content-Type": "application/json"}, b'{"error": "injected 503 (not forwarded)"}')
            return
        if fault == "429":
            self._reply(h, 429, {"Content-Type": "application/json", "Retry-After": str(self.retry_after)},
                        b'{"error": "injected 429"}')
            return
        status, headers, data = self._forward(h, body)
        if fault == "502-after":
            self._reply(h, 502, {"Content-Type": "application/json"}, b'{"error": "injected 502 after forwarding"}')
            return
        if fault == "timeout-after":
            time.sleep(self.hang_seconds)  # the client times out first; then the connection just closes
            h.close_connection = True
            return
        self._reply(h, status, headers, data)

    def _forward(self, h: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=120)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP and k.lower() != "host"}
        headers["Host"] = f"{self.upstream_host}:{self.upstream_port}"
        if body:
            headers["Content-Length"] = str(len(body))
        try:
            conn.request(h.command, h.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = {k: v for k, v in resp.getheaders() if k.lower() not in HOP}
            status = resp.status
        finally:
            conn.close()
        up = f"{self.upstream_host}:{self.upstream_port}".encode()
        mine = f"127.0.0.1:{self.port}".encode()
        data = data.replace(up, mine)
        if "Location" in out:
            out["Location"] = out["Location"].replace(up.decode(), mine.decode())
        return status, out, data

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], data: bytes) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.send_header("Connection", "close")
        h.end_headers()
        if h.command != "HEAD" and data:
            h.wfile.write(data)
        h.close_connection = True
