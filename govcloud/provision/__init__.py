"""Pure landing-zone provisioning: desired state from the inventories, diff against what the cloud has.

Nothing here talks to OpenStack: the adapter (``govcloud.adapters.openstack``) reads the cloud into
:class:`~govcloud.provision.model.Observed` and executes a :class:`~govcloud.provision.model.ProvisionPlan`.
"""

from govcloud.provision.desired import DesiredOptions, build_desired
from govcloud.provision.diff import diff
from govcloud.provision.model import (
    MANAGED_TAG,
    Action,
    Change,
    Desired,
    Finding,
    Observed,
    ObservedResource,
    ProvisionPlan,
    Resource,
)

__all__ = [
    "MANAGED_TAG",
    "Action",
    "Change",
    "Desired",
    "DesiredOptions",
    "Finding",
    "Observed",
    "ObservedResource",
    "ProvisionPlan",
    "Resource",
    "build_desired",
    "diff",
]
