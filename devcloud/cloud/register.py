"""Service project/users and the two-region catalog in Keystone (idempotent).

Runs inside the OpenStack venv (it has openstacksdk): ``python -m devcloud.cloud.register``,
password in ``DEVCLOUD_PASSWORD``.
"""

from __future__ import annotations

import os
from typing import Any

import openstack

from devcloud.cloud.topology import API_SERVICES, KEYSTONE_URL, REGIONS


def connect(region: str) -> openstack.connection.Connection:
    return openstack.connect(
        auth_url=KEYSTONE_URL, username="admin", password=os.environ["DEVCLOUD_PASSWORD"], project_name="admin",
        user_domain_name="Default", project_domain_name="Default", region_name=region,
        load_envvars=False, load_yaml_config=False,
    )


def main() -> None:
    pw = os.environ["DEVCLOUD_PASSWORD"]
    idc: Any = connect(REGIONS[0].name).identity  # v3 proxy; the sdk types it as v2|v3
    for r in REGIONS:
        if not idc.find_region(r.name):
            idc.create_region(id=r.name, description=r.name)
    # keystone itself: bootstrap registered it in the first region only
    ks = idc.find_service("keystone")
    have = {(e.region_id, e.interface) for e in idc.endpoints(service_id=ks.id)}
    for r in REGIONS:
        for itf in ("public", "internal", "admin"):
            if (r.name, itf) not in have:
                idc.create_endpoint(service_id=ks.id, interface=itf, url=KEYSTONE_URL + "/", region_id=r.name)
    proj = idc.find_project("service", domain_id="default") or idc.create_project(name="service", domain_id="default")
    roles = [idc.find_role("admin"), idc.find_role("service")]
    for name, stype, port, path in API_SERVICES:
        user = idc.find_user(name, domain_id="default") or idc.create_user(name=name, password=pw, domain_id="default")
        for role in roles:
            idc.assign_project_role_to_user(proj, user, role)
        svc = idc.find_service(name) or idc.create_service(name=name, type=stype)
        have = {(e.region_id, e.interface) for e in idc.endpoints(service_id=svc.id)}
        for r in REGIONS:
            url = f"http://127.0.0.1:{r.port(port)}{path}"
            for itf in ("public", "internal", "admin"):
                if (r.name, itf) not in have:
                    idc.create_endpoint(service_id=svc.id, interface=itf, url=url, region_id=r.name)
    for e in idc.endpoints(interface="public"):
        print(e.region_id, idc.get_service(e.service_id).type, e.url)


if __name__ == "__main__":
    main()
