"""govcloud: run a provincial government cloud from YAML inventories.

The package is layered: a pure core (``model``, ``inventory``, ``planning``) with no I/O beyond reading
inventory files, services on top, adapters (OpenStack, Ansible, SSH, journal, metrics) that talk to the
world, and thin click commands in ``cli``.
"""

__version__ = "0.1.0"
