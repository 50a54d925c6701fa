"""Day-1 objects of one region: AZ host aggregates, flavors, a small image, the external network ``public``.

Runs inside the OpenStack venv: ``python -m devcloud.cloud.day1 RegionGZ``, password in ``DEVCLOUD_PASSWORD``.
"""

from __future__ import annotations

import sys
import time

import openstack

from devcloud.cloud.register import connect
from devcloud.cloud.topology import region_by_name

FLAVORS = [("m1.tiny", 1, 512, 1), ("m1.small", 1, 2048, 20), ("m1.medium", 2, 4096, 40), ("m1.large", 4, 8192, 80)]
# the government cloud's general-purpose family (1 vCPU : 4 GB), sized for the example's systems
FLAVORS += [(f"gov.{c}c{4 * c}g", c, 4 * c * 1024, 40 * c) for c in (2, 4, 8, 16, 32, 64)]
IMAGE = "fake-image"
PUBLIC_CIDR, PUBLIC_GW, PUBLIC_POOL = "172.24.4.0/24", "172.24.4.1", ("172.24.4.10", "172.24.4.250")


def main(region_name: str, timeout: float = 240) -> None:
    region = region_by_name(region_name)
    t0 = time.monotonic()
    deadline = t0 + timeout
    conn = connect(region.name)
    c = conn.compute
    for name, vcpus, ram, disk in FLAVORS:
        if not c.find_flavor(name):
            c.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk)
    if not conn.image.find_image(IMAGE):
        # 1 MiB of zeros, raw: nova's fake driver never reads it
        conn.image.create_image(name=IMAGE, disk_format="raw", container_format="bare", visibility="public",
                                data=b"\0" * 1048576)
    if not conn.network.find_network("public"):
        # a DB object only: there is no data plane (and 172.24.4.0/24 is never configured on any interface)
        ext = conn.network.create_network(name="public", is_router_external=True, is_shared=False,
                                          provider_network_type="flat", provider_physical_network="public")
        conn.network.create_subnet(network_id=ext.id, name="public-subnet", ip_version=4, cidr=PUBLIC_CIDR,
                                   gateway_ip=PUBLIC_GW, is_dhcp_enabled=False,
                                   allocation_pools=[{"start": PUBLIC_POOL[0], "end": PUBLIC_POOL[1]}])
    # computes up and mapped to a cell (the scheduler's periodic discover_hosts), then one aggregate per AZ
    want = {cmp.host for cmp in region.computes}
    while True:
        up = {s.host for s in c.services(binary="nova-compute") if s.state == "up"}
        hyp = {h.name for h in c.hypervisors()}
        if want <= up and want <= hyp:
            break
        if time.monotonic() > deadline:
            sys.exit(f"{region.name}: computes not ready: up={sorted(up)} hypervisors={sorted(hyp)} want={sorted(want)}")
        time.sleep(0.5)
    for cmp in region.computes:
        name = f"dc-{cmp.az}"
        ag = c.find_aggregate(name) or c.create_aggregate(name=name, availability_zone=cmp.az)
        while cmp.host not in (ag.hosts or []):
            try:
                ag = c.add_host_to_aggregate(ag, cmp.host)
            except openstack.exceptions.NotFoundException:  # host mapping not there yet
                if time.monotonic() > deadline:
                    sys.exit(f"{region.name}: could not add {cmp.host} to aggregate {name}")
                time.sleep(0.5)
    azs = sorted(z.name for z in c.availability_zones())
    print(f"{region.name}: computes {sorted(want)} up, AZs {azs}, flavors {[f.name for f in c.flavors()]}, "
          f"image {IMAGE}, external net 'public' ({time.monotonic() - t0:.1f}s)")


if __name__ == "__main__":
    main(sys.argv[1])
