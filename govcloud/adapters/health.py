"""Application health over HTTP (the engine's ``HealthPort``): ``GET http://<address>:<port>/health``
answering 200 with ``{"status": "ok"}``. No proxy is ever used: the targets are on private networks."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


class HttpHealth:
    def __init__(self, timeout: float = 3.0) -> None:
        self.timeout = timeout

    def healthy(self, address: str, port: int) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://{address}:{port}/health", timeout=self.timeout) as resp:
                doc = json.loads(resp.read() or b"{}")
                return bool(resp.status == 200 and isinstance(doc, dict) and doc.get("status") == "ok")
        except (urllib.error.URLError, OSError, ValueError):
            return False
