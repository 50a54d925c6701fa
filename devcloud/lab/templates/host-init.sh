#!/bin/sh
# First process of a lab host: runs in the host's netns, in a fresh mount + UTS namespace
# (unshare --mount --uts --propagation private), then becomes its sshd (same PID).
#   $1 hostname   $2 host directory (srv/, root/, etc/, log/ inside)
set -eu
hostname "$1"
d="$2"
mount --bind "$d/srv" /srv
mount --bind "$d/root" /root
mount --bind "$d/etc/ssh_config" /etc/ssh/ssh_config
# service names: the host's own site's DNS server first (devcloud/lab/nameservers.py)
if [ -f "$d/etc/resolv.conf" ]; then mount --bind "$d/etc/resolv.conf" /etc/resolv.conf; fi
# its own name on 127.0.1.1, as on a Debian server (no DNS round trip to find itself)
if [ -f "$d/etc/hosts" ]; then mount --bind "$d/etc/hosts" /etc/hosts; fi
# PostgreSQL's socket directory, so several lab hosts can each run a cluster on :5432
if [ -d /run/postgresql ]; then mount --bind "$d/run-postgresql" /run/postgresql; fi
mkdir -p /run/sshd
exec /usr/sbin/sshd -D -f "$d/etc/sshd_config" -E "$d/log/sshd.log"
