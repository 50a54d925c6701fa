"""RabbitMQ from Debian's package in the foreground, with its own epmd: loopback only, mnesia under our state dir."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
from pathlib import Path

from devcloud.cloud import render
from devcloud.cloud.install import RABBITMQ_SERVER
from devcloud.cloud.layout import CloudLayout
from devcloud.errors import DevcloudError
from devcloud.procs import wait_for
from devcloud.cloud.topology import EPMD_PORT, RABBIT_DIST_PORT, RABBIT_PORT, REGIONS

USER = "os"


def _password_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def write_config(lay: CloudLayout, password: str) -> None:
    etc = lay.etc / "rabbitmq"
    etc.mkdir(parents=True, exist_ok=True)
    definitions = {
        "users": [
            {"name": USER, "password_hash": _password_hash(password),
             "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"]}
        ],
        "vhosts": [{"name": r.short} for r in REGIONS],
        "permissions": [
            {"user": USER, "vhost": r.short, "configure": ".*", "write": ".*", "read": ".*"} for r in REGIONS
        ],
    }
    d = etc / "definitions.json"
    d.write_text(json.dumps(definitions, indent=1))
    d.chmod(0o600)
    render.write(etc / "rabbitmq.conf", "rabbitmq.conf", port=RABBIT_PORT, definitions=d)
    (etc / "enabled_plugins").write_text("[].\n")
    (etc / "rabbitmq-env.conf").write_text("")


def env(lay: CloudLayout) -> dict[str, str]:
    """Everything RabbitMQ and Erlang would otherwise take from /etc, /var/lib and 0.0.0.0."""
    etc, state = lay.etc / "rabbitmq", lay.state / "rabbitmq"
    (state / "home").mkdir(parents=True, exist_ok=True)
    (lay.log / "rabbitmq").mkdir(parents=True, exist_ok=True)
    loopback_dist = "-kernel inet_dist_use_interface {127,0,0,1}"
    return {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(state / "home"),
        "RABBITMQ_NODENAME": "rabbit@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(RABBIT_PORT),
        "RABBITMQ_DIST_PORT": str(RABBIT_DIST_PORT),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_EPMD_PORT": str(EPMD_PORT),
        "RABBITMQ_CONF_ENV_FILE": str(etc / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(etc / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(etc / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(state / "mnesia"),
        "RABBITMQ_LOG_BASE": str(lay.log / "rabbitmq"),
        "RABBITMQ_PID_FILE": str(lay.run / "rabbitmq.pidfile"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": loopback_dist,
        "RABBITMQ_CTL_ERL_ARGS": loopback_dist,
    }


def start(lay: CloudLayout) -> None:
    """Our own epmd first (bound to loopback), so the broker does not spawn a system-wide one."""
    reg, e = lay.registry(), env(lay)
    reg.start("epmd", ["/usr/bin/epmd", "-address", "127.0.0.1", "-port", str(EPMD_PORT)], log=lay.log / "epmd.out", env=e)

    def epmd_listens() -> bool:
        if not reg.alive("epmd"):
            raise DevcloudError("epmd exited during start", lay.log / "epmd.out")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", EPMD_PORT)) == 0

    wait_for(epmd_listens, timeout=20, interval=0.05, what="epmd")
    # the foreground wrapper: SIGTERM to its process group stops the broker cleanly
    reg.start("rabbitmq", [str(RABBITMQ_SERVER)], log=lay.log / "rabbitmq.out", env=e)


def log_file(lay: CloudLayout) -> Path:
    return lay.log / "rabbitmq.out"
