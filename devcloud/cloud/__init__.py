"""devcloud's OpenStack control plane: install, up, down, status."""
