"""The only module that talks to OpenStack (openstacksdk's typed proxy layer).

- connects per region through the clouds.yaml entries named in topology.yaml, each connection tagging
  every request with one ``global_request_id`` per govcloud run (grep it in the services' logs);
- reads the cloud with one list call per resource type and region (Nova quotas, which have no list
  API, are the exception: one GET per managed project);
- applies one :class:`~govcloud.provision.model.Change` at a time; the service runs them concurrently;
- retries 5xx, 429 (after ``Retry-After``) and timeouts with exponential backoff. A create whose
  request may have reached the server is never blindly re-sent: the object is looked up by name and
  ownership tag first, so a lost response never makes a duplicate;
- errors keep their evidence (request id, method + URL, region, the object being made) and say what to do.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import keystoneauth1.exceptions as ksa_exc
import openstack.exceptions as os_exc
from openstack.config import OpenStackConfig
from openstack.connection import Connection

from govcloud.errors import GovcloudError, OpenStackError
from govcloud.model import Topology
from govcloud.provision.desired import OPERATOR, project_name
from govcloud.provision.model import (
    DEPT_TAG_PREFIX,
    GLOBAL,
    MANAGED_TAG,
    Action,
    Change,
    Flavor,
    Observed,
    ObservedResource,
    key_of,
    make_params,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

COMPUTE_QUOTA_KEYS = ("cores", "ram", "instances", "server_groups", "server_group_members")
NETWORK_QUOTA_KEYS = ("network", "subnet", "router", "security_group", "security_group_rule", "port")


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


class OpenStackCloud:
    """Connections to every region of a topology, with reads, applies, retries and evidence."""

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
        while True:
            attempt += 1
            try:
                if maybe_sent and recheck is not None:
                    self.stats.add(calls=1)
                    found = recheck()
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
                maybe_sent = True
                delay = self._backoff(attempt)
            self.stats.add(retries=1)
            log.debug("%s: retry %d in %.2fs", what, attempt, delay)
            time.sleep(delay)  # backoff between attempts of a remote call: there is nothing to poll

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

    # --- reading -------------------------------------------------------------------------------

    def read(self, regions: Iterable[str], *, projects_of: Iterable[str] = ()) -> Observed:
        """Everything govcloud may own or clash with, in the given regions, plus flavors and images.

        Objects are kept when named ``gov-...`` or tagged ``govcloud:managed``. Raises OpenStackError.
        """
        regions = tuple(regions)
        ident = self._read_identity()
        projects = ident["projects"]
        by_id = {p["id"]: p for p in projects}
        resources: list[ObservedResource] = list(ident["resources"])
        flavors: list[tuple[str, tuple[Flavor, ...]]] = []
        images: list[tuple[str, tuple[str, ...]]] = []
        with ThreadPoolExecutor(max_workers=max(1, 2 * len(regions))) as pool:
            futures = {r: pool.submit(self._read_region, r, by_id) for r in regions}
            for r in regions:
                res, fl, im = futures[r].result()
                resources.extend(res)
                flavors.append((r, fl))
                images.append((r, im))
        return Observed(tuple(resources), tuple(flavors), tuple(images), regions)

    def _read_identity(self) -> dict[str, Any]:
        c = self.conn(GLOBAL)
        projects_raw = self.call(lambda: list(_idp(c).projects()), region=GLOBAL, what="list projects")
        self._user_id = self.call(lambda: c.current_user_id, region=GLOBAL, what="authenticate") or ""
        roles = self.call(lambda: list(_idp(c).roles()), region=GLOBAL, what="list roles")
        self._role_ids = {r.name: r.id for r in roles}
        role_names = {r.id: r.name for r in roles}
        assignments = self.call(lambda: list(_idp(c).role_assignments(user_id=self._user_id)), region=GLOBAL,
                                what="list role assignments")
        projects: list[dict[str, Any]] = []
        out: list[ObservedResource] = []
        for p in projects_raw:
            tags = _tags_of(p)
            managed = MANAGED_TAG in tags
            info = {"id": p.id, "name": p.name, "managed": managed, "department": _dept_of(tags)}
            projects.append(info)
            self._project_ids[p.name] = p.id
            if not _is_ours(p.name, tags):
                continue
            out.append(ObservedResource("project", GLOBAL, p.name, p.id, managed, _dept_of(tags), make_params(
                {"description": p.description or "", "tags": sorted(tags), "enabled": bool(p.is_enabled)})))
            self._ids[key_of(GLOBAL, "project", p.name)] = p.id
        by_id = {p["id"]: p for p in projects}
        for a in assignments:
            scope = getattr(a, "scope", None) or {}
            pid = (scope.get("project") or {}).get("id")
            rid = (getattr(a, "role", None) or {}).get("id")
            proj = by_id.get(pid or "")
            if not proj or not str(proj["name"]).startswith("gov-") or rid not in role_names:
                continue
            name = f"{proj['name']}/{role_names[rid]}"
            out.append(ObservedResource("role_assignment", GLOBAL, name, f"{pid}:{rid}", bool(proj["managed"]),
                                        str(proj["department"]),
                                        make_params({"project": proj["name"], "role": role_names[rid], "user": OPERATOR}),
                                        (key_of(GLOBAL, "project", str(proj["name"])),)))
        return {"projects": projects, "resources": out}

    def _read_region(self, region: str, projects: Mapping[str, Mapping[str, Any]]
                     ) -> tuple[list[ObservedResource], tuple[Flavor, ...], tuple[str, ...]]:
        c = self.conn(region)
        where = self.region_name(region)
        with ThreadPoolExecutor(max_workers=6) as pool:
            jobs: dict[str, Future[Any]] = {
                "networks": pool.submit(self.call, lambda: list(c.network.networks()), region=region, what=f"list networks"),
                "subnets": pool.submit(self.call, lambda: list(c.network.subnets()), region=region, what=f"list subnets"),
                "routers": pool.submit(self.call, lambda: list(c.network.routers()), region=region, what=f"list routers"),
                "ports": pool.submit(self.call, lambda: list(c.network.ports(device_owner="network:router_interface")),
                                     region=region, what=f"list router ports"),
                "sgs": pool.submit(self.call, lambda: list(c.network.security_groups()), region=region,
                                   what=f"list security groups"),
                "rules": pool.submit(self.call, lambda: list(c.network.security_group_rules()), region=region,
                                     what=f"list security group rules"),
                "nquotas": pool.submit(self.call, lambda: list(c.network.quotas()), region=region, what=f"list network quotas"),
                "keypairs": pool.submit(self.call, lambda: list(c.compute.keypairs()), region=region, what=f"list keypairs"),
                "sgroups": pool.submit(self.call, lambda: list(c.compute.server_groups(all_projects=True)), region=region,
                                       what=f"list server groups"),
                "flavors": pool.submit(self.call, lambda: list(c.compute.flavors()), region=region, what=f"list flavors"),
                "images": pool.submit(self.call, lambda: list(c.image.images()), region=region, what=f"list images"),
            }
            got = {k: f.result() for k, f in jobs.items()}
            managed_projects = [p for p in projects.values() if p["managed"]]
            cquota_jobs = {
                str(p["name"]): pool.submit(self.call, lambda pid=p["id"]: c.compute.get_quota_set(pid), region=region,
                                            what=f"get compute quota of {p['name']}")
                for p in managed_projects
            }
            cquotas = {name: f.result() for name, f in cquota_jobs.items()}

        def pname(pid: str | None) -> str:
            p = projects.get(pid or "")
            return str(p["name"]) if p else (pid or "")

        def pmanaged(pid: str | None) -> tuple[bool, str]:
            p = projects.get(pid or "")
            return (bool(p["managed"]), str(p["department"])) if p else (False, "")

        def owner(name: str | None, tags: list[str], pid: str | None) -> tuple[bool, str]:
            """Tagged: ours. Untagged but named ``gov-<dept>...`` inside our managed project ``gov-<dept>``:
            ours too, made by a run that stopped before tagging it (the next apply tags it)."""
            if MANAGED_TAG in tags:
                return True, _dept_of(tags)
            managed, dept = pmanaged(pid)
            if managed and not tags and (name or "").startswith(f"gov-{dept}"):
                return True, dept
            return False, ""

        out: list[ObservedResource] = []
        net_names: dict[str, str] = {}
        for n in got["networks"]:
            net_names[n.id] = n.name
            tags = _tags_of(n)
            if not _is_ours(n.name, tags):
                continue
            out.append(ObservedResource("network", region, n.name, n.id, *owner(n.name, tags, n.project_id),
                                        make_params({"project": pname(n.project_id), "tags": sorted(tags)})))
        sub_names: dict[str, str] = {}
        for s in got["subnets"]:
            sub_names[s.id] = s.name
            tags = _tags_of(s)
            if not _is_ours(s.name, tags):
                continue
            nname = net_names.get(s.network_id, s.network_id)
            out.append(ObservedResource("subnet", region, s.name, s.id, *owner(s.name, tags, s.project_id), make_params({
                "project": pname(s.project_id), "tags": sorted(tags), "network": nname, "cidr": s.cidr,
                "gateway_ip": s.gateway_ip, "enable_dhcp": bool(s.is_dhcp_enabled), "ip_version": s.ip_version}),
                (key_of(region, "network", nname),)))
        routers: dict[str, tuple[str, bool, str]] = {}
        for r in got["routers"]:
            tags = _tags_of(r)
            routers[r.id] = (r.name, *owner(r.name, tags, r.project_id))
            if not _is_ours(r.name, tags):
                continue
            out.append(ObservedResource("router", region, r.name, r.id, *owner(r.name, tags, r.project_id),
                                        make_params({"project": pname(r.project_id), "tags": sorted(tags)})))
        for port in got["ports"]:
            router = routers.get(port.device_id or "")
            if router is None:
                continue
            for ip in port.fixed_ips or []:
                sname = sub_names.get(ip.get("subnet_id", ""), "")
                if not sname:
                    continue
                out.append(ObservedResource("router_interface", region, sname, f"{port.device_id}:{ip['subnet_id']}",
                                            router[1], router[2], make_params({"router": router[0], "subnet": sname}),
                                            (key_of(region, "router", router[0]), key_of(region, "subnet", sname))))
        rules_by_sg: dict[str, list[str]] = {}
        for rule in got["rules"]:
            text = rule_string(rule)
            if text is not None:
                rules_by_sg.setdefault(rule.security_group_id, []).append(text)
        for g in got["sgs"]:
            tags = _tags_of(g)
            if not _is_ours(g.name, tags):
                continue
            out.append(ObservedResource("security_group", region, g.name, g.id, *owner(g.name, tags, g.project_id),
                                        make_params({"project": pname(g.project_id), "tags": sorted(tags),
                                                     "description": g.description or "",
                                                     "rules": sorted(set(rules_by_sg.get(g.id, [])))})))
        for q in got["nquotas"]:
            pid = getattr(q, "project_id", None) or getattr(q, "id", None)
            managed, dept = pmanaged(pid)
            if not managed:
                continue
            vals = {k: getattr(q, {"network": "networks", "subnet": "subnets", "router": "routers",
                                   "security_group": "security_groups", "security_group_rule": "security_group_rules",
                                   "port": "ports"}[k], None) for k in NETWORK_QUOTA_KEYS}
            out.append(ObservedResource("quota_network", region, pname(pid), str(pid), True, dept, make_params(vals),
                                        (key_of(GLOBAL, "project", pname(pid)),)))
        seen_nq = {o.name for o in out if o.kind == "quota_network"}
        for p in managed_projects:
            if p["name"] not in seen_nq:  # Neutron lists only projects with non-default quotas
                out.append(ObservedResource("quota_network", region, str(p["name"]), str(p["id"]), True, str(p["department"]), (),
                                            (key_of(GLOBAL, "project", str(p["name"])),)))
        for name, q in cquotas.items():
            pid = self._project_ids.get(name, "")
            managed, dept = pmanaged(pid)
            vals = {k: getattr(q, k, None) for k in COMPUTE_QUOTA_KEYS}
            out.append(ObservedResource("quota_compute", region, name, pid, managed, dept, make_params(vals),
                                        (key_of(GLOBAL, "project", name),)))
        for kp in got["keypairs"]:
            if not (kp.name or "").startswith("gov-"):
                continue
            ours = bool(self.public_key) and normalise_public_key(kp.public_key or "") == self.public_key
            out.append(ObservedResource("keypair", region, kp.name, kp.name, ours, kp.name[4:] if ours else "",
                                        make_params({"public_key": normalise_public_key(kp.public_key or "")})))
        for sg in got["sgroups"]:
            if not (sg.name or "").startswith("gov-"):
                continue
            managed, dept = pmanaged(sg.project_id)
            policy = getattr(sg, "policy", None) or (list(getattr(sg, "policies", None) or [None])[0])
            out.append(ObservedResource("server_group", region, sg.name, sg.id, managed, dept,
                                        make_params({"project": pname(sg.project_id), "policy": policy}),
                                        (key_of(GLOBAL, "project", pname(sg.project_id)),)))
        for o in out:
            if o.kind not in ("router_interface", "quota_network", "quota_compute"):
                with self._lock:
                    self._ids.setdefault(o.key, o.id)
        flavors = tuple(Flavor(f.name, int(f.vcpus or 0), int(f.ram or 0)) for f in got["flavors"])
        images = tuple(sorted({i.name for i in got["images"] if i.name}))
        return out, flavors, images

    def servers(self, regions: Iterable[str]) -> list[dict[str, Any]]:
        """ACTIVE servers of govcloud's managed projects, one list call per region (all projects)."""
        ident = self._read_identity()
        projects = {p["id"]: p for p in ident["projects"] if p["managed"]}
        out: list[dict[str, Any]] = []
        for region in regions:
            c = self.conn(region)
            servers = self.call(lambda: list(c.compute.servers(all_projects=True, status="ACTIVE")), region=region,
                                what="list servers")
            for s in servers:
                proj = projects.get(s.project_id or "")
                if proj is None:
                    continue
                address = ""
                for _net, addrs in sorted((s.addresses or {}).items()):
                    for a in addrs:
                        if a.get("version") == 4 and a.get("OS-EXT-IPS:type", "fixed") == "fixed":
                            address = address or str(a.get("addr"))
                out.append({"name": s.name, "id": s.id, "region": region, "availability_zone": s.availability_zone or "",
                            "department": proj["department"], "address": address, "metadata": dict(s.metadata or {}),
                            "key_name": s.key_name or ""})
        return out

    # --- applying ------------------------------------------------------------------------------

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

    def apply(self, change: Change) -> str:
        """Make one change; returns what it did in a few words. Raises OpenStackError."""
        handler = getattr(self, f"_{change.action.value}_{change.kind}", None)
        if handler is None:
            raise GovcloudError(f"internal: cannot {change.action.value} a {change.kind}")
        result: str = handler(change)
        return result

    def _what(self, change: Change) -> str:
        return f"{change.action.value} {change.kind.replace('_', ' ')} {change.name}" + (
            f" (project gov-{change.department})" if change.department else "")

    def _find(self, lister: Callable[[], Iterable[Any]], name: str) -> Any | None:
        """The object a lost create made: same name in the same (managed) project, tagged or not yet."""
        for o in lister():
            if o.name == name:
                return o
        return None

    def _tag(self, ch: Change, obj: Any, tags: Iterable[str]) -> None:
        """Tag a new Neutron object (this Neutron refuses tags in POST); PUT /tags is idempotent."""
        c = self.conn(ch.region)
        self.call(lambda: c.network.set_tags(obj, sorted(tags)), region=ch.region, what=f"tag {ch.kind} {ch.name}")

    # projects and roles (Keystone)
    def _create_project(self, ch: Change) -> str:
        c = self.conn(GLOBAL)
        p = dict(ch.after)
        proj = self.call(
            lambda: _idp(c).create_project(name=ch.name, domain_id="default", description=p["description"],
                                              tags=list(p["tags"]), is_enabled=True),
            region=GLOBAL, what=self._what(ch),
            recheck=lambda: self._find(lambda: _idp(c).projects(name=ch.name), ch.name))
        self._remember(ch.key, proj.id)
        self._project_ids[ch.name] = proj.id
        return proj.id  # type: ignore[no-any-return]

    def _update_project(self, ch: Change) -> str:
        c = self.conn(GLOBAL)
        p = dict(ch.after)
        before = dict(ch.before or ())
        tags = sorted(set(before.get("tags", ())) | set(p["tags"]))
        self.call(lambda: _idp(c).update_project(ch.observed_id, description=p["description"], tags=tags,
                                                    is_enabled=p["enabled"]), region=GLOBAL, what=self._what(ch))
        return ch.observed_id

    def _delete_project(self, ch: Change) -> str:
        c = self.conn(GLOBAL)
        self.call(lambda: _idp(c).delete_project(ch.observed_id, ignore_missing=True), region=GLOBAL, what=self._what(ch))
        return ch.observed_id

    def _create_role_assignment(self, ch: Change) -> str:
        c = self.conn(GLOBAL)
        p = dict(ch.after)
        pid = self._project_id(p["project"])
        if not self._user_id:
            self._user_id = c.current_user_id or ""
        if p["role"] not in self._role_ids:
            roles = self.call(lambda: list(_idp(c).roles(name=p["role"])), region=GLOBAL, what="list roles")
            if not roles:
                raise OpenStackError(f"role {p['role']!r} not found in Keystone", hint="create it: openstack role create member",
                                     region="Keystone", resource=self._what(ch))
            self._role_ids[p["role"]] = roles[0].id
        rid = self._role_ids[p["role"]]
        # PUT is idempotent: a retry after a lost response is harmless
        self.call(lambda: _idp(c).assign_project_role_to_user(pid, self._user_id, rid), region=GLOBAL, what=self._what(ch))
        return f"{pid}:{rid}"

    # quotas
    def _update_quota_compute(self, ch: Change) -> str:
        c = self.conn(ch.region)
        pid = self._project_id(ch.name)
        vals = dict(ch.after)
        self.call(lambda: c.compute.update_quota_set(pid, **vals), region=ch.region, what=self._what(ch))
        return pid

    _create_quota_compute = _update_quota_compute

    def _update_quota_network(self, ch: Change) -> str:
        c = self.conn(ch.region)
        pid = self._project_id(ch.name)
        names = {"network": "networks", "subnet": "subnets", "router": "routers", "security_group": "security_groups",
                 "security_group_rule": "security_group_rules", "port": "ports"}
        vals = {names[k]: v for k, v in ch.after}
        self.call(lambda: c.network.update_quota(pid, **vals), region=ch.region, what=self._what(ch))
        return pid

    _create_quota_network = _update_quota_network

    # networks, subnets, routers
    def _create_network(self, ch: Change) -> str:
        c = self.conn(ch.region)
        p = dict(ch.after)
        pid = self._project_id(p["project"])
        net = self.call(lambda: c.network.create_network(name=ch.name, project_id=pid),
                        region=ch.region, what=self._what(ch),
                        recheck=lambda: self._find(lambda: c.network.networks(name=ch.name, project_id=pid), ch.name))
        self._tag(ch, net, p["tags"])
        self._remember(ch.key, net.id)
        return net.id  # type: ignore[no-any-return]

    def _create_subnet(self, ch: Change) -> str:
        c = self.conn(ch.region)
        p = dict(ch.after)
        pid = self._project_id(p["project"])
        net_id = self._id(key_of(ch.region, "network", p["network"]))
        sub = self.call(lambda: c.network.create_subnet(
            name=ch.name, project_id=pid, network_id=net_id, cidr=p["cidr"], gateway_ip=p["gateway_ip"],
            ip_version=p["ip_version"], is_dhcp_enabled=p["enable_dhcp"]),
            region=ch.region, what=self._what(ch) + f" {p['cidr']}",
            recheck=lambda: self._find(lambda: c.network.subnets(name=ch.name, network_id=net_id), ch.name))
        self._tag(ch, sub, p["tags"])
        self._remember(ch.key, sub.id)
        return sub.id  # type: ignore[no-any-return]

    def _create_router(self, ch: Change) -> str:
        c = self.conn(ch.region)
        p = dict(ch.after)
        pid = self._project_id(p["project"])
        r = self.call(lambda: c.network.create_router(name=ch.name, project_id=pid),
                      region=ch.region, what=self._what(ch),
                      recheck=lambda: self._find(lambda: c.network.routers(name=ch.name, project_id=pid), ch.name))
        self._tag(ch, r, p["tags"])
        self._remember(ch.key, r.id)
        return r.id  # type: ignore[no-any-return]

    def _update_tags(self, ch: Change, getter: Callable[[str], Any]) -> str:
        c = self.conn(ch.region)
        p = dict(ch.after)
        before = dict(ch.before or ())
        tags = sorted(set(before.get("tags", ())) | set(p["tags"]))
        self.call(lambda: c.network.set_tags(getter(ch.observed_id), tags), region=ch.region, what=self._what(ch))
        return ch.observed_id

    def _update_network(self, ch: Change) -> str:
        c = self.conn(ch.region)
        return self._update_tags(ch, lambda i: c.network.get_network(i))

    def _update_router(self, ch: Change) -> str:
        c = self.conn(ch.region)
        return self._update_tags(ch, lambda i: c.network.get_router(i))

    def _update_subnet(self, ch: Change) -> str:
        c = self.conn(ch.region)
        p = dict(ch.after)
        if "tags" in ch.fields:
            self._update_tags(ch, lambda i: c.network.get_subnet(i))
        attrs = {k2: p[k] for k, k2 in (("gateway_ip", "gateway_ip"), ("enable_dhcp", "is_dhcp_enabled")) if k in ch.fields}
        if attrs:
            self.call(lambda: c.network.update_subnet(ch.observed_id, **attrs), region=ch.region, what=self._what(ch))
        return ch.observed_id

    def _create_router_interface(self, ch: Change) -> str:
        c = self.conn(ch.region)
        p = dict(ch.after)
        rid = self._id(key_of(ch.region, "router", p["router"]))
        sid = self._id(key_of(ch.region, "subnet", p["subnet"]))

        def present() -> Any | None:
            for port in c.network.ports(device_id=rid, device_owner="network:router_interface"):
                if any(ip.get("subnet_id") == sid for ip in port.fixed_ips or []):
                    return port
            return None

        self.call(lambda: c.network.add_interface_to_router(rid, subnet=sid), region=ch.region,
                  what=self._what(ch), recheck=present)
        return f"{rid}:{sid}"

    def _delete_router_interface(self, ch: Change) -> str:
        c = self.conn(ch.region)
        rid, _, sid = ch.observed_id.partition(":")
        try:
            self.call(lambda: c.network.remove_interface_from_router(rid, subnet=sid), region=ch.region, what=self._what(ch))
        except OpenStackError as exc:
            if exc.status != 404:
                raise
        return ch.observed_id

    def _delete_network(self, ch: Change) -> str:
        c = self.conn(ch.region)
        self.call(lambda: c.network.delete_network(ch.observed_id, ignore_missing=True), region=ch.region, what=self._what(ch))
        return ch.observed_id

    def _delete_subnet(self, ch: Change) -> str:
        c = self.conn(ch.region)
        self.call(lambda: c.network.delete_subnet(ch.observed_id, ignore_missing=True), region=ch.region, what=self._what(ch))
        return ch.observed_id

    def _delete_router(self, ch: Change) -> str:
        c = self.conn(ch.region)
        self.call(lambda: c.network.delete_router(ch.observed_id, ignore_missing=True), region=ch.region, what=self._what(ch))
        return ch.observed_id

    # security groups (+ their ingress rules)
    def _create_security_group(self, ch: Change) -> str:
        c = self.conn(ch.region)
        p = dict(ch.after)
        pid = self._project_id(p["project"])
        g = self.call(lambda: c.network.create_security_group(name=ch.name, project_id=pid, description=p["description"]),
                      region=ch.region, what=self._what(ch),
                      recheck=lambda: self._find(lambda: c.network.security_groups(name=ch.name, project_id=pid), ch.name))
        self._tag(ch, g, p["tags"])
        self._remember(ch.key, g.id)
        self._sync_rules(ch, g.id, pid, set(p["rules"]), fresh=True)
        return g.id  # type: ignore[no-any-return]

    def _update_security_group(self, ch: Change) -> str:
        c = self.conn(ch.region)
        p = dict(ch.after)
        pid = self._project_id(p["project"])
        if "tags" in ch.fields:
            self._update_tags(ch, lambda i: c.network.get_security_group(i))
        if "description" in ch.fields:
            self.call(lambda: c.network.update_security_group(ch.observed_id, description=p["description"]),
                      region=ch.region, what=self._what(ch))
        self._sync_rules(ch, ch.observed_id, pid, set(p["rules"]))
        return ch.observed_id

    def _sync_rules(self, ch: Change, sg_id: str, project_id: str, wanted: set[str], *, fresh: bool = False) -> None:
        """Make the group's ingress IPv4 rules exactly ``wanted``: extra ones removed, missing ones added
        in one bulk POST (atomic in Neutron). A fresh group has no ingress rules, so it is not listed."""
        c = self.conn(ch.region)

        def listed() -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for r in c.network.security_group_rules(security_group_id=sg_id):
                text = rule_string(r)
                if text is not None:
                    out.setdefault(text, []).append(r.id)
            return out

        have = {} if fresh else self.call(listed, region=ch.region, what=f"list rules of {ch.name}")
        for text, ids in sorted(have.items()):
            extra = ids if text not in wanted else ids[1:]
            for rid in extra:
                def remove(rid: str = rid) -> None:
                    c.network.delete_security_group_rule(rid, ignore_missing=True)

                self.call(remove, region=ch.region, what=f"remove rule {text} from {ch.name}")
        missing = sorted(wanted - set(have))
        if not missing:
            return
        data = [{"security_group_id": sg_id, "project_id": project_id, **parse_rule(t)} for t in missing]

        def made() -> list[Any] | None:
            now = listed()
            return [] if all(t in now for t in missing) else None

        def add() -> list[Any]:
            return list(c.network.create_security_group_rules(data))

        try:
            self.call(add, region=ch.region, what=f"add {len(missing)} rule(s) to {ch.name}", recheck=made)
        except OpenStackError as exc:
            if exc.status != 409:  # 409 = a rule exists already (a run racing this one): re-sync one by one
                raise
            self._sync_rules(ch, sg_id, project_id, wanted)

    def _delete_security_group(self, ch: Change) -> str:
        c = self.conn(ch.region)
        self.call(lambda: c.network.delete_security_group(ch.observed_id, ignore_missing=True), region=ch.region,
                  what=self._what(ch))
        return ch.observed_id

    # keypairs and server groups (Nova)
    def _create_keypair(self, ch: Change) -> str:
        c = self.conn(ch.region)
        key = dict(ch.after)["public_key"]

        def present() -> Any | None:
            try:
                return c.compute.get_keypair(ch.name)
            except os_exc.NotFoundException:
                return None

        try:
            self.call(lambda: c.compute.create_keypair(name=ch.name, public_key=key), region=ch.region,
                      what=self._what(ch), recheck=present)
        except OpenStackError as exc:
            if exc.status != 409:
                raise
            kp = present()
            if kp is None or normalise_public_key(kp.public_key or "") != normalise_public_key(key):
                raise
        return ch.name

    def _delete_keypair(self, ch: Change) -> str:
        c = self.conn(ch.region)
        self.call(lambda: c.compute.delete_keypair(ch.name, ignore_missing=True), region=ch.region, what=self._what(ch))
        return ch.name

    def _create_server_group(self, ch: Change) -> str:
        p = dict(ch.after)
        pid = self._project_id(p["project"])
        c = self._scoped_conn(ch.region, pid)
        admin = self.conn(ch.region)

        def present() -> Any | None:
            for g in admin.compute.server_groups(all_projects=True):
                if g.name == ch.name and g.project_id == pid:
                    return g
            return None

        g = self.call(lambda: c.compute.create_server_group(name=ch.name, policy=p["policy"]), region=ch.region,
                      what=self._what(ch), recheck=present)
        self._remember(ch.key, g.id)
        return g.id  # type: ignore[no-any-return]

    def _delete_server_group(self, ch: Change) -> str:
        c = self.conn(ch.region)
        self.call(lambda: c.compute.delete_server_group(ch.observed_id, ignore_missing=True), region=ch.region,
                  what=self._what(ch))
        return ch.observed_id

    # --- migration targets (servers) -------------------------------------------------------------

    def find_project_id(self, name: str) -> str | None:
        """The id of Keystone project ``name`` (None when absent)."""
        c = self.conn(GLOBAL)
        p = self.call(lambda: _idp(c).find_project(name, ignore_missing=True), region=GLOBAL, what=f"find project {name}")
        return str(p.id) if p is not None else None

    def landing_zone(self, region: str, project_id: str, department: str) -> dict[str, Any]:
        """What a migration needs from a department's landing zone in one region: the app network,
        security groups, keypair, image names and flavors, and the project's compute quota and usage
        (one list call each). Missing pieces come back as ``None`` / empty for the preflight to name."""
        c = self.conn(region)
        pname = project_name(department)
        nets = self.call(lambda: list(c.network.networks(project_id=project_id)), region=region, what=f"list networks of {pname}")
        sgs = self.call(lambda: list(c.network.security_groups(project_id=project_id)), region=region,
                        what=f"list security groups of {pname}")
        flavors = self.call(lambda: list(c.compute.flavors(details=True)), region=region, what="list flavors")
        images = self.call(lambda: list(c.image.images()), region=region, what="list images")
        try:
            kp = self.call(lambda: c.compute.get_keypair(pname), region=region, what=f"get keypair {pname}")
        except OpenStackError as exc:
            if exc.status != 404:
                raise
            kp = None
        qs = self.call(lambda: c.compute.get_quota_set(project_id, usage=True), region=region, what=f"get quota of {pname}")
        usage = dict(getattr(qs, "usage", None) or {})
        quota = {k: int(getattr(qs, k) or 0) for k in ("cores", "ram", "instances")}
        return {
            "network": next((n.id for n in nets if n.name == f"{pname}-app"), None),
            "security_groups": [g.name for g in sgs if g.name in (f"{pname}-base", f"{pname}-app")],
            "keypair": kp.name if kp is not None else None,
            "keypair_public_key": normalise_public_key(kp.public_key or "") if kp is not None else None,
            "images": {i.name: i.id for i in images if i.name},
            "flavors": [{"name": f.name, "id": f.id, "vcpus": int(f.vcpus or 0), "ram_mb": int(f.ram or 0)} for f in flavors],
            "quota": quota,
            "in_use": {k: int(usage.get(k, 0) or 0) for k in quota},
        }

    def site_capacity(self, region: str) -> dict[str, dict[str, int]]:
        """Free vCPUs and RAM (MB) per availability zone, from Placement (inventory x allocation ratio
        minus reserved and used) and Nova's aggregates (which hosts form which zone). Admin APIs."""
        c = self.conn(region)
        aggs = self.call(lambda: list(c.compute.aggregates()), region=region, what="list host aggregates")
        zone_of = {h: a.availability_zone for a in aggs if a.availability_zone for h in (a.hosts or [])}
        rps = self.call(lambda: list(c.placement.resource_providers()), region=region, what="list resource providers")
        out: dict[str, dict[str, int]] = {}
        for rp in rps:
            az = zone_of.get(rp.name)
            if az is None:
                continue
            inv = self._placement_get(region, f"/resource_providers/{rp.id}/inventories")["inventories"]
            used = self._placement_get(region, f"/resource_providers/{rp.id}/usages")["usages"]
            slot = out.setdefault(az, {"vcpus": 0, "ram_mb": 0})
            for rc, key in (("VCPU", "vcpus"), ("MEMORY_MB", "ram_mb")):
                if rc in inv:
                    i = inv[rc]
                    slot[key] += int((i["total"] - i.get("reserved", 0)) * i.get("allocation_ratio", 1.0)) - int(used.get(rc, 0))
        return out

    def _placement_get(self, region: str, path: str) -> dict[str, Any]:
        c = self.conn(region)
        doc: dict[str, Any] = self.call(lambda: c.placement.get(path).json(), region=region, what=f"GET placement {path}")
        return doc

    def find_servers(self, region: str, tag: str) -> list[Any]:
        """Servers (any project, any status but deleted) carrying Nova tag ``tag``: one list call."""
        c = self.conn(region)
        return self.call(lambda: list(c.compute.servers(all_projects=True, tags=tag)), region=region,
                         what=f"list servers tagged {tag}")

    def boot_server(self, region: str, project_id: str, *, name: str, image_id: str, flavor_id: str, network_id: str,
                    az: str, key_name: str, metadata: Mapping[str, str], tags: Iterable[str],
                    security_groups: Iterable[str]) -> Any:
        """Create one server in the department project. A create whose response was lost is found by
        name + ownership tag and not re-sent (no duplicate)."""
        c = self._scoped_conn(region, project_id)
        tag_list = sorted(tags)
        admin = self.conn(region)

        def present() -> Any | None:
            for s in admin.compute.servers(all_projects=True, tags=tag_list[0], name=f"^{re.escape(name)}$"):
                if s.name == name and s.project_id == project_id:
                    return s
            return None

        return self.call(lambda: c.compute.create_server(
            name=name, image_id=image_id, flavor_id=flavor_id, networks=[{"uuid": network_id}], availability_zone=az,
            key_name=key_name, metadata=dict(metadata), tags=tag_list,
            security_groups=[{"name": g} for g in security_groups]), region=region, what=f"create server {name}",
            recheck=present)

    def server(self, region: str, server_id: str) -> Any | None:
        c = self.conn(region)
        try:
            return self.call(lambda: c.compute.get_server(server_id), region=region, what=f"get server {server_id}")
        except OpenStackError as exc:
            if exc.status == 404:
                return None
            raise

    def delete_server(self, region: str, server_id: str) -> None:
        c = self.conn(region)
        self.call(lambda: c.compute.delete_server(server_id, ignore_missing=True, force=True), region=region,
                  what=f"delete server {server_id}")

    @staticmethod
    def fixed_ipv4(server: Any) -> str:
        for _net, addrs in sorted((server.addresses or {}).items()):
            for a in addrs:
                if a.get("version") == 4 and a.get("OS-EXT-IPS:type", "fixed") == "fixed":
                    return str(a.get("addr"))
        return ""

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


def service_of(change: Change) -> str:
    """The OpenStack service a change talks to (bounded concurrency is per region and service)."""
    if change.region == GLOBAL:
        return "identity"
    if change.kind in ("quota_compute", "keypair", "server_group"):
        return "compute"
    return "network"


def describe(change: Change) -> str:
    return f"{change.action.value} {change.region}/{change.kind}/{change.name}"


ACTIONS = tuple(a.value for a in Action)
__all__ = ["OpenStackCloud", "RetryPolicy", "new_request_id", "normalise_public_key", "service_of", "project_name"]
