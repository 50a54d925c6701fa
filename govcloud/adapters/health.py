"""Service health probes from the controller (the engine's ``HealthPort``): an HTTP GET expecting a
status and, optionally, a text in the body; a TCP connect. No proxy is ever used: the targets are on
private networks. A command check runs on the host itself (``HostPort.run``), not here.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

from govcloud.model.services import HttpProbe

MAX_BODY = 1 << 20  # a health page larger than this is read only this far for the body check


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 30x is the answer the probe judges, not a page to follow


class HttpHealth:
    def http(self, address: str, probe: HttpProbe, *, timeout: float) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        url = f"http://{address}:{probe.port}{probe.path}"
        try:
            with opener.open(url, timeout=timeout) as resp:
                status, body = int(resp.status), resp.read(MAX_BODY)
        except urllib.error.HTTPError as exc:  # a 4xx/5xx answer: judged like any other
            try:
                status, body = exc.code, exc.read(MAX_BODY)
            except OSError:
                status, body = exc.code, b""
        except (urllib.error.URLError, OSError, ValueError):
            return False
        if status != probe.status:
            return False
        return probe.body is None or probe.body in body.decode("utf-8", "replace")

    def tcp(self, address: str, port: int, *, timeout: float) -> bool:
        try:
            with socket.create_connection((address, port), timeout=timeout):
                return True
        except OSError:
            return False
