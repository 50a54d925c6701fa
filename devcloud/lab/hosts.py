"""Lab hosts: a netns with its own sshd, host key, hostname (UTS), /srv and /root (mount ns).

Files of host ``key`` live under ``<lab>/hosts/<key>/``::

    etc/ssh_host_ed25519_key(.pub)  etc/sshd_config  etc/ssh_config
    srv/    -> the host's /srv (data root; the sample app lives in /srv/app)
    root/   -> the host's /root (root/.ssh/authorized_keys, per-migration keys, ~/.ansible)
    log/sshd.log

The controller's key pair is ``<lab>/controller/id_ed25519`` and the generated known_hosts is
``<lab>/known_hosts`` (one line ``hostname,ip ssh-ed25519 ...`` per host). Inside every host,
``/etc/ssh/ssh_config`` points at that same known_hosts with ``StrictHostKeyChecking yes``, so
host-to-host ``ssh``/``rsync`` checks keys strictly too.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from string import Template

from devcloud.lab import net
from devcloud.lab.nameservers import resolv_conf
from devcloud.lab.state import HostSpec
from devcloud.procs import ProcessRegistry, kill_pids

TEMPLATES = Path(__file__).parent / "templates"


class LabFiles:
    """Where the lab's files are (derived from DevcloudPaths.lab)."""

    def __init__(self, lab_dir: Path) -> None:
        self.root = lab_dir

    @property
    def hosts(self) -> Path:
        return self.root / "hosts"

    def host(self, key: str) -> Path:
        return self.hosts / key

    @property
    def controller_key(self) -> Path:
        return self.root / "controller" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def control_dir(self) -> Path:
        """Put ssh ControlPath sockets here (ANSIBLE_SSH_CONTROL_PATH_DIR): `down` closes them."""
        return self.root / "cp"

    @property
    def run(self) -> Path:
        return self.root / "run"

    def registry(self) -> ProcessRegistry:
        return ProcessRegistry(self.run)


def _render(name: str, dest: Path, **values: str) -> None:
    dest.write_text(Template((TEMPLATES / name).read_text()).substitute(values))


def keygen(path: Path, comment: str) -> str:
    """An ed25519 key pair at ``path`` (kept if present); returns the public key line."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        net.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return path.with_suffix(".pub").read_text().strip()


def ensure_controller_key(files: LabFiles) -> str:
    files.controller_key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return keygen(files.controller_key, "govcloud-lab-controller")


def host_public_key(files: LabFiles, key: str) -> str:
    """``ssh-ed25519 AAAA...`` of the host (no comment)."""
    parts = (files.host(key) / "etc" / "ssh_host_ed25519_key.pub").read_text().split()
    return f"{parts[0]} {parts[1]}"


def write_known_hosts(files: LabFiles, hosts: Iterable[HostSpec]) -> None:
    """Regenerate known_hosts from the hosts' keys (atomic rename: readers never see half a file)."""
    lines = []
    for h in sorted(hosts, key=lambda x: x.key):
        try:
            lines.append(f"{h.hostname},{h.ip} {host_public_key(files, h.key)}\n")
        except OSError:
            continue
    files.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    tmp = files.known_hosts.with_suffix(".tmp")
    tmp.write_text("".join(lines))
    os.replace(tmp, files.known_hosts)


def _sshd_listening(pid: int, port: int = 22) -> bool:
    """Whether the netns of ``pid`` has a TCP listener on ``port`` (read from its /proc, no exec)."""
    try:
        rows = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    want = f":{port:04X}"
    return any(r.split()[1].endswith(want) and r.split()[3] == "0A" for r in rows)


def prepare_host_dir(files: LabFiles, h: HostSpec) -> Path:
    d = files.host(h.key)
    for sub in ("etc", "srv", "root/.ssh", "log", "run-postgresql"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(d / "root", 0o700)
    os.chmod(d / "root" / ".ssh", 0o700)
    try:
        pg = pwd.getpwnam("postgres")
        os.chown(d / "run-postgresql", pg.pw_uid, pg.pw_gid)
        os.chmod(d / "run-postgresql", 0o2775)
    except KeyError:
        pass
    keygen(d / "etc" / "ssh_host_ed25519_key", h.hostname)
    ak = d / "root" / ".ssh" / "authorized_keys"
    ak.write_text("".join(f"{k.strip()}\n" for k in h.authorized_keys))
    os.chmod(ak, 0o600)
    _render("sshd_config", d / "etc" / "sshd_config", hostdir=str(d))
    _render("ssh_config", d / "etc" / "ssh_config", known_hosts=str(files.known_hosts))
    (d / "etc" / "resolv.conf").write_text(resolv_conf(h.site))  # bind-mounted by host-init.sh
    # its own name resolves locally, as Debian's installer and cloud-init write it: looking it up in DNS
    # instead (Ansible's fact gathering does, by getfqdn) waited 10 s whenever the lab's DNS was down
    (d / "etc" / "hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{h.hostname}\n"
                                     "::1\tlocalhost ip6-localhost ip6-loopback\n")  # bind-mounted too
    return d


def start_host(files: LabFiles, h: HostSpec, *, timeout: float = 15.0) -> int:
    """Create the host's namespace, link and sshd; wait until sshd listens. Returns the sshd PID."""
    s = net.site(h.site)
    ns = net.host_ns(h.key)
    d = prepare_host_dir(files, h)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    net.run(["/usr/sbin/sshd", "-t", "-f", str(d / "etc" / "sshd_config")])
    if ns not in net.netns_list():
        net.ip("netns", "add", ns)
    net.ip("link", "set", "lo", "up", ns=ns)
    net.add_host_link(s, h.key, ns, h.iface, h.gateway_ip)
    reg = files.registry()
    name = f"sshd-{h.key}"
    if reg.is_running(name):
        reg.stop(name, timeout=5)
    pid = reg.start(
        name,
        [
            "unshare", "--mount", "--uts", "--propagation", "private", "--",
            "/bin/sh", str(TEMPLATES / "host-init.sh"), h.hostname, str(d),
        ],
        log=d / "log" / "init.log",
        netns=ns,
    )
    deadline = time.monotonic() + timeout
    while not _sshd_listening(pid):
        if reg.pid(name) is None:
            raise net.LabError(f"sshd of lab host {h.key} exited", log=d / "log" / "init.log")
        if time.monotonic() > deadline:
            raise net.LabError(f"sshd of lab host {h.key} not listening after {timeout:.0f}s", log=d / "log" / "sshd.log")
        time.sleep(0.02)
    return pid


def kill_netns_processes(ns: str, timeout: float = 5.0) -> int:
    """TERM then KILL every process inside one of the lab's namespaces; returns how many there were.

    sshd session children, sample apps started over ssh and PostgreSQL servers started in a host
    all live in the host's netns, so this reaches them without knowing their names.
    """
    return kill_pids(net.netns_pids(ns), timeout)


#: ``sh -c PIDFILE_CHECK sh FILE WORD`` inside a host: whether the server whose PID file is FILE runs.
#: Exit 0: the PID on the file's first line is a live process of this very host (same mount
#: namespace as the shell: another host's server of the same program does not count) with WORD in its
#: command line. Exit 3: no file. Exit 4: a stale file (a killed server; its PID gone, a zombie, or
#: now another program's or another host's). Anything else: the check itself failed.
PIDFILE_CHECK = (
    '[ -f "$1" ] || exit 3; pid=$(head -n1 "$1" | tr -dc 0-9); [ -n "$pid" ] || exit 4; '
    '[ "$(readlink "/proc/$pid/ns/mnt" 2>/dev/null)" = "$(readlink /proc/self/ns/mnt)" ] || exit 4; '
    'tr "\\0" " " < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" || exit 4; exit 0'
)
PIDFILE_STATES = {0: "running", 3: "stopped", 4: "stale"}


def stop_host(files: LabFiles, key: str, *, remove_files: bool = True) -> None:
    """Stop everything in the host, delete its namespace (its veth goes with it) and files."""
    ns = net.host_ns(key)
    reg = files.registry()
    reg.stop(f"sshd-{key}", timeout=5)
    kill_netns_processes(ns)
    net.delete_netns(ns)
    if remove_files:
        shutil.rmtree(files.host(key), ignore_errors=True)


def nsenter_argv(pid: int, argv: Sequence[str]) -> list[str]:
    """Run ``argv`` inside a host: its netns, mount ns (/srv, /root) and UTS ns (hostname)."""
    return ["nsenter", "-t", str(pid), "-m", "-u", "-n", "--", *argv]


def exec_in(pid: int, argv: Sequence[str], *, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        nsenter_argv(pid, argv), input=input, capture_output=True, text=True, timeout=timeout, check=False
    )


def close_control_masters(files: LabFiles) -> int:
    """``ssh -O exit`` for every ControlPath socket under the lab's control dir."""
    n = 0
    if files.control_dir.is_dir():
        for sock in files.control_dir.iterdir():
            if sock.is_socket():
                subprocess.run(
                    ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "lab-host"],
                    capture_output=True, timeout=10, check=False,
                )
                sock.unlink(missing_ok=True)
                n += 1
    return n
