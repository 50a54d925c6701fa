"""Adapters: the only code that talks to the world (OpenStack, Ansible, SSH/rsync, journal, metrics)."""
