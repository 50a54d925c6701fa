"""The connection layer of the OpenStack adapter: one openstacksdk ``Connection`` per region, the retry
loop every call goes through, and the evidence an error keeps.

- connects per region through the clouds.yaml entries named in topology.yaml, each connection tagging
  every request with one ``global_request_id`` per govcloud run (grep it in the services' logs);
- retries 5xx, 429 (after ``Retry-After``) and timeouts with exponential backoff. A create whose
  request may have reached the server is never blindly re-sent: ``recheck`` looks the object up by
  name and ownership first (after a timeout, for a while: the request may still be running there), so
  a lost response never makes a duplicate;
- errors keep their evidence (request id, method + URL, region, the object being made) and say what to do.

Reading (``reading``), applying provisioning changes (``writing``) and the migration's server calls
(``servers``) build on :class:`CloudConnection`.
"""

from __future__ import annotations

import logging
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import keystoneauth1.exceptions as ksa_exc
import openstack.exceptions as os_exc
from openstack.config import OpenStackConfig
from openstack.connection import Connection

from govcloud.errors import GovcloudError, OpenStackError
from govcloud.model import Topology
from govcloud.provision.model import DEPT_TAG_PREFIX, GLOBAL, MANAGED_TAG, key_of

log = logging.getLogger(__name__)
T = TypeVar("T")
SETTLE_TIMEOUTS = 5  # a create that timed out is looked for this many client timeouts before it is re-sent
SETTLE_MIN_S = 10.0
SETTLE_POLL_S = 0.5

def new_request_id() -> str:
    """One per govcloud run: ``req-<uuid4>``, the form the OpenStack services accept and log."""
    return f"req-{uuid.uuid4()}"


def normalise_public_key(text: str) -> str:
    """``type base64`` without the comment: what identifies a public key."""
    parts = text.strip().split()
    return " ".join(parts[:2])


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 30.0


@dataclass
class Stats:
    """Counters of one run, for the summary table and the benchmark."""

    calls: int = 0
    retries: int = 0
    recovered_creates: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, calls: int = 0, retries: int = 0, recovered: int = 0) -> None:
        with self.lock:
            self.calls += calls
            self.retries += retries
            self.recovered_creates += recovered


def _idp(conn: Connection) -> Any:
    """Keystone v3 proxy (typed as a v2/v3 union by openstacksdk; govcloud needs v3)."""
    return conn.identity


def _tags_of(obj: Any) -> list[str]:
    return list(getattr(obj, "tags", None) or [])


def _dept_of(tags: Iterable[str]) -> str:
    for t in tags:
        if t.startswith(DEPT_TAG_PREFIX):
            return t[len(DEPT_TAG_PREFIX):]
    return ""


def _is_ours(name: str | None, tags: Iterable[str]) -> bool:
    return MANAGED_TAG in tags or (name or "").startswith("gov-")


def rule_string(r: Any) -> str | None:
    """A Neutron rule as govcloud compares it (ingress IPv4 only; others are not managed)."""
    if r.direction != "ingress" or r.ether_type != "IPv4":
        return None
    proto = r.protocol or "any"
    if proto == "icmp":
        ports = "-"
    elif r.port_range_min is None:
        ports = "any"
    elif r.port_range_min == r.port_range_max:
        ports = str(r.port_range_min)
    else:
        ports = f"{r.port_range_min}-{r.port_range_max}"
    cidr = r.remote_ip_prefix or (f"group:{r.remote_group_id}" if r.remote_group_id else "0.0.0.0/0")
    return f"{proto}:{ports}:{cidr}"


def parse_rule(text: str) -> dict[str, Any]:
    proto, ports, cidr = text.split(":", 2)
    out: dict[str, Any] = {"direction": "ingress", "ether_type": "IPv4", "protocol": proto, "remote_ip_prefix": cidr}
    if ports not in ("-", "any"):
        lo, _, hi = ports.partition("-")
        out["port_range_min"] = int(lo)
        out["port_range_max"] = int(hi or lo)
    return out


class CloudConnection:
    """Connections to every region of a topology, with the retrying ``call`` and error evidence."""

    def __init__(
        self,
        topology: Topology,
        *,
        clouds_yaml: Path | None = None,
        request_id: str | None = None,
        public_key: str = "",
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        overrides: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.topology = topology
        self.request_id = request_id or new_request_id()
        self.public_key = normalise_public_key(public_key) if public_key else ""
        self.retry = retry or RetryPolicy()
        self.stats = Stats()
        self._timeout = timeout
        # how long a request that timed out may still be acted on by the service (a create then found)
        self._settle_s = max(SETTLE_MIN_S, SETTLE_TIMEOUTS * timeout)
        self._clouds_yaml = clouds_yaml
        self._overrides = overrides or {}
        self._conns: dict[str, Connection] = {}
        self._scoped: dict[tuple[str, str], Connection] = {}
        self._lock = threading.Lock()
        self._ids: dict[str, str] = {}  # key -> id of objects seen or made this run
        self._project_ids: dict[str, str] = {}
        self._user_id = ""
        self._role_ids: dict[str, str] = {}

    # --- connections ---------------------------------------------------------------------------

    def conn(self, region: str) -> Connection:
        """The connection of a region (``global`` = the primary region's, for Keystone)."""
        if region == GLOBAL:
            primary = self.topology.primary_region or self.topology.regions[0]
            region = primary.name
        with self._lock:
            if region not in self._conns:
                reg = self.topology.region(region)
                try:
                    cfg = OpenStackConfig(config_files=[str(self._clouds_yaml)] if self._clouds_yaml else None,
                                          load_envvars=self._clouds_yaml is None)
                    # all retry decisions are govcloud's (a blind transport-level retry of a POST could duplicate)
                    kwargs: dict[str, Any] = {"cloud": reg.cloud, "region_name": reg.region_name,
                                              "api_timeout": self._timeout, "connect_retries": 0,
                                              **self._overrides.get(region, {})}
                    cloud = cfg.get_one(**kwargs)
                except Exception as exc:  # openstack.config raises several types; all mean "bad clouds.yaml"
                    raise OpenStackError(
                        f"cannot load cloud {reg.cloud!r} (region {reg.region_name}) for region {region}: {exc}",
                        hint="check clouds.yaml (OS_CLIENT_CONFIG_FILE) and the region's `openstack.cloud` in topology.yaml",
                    ) from exc
                self._conns[region] = Connection(config=cloud, global_request_id=self.request_id)
            return self._conns[region]

    def _scoped_conn(self, region: str, project_id: str) -> Connection:
        """A connection scoped to a department project (server groups belong to the caller's project)."""
        with self._lock:
            got = self._scoped.get((region, project_id))
        if got is not None:
            return got
        base = self.conn(region)
        scoped = base.connect_as_project({"id": project_id})
        scoped._global_request_id = self.request_id
        with self._lock:
            self._scoped[(region, project_id)] = scoped
        return scoped

    def region_name(self, region: str) -> str:
        if region == GLOBAL:
            return "Keystone"
        return self.topology.region(region).region_name

    # --- calls with retries and evidence -------------------------------------------------------

    def call(self, fn: Callable[[], T], *, region: str, what: str,
             recheck: Callable[[], T | None] | None = None) -> T:
        """Run one API call with retries; ``recheck`` finds the object a lost create may have made.

        Raises OpenStackError with the request id, URL, region and ``what`` when retries run out or
        the error is not retriable (4xx other than 429).
        """
        attempt = 0
        maybe_sent = False
        in_flight = False  # no response came back at all: the service may still be acting on the request
        while True:
            attempt += 1
            try:
                if maybe_sent and recheck is not None:
                    found = self._recheck(recheck, settle_s=self._settle_s if in_flight else 0.0)
                    if found is not None:
                        self.stats.add(recovered=1)
                        log.info("%s: found after a lost response, not re-sending", what)
                        return found
                self.stats.add(calls=1)
                return fn()
            except os_exc.HttpException as exc:
                status = exc.status_code or 0
                retriable = status >= 500 or status == 429
                if not retriable or attempt >= self.retry.attempts:
                    raise self._evidence(exc, region, what, attempt) from exc
                maybe_sent = True  # a 5xx may come from a proxy after the service acted
                delay = self._retry_after(exc) if status == 429 else self._backoff(attempt)
            except os_exc.ResourceNotFound as exc:  # pragma: no cover - subclass of HttpException
                raise self._evidence(exc, region, what, attempt) from exc
            except (ksa_exc.ConnectionError, ksa_exc.RetriableConnectionFailure, os_exc.SDKException) as exc:
                if isinstance(exc, os_exc.SDKException) and not _is_transport(exc):
                    raise self._evidence(exc, region, what, attempt) from exc
                if attempt >= self.retry.attempts:
                    raise self._evidence(exc, region, what, attempt) from exc
                maybe_sent = in_flight = True
                delay = self._backoff(attempt)
            self.stats.add(retries=1)
            log.debug("%s: retry %d in %.2fs", what, attempt, delay)
            time.sleep(delay)  # backoff between attempts of a remote call: there is nothing to poll

    def _recheck(self, recheck: Callable[[], T | None], *, settle_s: float) -> T | None:
        """Look for what a lost create made. After a 5xx the service has answered (it acted or not) and
        one look decides; after a timeout the request may still be running there, so the look is
        repeated for ``settle_s`` before a create is sent again (else a slow create and its re-send
        would make two: seen under load with the fault proxy of test_provision)."""
        looks = 1 + math.ceil(settle_s / SETTLE_POLL_S)
        for look in range(looks):
            self.stats.add(calls=1)
            found = recheck()
            if found is not None or look == looks - 1:
                return found
            time.sleep(SETTLE_POLL_S)  # polling the service for the in-flight create, for settle_s at most
        return None

    def _backoff(self, attempt: int) -> float:
        d = min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1))
        return float(d * (0.5 + random.random() / 2))

    def _retry_after(self, exc: os_exc.HttpException) -> float:
        resp = getattr(exc, "response", None)
        value = resp.headers.get("Retry-After") if resp is not None else None
        try:
            return min(self.retry.max_retry_after, max(0.0, float(value))) if value is not None else self._backoff(1)
        except ValueError:
            return self._backoff(1)

    def _evidence(self, exc: Exception, region: str, what: str, attempts: int) -> OpenStackError:
        status = getattr(exc, "status_code", None)
        rid = getattr(exc, "request_id", None) or ""
        url = getattr(exc, "url", None) or ""
        method = getattr(getattr(exc, "response", None), "request", None)
        method_s = getattr(method, "method", "") if method is not None else ""
        details = _body_message(getattr(exc, "response", None)) or getattr(exc, "details", None) or str(exc)
        text = str(details).strip().replace("\n", " ")[:400]
        where = self.region_name(region)
        msg = (f"{what} in {where} failed: {('HTTP ' + str(status) + ': ') if status else ''}{text}"
               f" (after {attempts} attempt(s); request id {rid or '-'}; {method_s + ' ' if method_s else ''}{url or '-'};"
               f" global request id {self.request_id})")
        hint = "check the service's log for the request id, then run the command again (apply is idempotent)"
        low = text.lower()
        if status in (403, 409, 413) and "quota" in low and ("exceed" in low or "over" in low):
            hint = (f"raise the quota in {where} (or shrink the inventory's resources), then apply again; "
                    "`openstack quota show <project>` shows usage and limits")
        elif status == 401:
            hint = "the credentials in clouds.yaml were refused; check the cloud's auth section"
        elif status == 403:
            hint = "the clouds.yaml user needs the admin role to create projects, quotas and networks for departments"
        elif status is None:
            hint = "the API did not answer; check that the service is running and reachable, then apply again"
        return OpenStackError(msg, hint=hint, request_id=rid, url=url, region=where, resource=what, status=status)

    def _id(self, key: str) -> str:
        with self._lock:
            got = self._ids.get(key)
        if not got:
            raise GovcloudError(f"internal: {key} has no id yet (a dependency was not made)")
        return got

    def _remember(self, key: str, ident: str) -> None:
        with self._lock:
            self._ids[key] = ident

    def _project_id(self, name: str) -> str:
        return self._id(key_of(GLOBAL, "project", name))

    def close(self) -> None:
        for c in [*self._conns.values(), *self._scoped.values()]:
            try:
                c.close()
            except Exception:  # closing is best effort
                log.debug("closing a connection failed", exc_info=True)


def _body_message(resp: Any) -> str:
    """The service's own message from an error body (Neutron, Nova and Keystone nest it differently)."""
    if resp is None:
        return ""
    try:
        doc = resp.json()
    except Exception:  # not JSON: the caller falls back to the SDK's text
        return ""
    if isinstance(doc, dict):
        for value in (doc, *doc.values()):
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])
    return ""


def _is_transport(exc: Exception) -> bool:
    """openstacksdk wraps some transport failures (timeouts while reading) in SDKException."""
    text = str(exc).lower()
    return bool(re.search(r"timed out|timeout|connection (reset|aborted|refused)|remote end closed", text))


