"""Saved provisioning plans survive the JSON round trip exactly (apply FILE relies on it)."""

from __future__ import annotations

import json

from govcloud.provision.model import ObservedResource, Resource, make_params


def test_resource_round_trip() -> None:
    r = Resource("network", "gz", "hrss", "gov-hrss-app", make_params({"cidr": "10.244.0.0/24", "tags": ["a", "b"]}),
                 ("global/project/gov-hrss",))
    assert Resource.from_dict(json.loads(json.dumps(r.as_dict()))) == r


def test_observed_round_trip_keeps_ownership() -> None:
    for managed in (True, False):
        o = ObservedResource("subnet", "st", "gov-mca-data", "id-1", managed, "mca" if managed else "",
                             make_params({"allocation": [1, {"a": 2}]}), ("st/network/gov-mca-data",))
        back = ObservedResource.from_dict(json.loads(json.dumps(o.as_dict())))
        assert back == o and back.managed is managed
