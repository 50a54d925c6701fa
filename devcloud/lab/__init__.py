"""devcloud's site lab: network-namespace datacentres (gz-a, gz-b, st-a, legacy) with SSH hosts.

See README.md in this directory. Entry points: :class:`devcloud.lab.api.Lab` and the click group
:data:`devcloud.lab.cli.lab` (``devcloud lab up|down|cut|restore|legacy|reconcile|status``).
"""

from __future__ import annotations

from devcloud.lab.api import Lab
from devcloud.lab.net import DATACENTRES, LAB_NET, SITES, LabError

__all__ = ["Lab", "LabError", "SITES", "DATACENTRES", "LAB_NET"]
