"""Applying provisioning changes: one :class:`~govcloud.provision.model.Change` at a time (the service
runs them concurrently), each through a handler named in :data:`HANDLERS` by (action, kind)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import openstack.exceptions as os_exc

from govcloud.adapters.openstack.connection import (
    CloudConnection,
    _idp,
    normalise_public_key,
    parse_rule,
    rule_string,
)
from govcloud.errors import GovcloudError, OpenStackError
from govcloud.provision.model import GLOBAL, Change, key_of


class ChangeWriter(CloudConnection):
    """Creates, updates and deletes of the objects a landing zone is made of."""

    def apply(self, change: Change) -> str:
        """Make one change; returns what it did in a few words. Raises OpenStackError."""
        handler = HANDLERS.get((change.action.value, change.kind))
        if handler is None:
            raise GovcloudError(f"internal: cannot {change.action.value} a {change.kind}")
        return handler(self, change)

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


    def _update_quota_network(self, ch: Change) -> str:
        c = self.conn(ch.region)
        pid = self._project_id(ch.name)
        names = {"network": "networks", "subnet": "subnets", "router": "routers", "security_group": "security_groups",
                 "security_group_rule": "security_group_rules", "port": "ports"}
        vals = {names[k]: v for k, v in ch.after}
        self.call(lambda: c.network.update_quota(pid, **vals), region=ch.region, what=self._what(ch))
        return pid


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


Handler = Callable[[ChangeWriter, Change], str]
#: the handler of each (action, kind) a provisioning plan can hold
HANDLERS: dict[tuple[str, str], Handler] = {
    ("create", "project"): ChangeWriter._create_project,
    ("update", "project"): ChangeWriter._update_project,
    ("delete", "project"): ChangeWriter._delete_project,
    ("create", "role_assignment"): ChangeWriter._create_role_assignment,
    ("update", "quota_compute"): ChangeWriter._update_quota_compute,
    ("update", "quota_network"): ChangeWriter._update_quota_network,
    ("create", "network"): ChangeWriter._create_network,
    ("create", "subnet"): ChangeWriter._create_subnet,
    ("create", "router"): ChangeWriter._create_router,
    ("update", "network"): ChangeWriter._update_network,
    ("update", "router"): ChangeWriter._update_router,
    ("update", "subnet"): ChangeWriter._update_subnet,
    ("create", "router_interface"): ChangeWriter._create_router_interface,
    ("delete", "router_interface"): ChangeWriter._delete_router_interface,
    ("delete", "network"): ChangeWriter._delete_network,
    ("delete", "subnet"): ChangeWriter._delete_subnet,
    ("delete", "router"): ChangeWriter._delete_router,
    ("create", "security_group"): ChangeWriter._create_security_group,
    ("update", "security_group"): ChangeWriter._update_security_group,
    ("delete", "security_group"): ChangeWriter._delete_security_group,
    ("create", "keypair"): ChangeWriter._create_keypair,
    ("delete", "keypair"): ChangeWriter._delete_keypair,
    ("create", "server_group"): ChangeWriter._create_server_group,
    ("delete", "server_group"): ChangeWriter._delete_server_group,
    ("create", "quota_compute"): ChangeWriter._update_quota_compute,  # the same call creates or updates
    ("create", "quota_network"): ChangeWriter._update_quota_network,  # the same call creates or updates
}


def service_of(change: Change) -> str:
    """The OpenStack service a change talks to (bounded concurrency is per region and service)."""
    if change.region == GLOBAL:
        return "identity"
    if change.kind in ("quota_compute", "keypair", "server_group"):
        return "compute"
    return "network"


def describe(change: Change) -> str:
    return f"{change.action.value} {change.region}/{change.kind}/{change.name}"


