"""devcloud: a real two-region OpenStack control plane and a three-site SSH lab on one machine.

Used by govcloud's demo and integration tests. Everything binds to loopback or lives inside
network namespaces devcloud created; every process it starts is recorded and stopped by PID.
"""
