"""The migration's calls: landing zones, site capacity, and the servers it boots, finds and deletes.

What crosses into the engine is typed (``govcloud.migrate.zones``), never an SDK object: this class
is the engine's ``CloudPort`` (``govcloud.adapters.ports``)."""

from __future__ import annotations

import re
import time
from typing import Any

from govcloud.adapters.openstack.connection import (
    CloudConnection,
    _idp,
    normalise_public_key,
)
from govcloud.errors import OpenStackError
from govcloud.migrate.zones import (
    BootRequest,
    FlavorRef,
    LandingZone,
    QuotaSet,
    ServerInfo,
    SiteCapacity,
)
from govcloud.provision.desired import project_name
from govcloud.provision.model import GLOBAL

QUOTA_KEYS = ("cores", "ram", "instances")
#: how long a create whose response was lost is looked for before it is sent again (2x the API timeout)
CREATE_SETTLE_SECONDS = 60.0


class ServerCalls(CloudConnection):
    """Landing zones and servers for the migration engine."""

    def find_project_id(self, name: str) -> str | None:
        """The id of Keystone project ``name`` (None when absent)."""
        c = self.conn(GLOBAL)
        p = self.call(lambda: _idp(c).find_project(name, ignore_missing=True), region=GLOBAL, what=f"find project {name}")
        return str(p.id) if p is not None else None

    def landing_zone(self, region: str, project_id: str, department: str) -> LandingZone:
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
        return LandingZone(
            project_id=project_id,
            network_id=next((str(n.id) for n in nets if n.name == f"{pname}-app"), None),
            security_groups=tuple(str(g.name) for g in sgs if g.name in (f"{pname}-base", f"{pname}-app")),
            keypair=str(kp.name) if kp is not None else None,
            keypair_public_key=normalise_public_key(kp.public_key or "") if kp is not None else None,
            images={str(i.name): str(i.id) for i in images if i.name},
            flavors=tuple(FlavorRef(str(f.name), str(f.id), int(f.vcpus or 0), int(f.ram or 0)) for f in flavors),
            quota=QuotaSet(*(int(getattr(qs, k) or 0) for k in QUOTA_KEYS)),
            in_use=QuotaSet(*(int(usage.get(k, 0) or 0) for k in QUOTA_KEYS)),
        )

    def site_capacity(self, region: str) -> dict[str, SiteCapacity]:
        """Free vCPUs and RAM (MB) per availability zone, from Placement (inventory x allocation ratio
        minus reserved and used) and Nova's aggregates (which hosts form which zone). Admin APIs."""
        c = self.conn(region)
        aggs = self.call(lambda: list(c.compute.aggregates()), region=region, what="list host aggregates")
        zone_of = {h: a.availability_zone for a in aggs if a.availability_zone for h in (a.hosts or [])}
        rps = self.call(lambda: list(c.placement.resource_providers()), region=region, what="list resource providers")
        free: dict[str, dict[str, int]] = {}
        for rp in rps:
            az = zone_of.get(rp.name)
            if az is None:
                continue
            inv = self._placement_get(region, f"/resource_providers/{rp.id}/inventories")["inventories"]
            used = self._placement_get(region, f"/resource_providers/{rp.id}/usages")["usages"]
            slot = free.setdefault(az, {"vcpus": 0, "ram_mb": 0})
            for rc, key in (("VCPU", "vcpus"), ("MEMORY_MB", "ram_mb")):
                if rc in inv:
                    i = inv[rc]
                    slot[key] += int((i["total"] - i.get("reserved", 0)) * i.get("allocation_ratio", 1.0)) - int(used.get(rc, 0))
        return {az: SiteCapacity(v["vcpus"], v["ram_mb"]) for az, v in free.items()}

    def _placement_get(self, region: str, path: str) -> dict[str, Any]:
        c = self.conn(region)
        doc: dict[str, Any] = self.call(lambda: c.placement.get(path).json(), region=region, what=f"GET placement {path}")
        return doc

    def find_servers(self, region: str, tag: str) -> list[ServerInfo]:
        """Servers (any project, any status but deleted) carrying Nova tag ``tag``: one list call."""
        c = self.conn(region)
        found = self.call(lambda: list(c.compute.servers(all_projects=True, tags=tag)), region=region,
                          what=f"list servers tagged {tag}")
        return [server_info(s) for s in found]

    def boot_server(self, region: str, project_id: str, request: BootRequest) -> ServerInfo:
        """Create one server in the department project. A create whose response was lost is found by
        name + ownership tag and not re-sent (no duplicate)."""
        c = self._scoped_conn(region, project_id)
        tag_list = sorted(request.tags)
        admin = self.conn(region)
        name = request.name

        def listed() -> Any | None:
            for s in admin.compute.servers(all_projects=True, tags=tag_list[0], name=f"^{re.escape(name)}$"):
                if s.name == name and s.project_id == project_id:
                    return s
            return None

        def present() -> Any | None:
            # A create whose response was lost may still be running in nova-api (POSTs of 40 s were seen on
            # a loaded devcloud, past the client's timeout): look for it until it must have finished.
            deadline = time.monotonic() + CREATE_SETTLE_SECONDS
            while True:
                found = listed()
                if found is not None or time.monotonic() > deadline:
                    return found
                time.sleep(2.0)  # polling Nova for the lost create, with a deadline

        made = self.call(lambda: c.compute.create_server(
            name=name, image_id=request.image_id, flavor_id=request.flavor_id, networks=[{"uuid": request.network_id}],
            availability_zone=request.availability_zone, key_name=request.key_name, metadata=dict(request.metadata),
            tags=tag_list, security_groups=[{"name": g} for g in request.security_groups]), region=region,
            what=f"create server {name}", recheck=present)
        return server_info(made)

    def delete_server(self, region: str, server_id: str) -> None:
        c = self.conn(region)
        self.call(lambda: c.compute.delete_server(server_id, ignore_missing=True, force=True), region=region,
                  what=f"delete server {server_id}")


def fixed_ipv4(server: Any) -> str:
    """The first fixed IPv4 address of an SDK server ("" when it has none yet)."""
    for _net, addrs in sorted((server.addresses or {}).items()):
        for a in addrs:
            if a.get("version") == 4 and a.get("OS-EXT-IPS:type", "fixed") == "fixed":
                return str(a.get("addr"))
    return ""


def server_info(server: Any) -> ServerInfo:
    fault = getattr(server, "fault", None) or {}
    return ServerInfo(id=str(server.id), name=str(server.name or ""), status=str(server.status or ""),
                      availability_zone=str(server.availability_zone or ""), ipv4=fixed_ipv4(server),
                      tags=tuple(server.tags or ()), fault=str(fault.get("message", "") if isinstance(fault, dict) else ""))
