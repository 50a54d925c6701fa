"""Reading the cloud for provisioning: everything govcloud may own or clash with, one list call per
resource type and region (Nova quotas, which have no list API, are the exception: one GET per
managed project), turned into :class:`~govcloud.provision.model.ObservedResource` values."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from govcloud.adapters.openstack.connection import (
    CloudConnection,
    _dept_of,
    _idp,
    _is_ours,
    _tags_of,
    normalise_public_key,
    rule_string,
)
from govcloud.provision.desired import OPERATOR
from govcloud.provision.model import (
    GLOBAL,
    MANAGED_TAG,
    Flavor,
    Observed,
    ObservedResource,
    key_of,
    make_params,
)

COMPUTE_QUOTA_KEYS = ("cores", "ram", "instances", "server_groups", "server_group_members")
NETWORK_QUOTA_KEYS = ("network", "subnet", "router", "security_group", "security_group_rule", "port")


class CloudReader(CloudConnection):
    """``read``: the observed state the provisioning diff compares with the desired one."""

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
        """One region: list everything side by side, then turn each kind into observed resources."""
        got, cquotas = self._list_region(region, projects)
        view = _RegionView(region, projects, got, self._project_ids, self.public_key)
        out = [*view.networks_and_subnets(), *view.routers_and_interfaces(), *view.security_groups(),
               *view.network_quotas(), *view.compute_quotas(cquotas), *view.keypairs(), *view.server_groups()]
        for o in out:
            if o.kind not in ("router_interface", "quota_network", "quota_compute"):
                with self._lock:
                    self._ids.setdefault(o.key, o.id)
        flavors = tuple(Flavor(f.name, int(f.vcpus or 0), int(f.ram or 0)) for f in got["flavors"])
        images = tuple(sorted({i.name for i in got["images"] if i.name}))
        return out, flavors, images

    def _list_region(self, region: str, projects: Mapping[str, Mapping[str, Any]]
                     ) -> tuple[dict[str, list[Any]], dict[str, Any]]:
        """One list call per resource type (six at a time), then the managed projects' compute quotas."""
        c = self.conn(region)
        listers: dict[str, Callable[[], Iterable[Any]]] = {
            "networks": c.network.networks, "subnets": c.network.subnets, "routers": c.network.routers,
            "ports": lambda: c.network.ports(device_owner="network:router_interface"),
            "sgs": c.network.security_groups, "rules": c.network.security_group_rules, "nquotas": c.network.quotas,
            "keypairs": c.compute.keypairs, "sgroups": lambda: c.compute.server_groups(all_projects=True),
            "flavors": c.compute.flavors, "images": c.image.images,
        }
        what = {"ports": "router ports", "sgs": "security groups", "rules": "security group rules",
                "nquotas": "network quotas", "sgroups": "server groups"}
        with ThreadPoolExecutor(max_workers=6) as pool:
            jobs: dict[str, Future[list[Any]]] = {
                name: pool.submit(self.call, lambda fn=fn: list(fn()), region=region, what=f"list {what.get(name, name)}")
                for name, fn in listers.items()}
            got = {k: f.result() for k, f in jobs.items()}
            cquota_jobs = {
                str(p["name"]): pool.submit(self.call, lambda pid=p["id"]: c.compute.get_quota_set(pid), region=region,
                                            what=f"get compute quota of {p['name']}")
                for p in projects.values() if p["managed"]
            }
            cquotas = {name: f.result() for name, f in cquota_jobs.items()}
        return got, cquotas

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


class _RegionView:
    """The listings of one region turned into observed resources, one kind (or pair of kinds) at a time."""

    def __init__(self, region: str, projects: Mapping[str, Mapping[str, Any]], got: Mapping[str, list[Any]],
                 project_ids: Mapping[str, str], public_key: str) -> None:
        self.region = region
        self.projects = projects
        self.got = got
        self.project_ids = project_ids
        self.public_key = public_key
        self.net_names: dict[str, str] = {}  # id -> name, filled by networks_and_subnets
        self.sub_names: dict[str, str] = {}

    def pname(self, pid: str | None) -> str:
        p = self.projects.get(pid or "")
        return str(p["name"]) if p else (pid or "")

    def pmanaged(self, pid: str | None) -> tuple[bool, str]:
        p = self.projects.get(pid or "")
        return (bool(p["managed"]), str(p["department"])) if p else (False, "")

    def owner(self, name: str | None, tags: list[str], pid: str | None) -> tuple[bool, str]:
        """Tagged: ours. Untagged but named ``gov-<dept>...`` inside our managed project ``gov-<dept>``:
        ours too, made by a run that stopped before tagging it (the next apply tags it)."""
        if MANAGED_TAG in tags:
            return True, _dept_of(tags)
        managed, dept = self.pmanaged(pid)
        if managed and not tags and (name or "").startswith(f"gov-{dept}"):
            return True, dept
        return False, ""

    def networks_and_subnets(self) -> list[ObservedResource]:
        region, out = self.region, []
        for n in self.got["networks"]:
            self.net_names[n.id] = n.name
            tags = _tags_of(n)
            if not _is_ours(n.name, tags):
                continue
            out.append(ObservedResource("network", region, n.name, n.id, *self.owner(n.name, tags, n.project_id),
                                        make_params({"project": self.pname(n.project_id), "tags": sorted(tags)})))
        for s in self.got["subnets"]:
            self.sub_names[s.id] = s.name
            tags = _tags_of(s)
            if not _is_ours(s.name, tags):
                continue
            nname = self.net_names.get(s.network_id, s.network_id)
            out.append(ObservedResource("subnet", region, s.name, s.id, *self.owner(s.name, tags, s.project_id), make_params({
                "project": self.pname(s.project_id), "tags": sorted(tags), "network": nname, "cidr": s.cidr,
                "gateway_ip": s.gateway_ip, "enable_dhcp": bool(s.is_dhcp_enabled), "ip_version": s.ip_version}),
                (key_of(region, "network", nname),)))
        return out

    def routers_and_interfaces(self) -> list[ObservedResource]:
        """Routers, and their interfaces on subnets (read after ``networks_and_subnets``: it names them)."""
        region, out = self.region, []
        routers: dict[str, tuple[str, bool, str]] = {}
        for r in self.got["routers"]:
            tags = _tags_of(r)
            routers[r.id] = (r.name, *self.owner(r.name, tags, r.project_id))
            if not _is_ours(r.name, tags):
                continue
            out.append(ObservedResource("router", region, r.name, r.id, *self.owner(r.name, tags, r.project_id),
                                        make_params({"project": self.pname(r.project_id), "tags": sorted(tags)})))
        for port in self.got["ports"]:
            router = routers.get(port.device_id or "")
            if router is None:
                continue
            for ip in port.fixed_ips or []:
                sname = self.sub_names.get(ip.get("subnet_id", ""), "")
                if not sname:
                    continue
                out.append(ObservedResource("router_interface", region, sname, f"{port.device_id}:{ip['subnet_id']}",
                                            router[1], router[2], make_params({"router": router[0], "subnet": sname}),
                                            (key_of(region, "router", router[0]), key_of(region, "subnet", sname))))
        return out

    def security_groups(self) -> list[ObservedResource]:
        rules_by_sg: dict[str, list[str]] = {}
        for rule in self.got["rules"]:
            text = rule_string(rule)
            if text is not None:
                rules_by_sg.setdefault(rule.security_group_id, []).append(text)
        out = []
        for g in self.got["sgs"]:
            tags = _tags_of(g)
            if not _is_ours(g.name, tags):
                continue
            out.append(ObservedResource("security_group", self.region, g.name, g.id, *self.owner(g.name, tags, g.project_id),
                                        make_params({"project": self.pname(g.project_id), "tags": sorted(tags),
                                                     "description": g.description or "",
                                                     "rules": sorted(set(rules_by_sg.get(g.id, [])))})))
        return out

    def network_quotas(self) -> list[ObservedResource]:
        names = {"network": "networks", "subnet": "subnets", "router": "routers", "security_group": "security_groups",
                 "security_group_rule": "security_group_rules", "port": "ports"}
        out = []
        for q in self.got["nquotas"]:
            pid = getattr(q, "project_id", None) or getattr(q, "id", None)
            managed, dept = self.pmanaged(pid)
            if not managed:
                continue
            vals = {k: getattr(q, names[k], None) for k in NETWORK_QUOTA_KEYS}
            out.append(ObservedResource("quota_network", self.region, self.pname(pid), str(pid), True, dept,
                                        make_params(vals), (key_of(GLOBAL, "project", self.pname(pid)),)))
        seen = {o.name for o in out}
        for p in self.projects.values():
            if p["managed"] and p["name"] not in seen:  # Neutron lists only projects with non-default quotas
                out.append(ObservedResource("quota_network", self.region, str(p["name"]), str(p["id"]), True,
                                            str(p["department"]), (), (key_of(GLOBAL, "project", str(p["name"])),)))
        return out

    def compute_quotas(self, cquotas: Mapping[str, Any]) -> list[ObservedResource]:
        out = []
        for name, q in cquotas.items():
            pid = self.project_ids.get(name, "")
            managed, dept = self.pmanaged(pid)
            vals = {k: getattr(q, k, None) for k in COMPUTE_QUOTA_KEYS}
            out.append(ObservedResource("quota_compute", self.region, name, pid, managed, dept, make_params(vals),
                                        (key_of(GLOBAL, "project", name),)))
        return out

    def keypairs(self) -> list[ObservedResource]:
        out = []
        for kp in self.got["keypairs"]:
            if not (kp.name or "").startswith("gov-"):
                continue
            ours = bool(self.public_key) and normalise_public_key(kp.public_key or "") == self.public_key
            out.append(ObservedResource("keypair", self.region, kp.name, kp.name, ours, kp.name[4:] if ours else "",
                                        make_params({"public_key": normalise_public_key(kp.public_key or "")})))
        return out

    def server_groups(self) -> list[ObservedResource]:
        out = []
        for sg in self.got["sgroups"]:
            if not (sg.name or "").startswith("gov-"):
                continue
            managed, dept = self.pmanaged(sg.project_id)
            policy = getattr(sg, "policy", None) or (list(getattr(sg, "policies", None) or [None])[0])
            out.append(ObservedResource("server_group", self.region, sg.name, sg.id, managed, dept,
                                        make_params({"project": self.pname(sg.project_id), "policy": policy}),
                                        (key_of(GLOBAL, "project", self.pname(sg.project_id)),)))
        return out
