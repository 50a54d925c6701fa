"""Patroni's REST API and etcd's health endpoint, read from the controller (``HaObserverPort``).

Why their HTTP APIs and not ``patronictl`` / ``etcdctl`` over SSH: both answer on the database hosts'
addresses, which the controller reaches, with documented JSON (Patroni's ``GET /cluster``, etcd's
``GET /health``); reading them needs no login on a host and no secret. No proxy is ever used: the
hosts are on private networks.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from govcloud.errors import RuntimeFailure
from govcloud.failover.ha_status import ClusterView, EtcdView, MemberView

TIMEOUT_S = 2.0


def _get(url: str, timeout: float) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return json.loads(resp.read(1 << 20).decode("utf-8"))


def _member(raw: dict[str, Any]) -> MemberView:
    lag = raw.get("lag")
    timeline = raw.get("timeline")
    return MemberView(name=str(raw.get("name", "")), role=str(raw.get("role", "")), state=str(raw.get("state", "")),
                      host=str(raw.get("host", "")), timeline=int(timeline) if isinstance(timeline, int) else None,
                      lag_bytes=int(lag) if isinstance(lag, int) else None)


class PatroniHttp:
    """Reads clusters from their members' REST APIs and rings from their members' client URLs."""

    def __init__(self, timeout: float = TIMEOUT_S) -> None:
        self.timeout = timeout

    def cluster(self, scope: str, rest_urls: Sequence[str]) -> ClusterView:
        """The first member (in order) that answers ``GET /cluster`` speaks for ``scope``."""
        errors = []
        for url in rest_urls:
            try:
                doc = _get(f"{url}/cluster", self.timeout)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
                continue
            members = tuple(_member(m) for m in doc.get("members", []) if isinstance(m, dict))
            return ClusterView(scope, members, asked=url)
        return ClusterView(scope, error=f"no member of {scope} answered: " + "; ".join(errors))

    def views(self, scope: str, rest_urls: Sequence[str]) -> list[ClusterView]:
        """Every member's own answer to ``GET /cluster``, asked side by side (errors included)."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, len(rest_urls))) as pool:
            return list(pool.map(lambda url: self.cluster(scope, [url]), rest_urls))

    def etcd_health(self, scope: str, member: str, site: str, client_url: str) -> EtcdView:
        try:
            doc = _get(f"{client_url}/health", self.timeout)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return EtcdView(scope, member, site, False, str(getattr(exc, "reason", exc)))
        healthy = str(doc.get("health", "")).lower() == "true"
        return EtcdView(scope, member, site, healthy, "" if healthy else str(doc.get("reason", "unhealthy")))

    def switchover(self, rest_url: str, leader: str, candidate: str, user: str, password: str,
                   timeout: float = 60.0) -> str:
        """Patroni's ``POST /switchover`` on the leader (it returns once the candidate leads, or failed).
        Raises RuntimeFailure with Patroni's own answer when it refuses."""
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req = urllib.request.Request(f"{rest_url}/switchover", method="POST",
                                     data=json.dumps({"leader": leader, "candidate": candidate}).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=timeout) as resp:
                return str(resp.read(4096).decode("utf-8", "replace")).strip()
        except urllib.error.HTTPError as exc:
            answer = exc.read(4096).decode("utf-8", "replace").strip()
            raise RuntimeFailure(f"Patroni at {rest_url} refused the switchover {leader} -> {candidate}: "
                                 f"HTTP {exc.code} {answer}",
                                 hint="`govcloud ha status` shows whether the candidate is streaming") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise RuntimeFailure(f"Patroni at {rest_url} did not answer the switchover: "
                                 f"{getattr(exc, 'reason', exc)}", hint="`govcloud ha status`") from exc
