"""The only package that talks to OpenStack (openstacksdk's typed proxy layer).

- ``connection``: one connection per region, the retrying ``call`` and the evidence errors keep;
- ``reading``: the cloud as provisioning observes it (one list call per resource type and region);
- ``writing``: one provisioning change at a time, by an explicit (action, kind) handler table;
- ``servers``: the migration's side (landing zones, site capacity, servers), typed for the engine's
  ``CloudPort``.

:class:`OpenStackCloud` is all of them over one set of connections, so a command opens each region
once however many of these it uses.
"""

from __future__ import annotations

import time  # noqa: F401 - tests patch ``govcloud.adapters.openstack.time.sleep`` (the retry backoff)

from govcloud.adapters.openstack.connection import (
    RetryPolicy,
    Stats,
    new_request_id,
    normalise_public_key,
    parse_rule,
    rule_string,
)
from govcloud.adapters.openstack.reading import CloudReader
from govcloud.adapters.openstack.servers import ServerCalls, fixed_ipv4
from govcloud.adapters.openstack.writing import ChangeWriter, describe, service_of
from govcloud.provision.desired import project_name


class OpenStackCloud(ServerCalls, ChangeWriter, CloudReader):
    """Connections to every region of a topology, with reads, applies, server calls, retries and evidence."""


__all__ = ["OpenStackCloud", "RetryPolicy", "Stats", "describe", "fixed_ipv4", "new_request_id", "normalise_public_key",
           "parse_rule", "project_name", "rule_string", "service_of"]
