"""The lab as one object: up/down, cut/restore, add/remove hosts, run things in them, connect to them."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

from devcloud import stale
from devcloud.lab import hosts as H
from devcloud.lab import net
from devcloud.lab.state import HostSpec, LabState, StateStore
from devcloud.paths import DevcloudPaths
from devcloud.procs import kill_pids, wait_for

log = logging.getLogger(__name__)


@dataclass
class DownReport:
    processes: int = 0
    namespaces: int = 0
    links: int = 0
    routes: int = 0
    control_masters: int = 0
    guard_kept: bool = False


class Lab:
    """The site lab under ``DevcloudPaths.lab``. Every mutating call holds the state lock."""

    def __init__(self, paths: DevcloudPaths | None = None) -> None:
        self.paths = paths or DevcloudPaths.from_env()
        self.files = H.LabFiles(self.paths.lab)
        self.store = StateStore(self.paths.lab)
        self.started_here = False  # set by testing.lab_session: this session owns the lab
        self.last_up: stale.Verdict | None = None  # what the last `up` found: fresh, adopt (live) or clean

    # ------------------------------------------------------------ queries

    def state(self) -> LabState:
        return self.store.load()

    def survey(self) -> stale.LabFacts:
        """What is there: state file, namespaces, which hosts' sshd run (the very recorded process,
        by start time: a recycled PID is dead), the watcher (PID file or singleton lock holder). Under
        the state lock (shared): a host being removed right now is seen either whole or gone."""
        with self.store.shared() as st:
            spaces = set(net.netns_list())
            reg = self.files.registry()
            alive = sum(1 for k in st.hosts if net.host_ns(k) in spaces and reg.alive(f"sshd-{k}"))
        watcher = self.watcher_pid() is not None or _watch_lock_holder(self.files.root) is not None
        return stale.LabFacts(st.up, net.CORE_NS in spaces, sum(1 for n in spaces if n.startswith(net.PREFIX)),
                              len(st.hosts), alive, watcher)

    def is_up(self) -> bool:
        """Up and alive: the state says up, the core namespace exists and every host's sshd runs. What
        a killed run left (state file and namespaces, processes dead) is not up: `up` cleans it."""
        return stale.lab_live(self.survey())

    def hosts(self, *, site: str | None = None, kind: str | None = None) -> list[HostSpec]:
        return [
            h
            for h in self.state().hosts.values()
            if (site is None or h.site == site) and (kind is None or h.kind == kind)
        ]

    def host(self, name: str) -> HostSpec:
        """A host by key, hostname or IP."""
        for h in self.state().hosts.values():
            if name in (h.key, h.hostname, h.ip):
                return h
        raise net.LabError(f"no lab host {name!r}")

    @property
    def known_hosts(self) -> Path:
        return self.files.known_hosts

    @property
    def controller_key(self) -> Path:
        return self.files.controller_key

    # ------------------------------------------------------------ lifecycle

    def up(self, hosts_per_site: int = 1, *, watch: bool = True, say: Callable[[str], None] | None = None) -> list[HostSpec]:
        """Core, four site routers, guard route, and ``hosts_per_site`` infra hosts per datacentre.

        Idempotent: a live lab (every host's sshd running) is completed, not rebuilt. A lab a killed
        run left (state file or namespaces, but hosts' sshd dead: all or some) is stale: it is taken
        down fully (processes in its namespaces, namespaces, hosts of Nova servers too; the guard route
        stays) and built fresh, said in one line (``say``, default: a warning in the log).
        ``self.last_up`` tells which it was. Refuses to start when the lab range overlaps the machine's
        routes or addresses. With ``watch`` the reconcile watcher (Nova servers -> hosts) is started,
        or restarted if it died.
        """
        tell = say or log.warning
        with self._up_lock():
            self.last_up = verdict = stale.judge_lab(self.survey(), watch=watch)
            if verdict.action == stale.CLEAN:
                self.down(keep_guard=True)
                tell(verdict.line)
            created = self._up(hosts_per_site)
            if watch:
                self.ensure_watcher()
            if verdict.action == stale.ADOPT and verdict.line:
                tell(verdict.line)
            return created

    @contextlib.contextmanager
    def _up_lock(self) -> Iterator[None]:
        """One `up` at a time: two must not both judge a lab stale and one clean what the other built."""
        self.paths.lab.mkdir(parents=True, exist_ok=True)
        with open(self.paths.lab / ".up.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # dies with its holder: a killed `up` leaves no lock behind
            yield

    def _up(self, hosts_per_site: int) -> list[HostSpec]:
        with self.store.locked() as st:
            if net.CORE_NS not in net.netns_list():
                net.check_machine()
            net.ensure_guard()
            net.build_core()
            for s in net.SITES:
                net.build_site(s)
                if s.name in st.cut:
                    net.set_uplink(s, up=False)
            st.up = True
            pub = H.ensure_controller_key(self.files)
            self.files.control_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            created = []
            for sname in net.DATACENTRES:
                for i in range(1, hosts_per_site + 1):
                    key = f"{sname}-h{i}"
                    if key not in st.hosts:
                        created.append(self._add(st, key, sname, kind="infra", authorized_keys=[pub]))
            self._remove_orphans(st)
            self._restart_missing(st)
            self._apply(st)
            H.write_known_hosts(self.files, st.hosts.values())
            return created

    def _remove_orphans(self, st: LabState) -> None:
        """Host namespaces no state entry knows (the state file was lost in a crash)."""
        known = {net.host_ns(k) for k in st.hosts}
        for ns in net.lab_netns():
            if ns.startswith(f"{net.PREFIX}h-") and ns not in known:
                log.warning("removing orphan lab namespace %s", ns)
                H.kill_netns_processes(ns)
                net.delete_netns(ns)

    def _restart_missing(self, st: LabState) -> None:
        """After a crash or a reboot of the lab's processes: hosts in the state whose sshd is gone."""
        reg = self.files.registry()
        for h in st.hosts.values():
            if not reg.is_running(f"sshd-{h.key}") or net.host_ns(h.key) not in net.netns_list():
                h.pid = H.start_host(self.files, h)

    # ------------------------------------------------------------ reconcile watcher

    def watcher_pid(self) -> int | None:
        """PID of the running reconcile watcher (None if it is not running)."""
        from devcloud.lab.reconcile import WATCH_NAME

        reg = self.files.registry()
        return reg.pid(WATCH_NAME) if reg.alive(WATCH_NAME) else None

    def ensure_watcher(self, interval: float = 1.0) -> int:
        """Start ``devcloud lab reconcile --watch`` unless it runs; returns its PID.

        A separate process (survives this one), recorded in the lab's ProcessRegistry so ``down``
        stops exactly it; its log is ``<lab>/reconcile-watch.log``.
        """
        from devcloud.lab.reconcile import WATCH_NAME, watch_log

        reg = self.files.registry()
        with self.store.locked():  # two `lab up` at once must not both start one (the PID file would name the loser)
            pid = self.watcher_pid()
            if pid is not None:
                return pid
            reg.forget(WATCH_NAME)  # dead (or a zombie child of this very process): drop its PID file
            holder = _watch_lock_holder(self.files.root)
            if holder is not None:  # a watcher whose PID file was lost still holds the singleton lock: adopt it
                reg.adopt(WATCH_NAME, holder)
                return holder
            pkg_parent = str(Path(__file__).resolve().parents[2])
            env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
            env["DEVCLOUD_HOME"] = str(self.paths.home)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH", "")) if p)
            argv = [sys.executable, "-m", "devcloud", "lab", "reconcile", "--watch", "--interval", f"{interval:g}"]
            return reg.start(WATCH_NAME, argv, log=watch_log(self.files.root), env=env, cwd=Path("/"))

    def stop_watcher(self, timeout: float = 15.0) -> None:
        """TERM the watcher by its recorded PID (it finishes its step), KILL after ``timeout``; also one
        whose PID file was lost (the holder of its singleton lock)."""
        from devcloud.lab.reconcile import WATCH_NAME

        self.files.registry().stop(WATCH_NAME, timeout=timeout)
        holder = _watch_lock_holder(self.files.root)
        if holder is not None:
            kill_pids([holder], timeout)

    def down(self, *, guard_wait: float = 10.0, keep_guard: bool = False) -> DownReport:
        """Remove everything the lab created. Idempotent; works after a crash (names + state file).
        ``keep_guard``: leave the ``unreachable`` guard route (an `up` that follows at once)."""
        rep = DownReport()
        self.stop_watcher()  # first: it must not add hosts while we tear down
        with self.store.locked() as st:
            rep.control_masters = H.close_control_masters(self.files)
            reg = self.files.registry()
            recorded = [p for p in (reg.pid(n) for n in reg.names("sshd-")) if p is not None]
            spaces = set(net.lab_netns()) | {net.host_ns(k) for k in st.hosts}
            host_spaces = sorted(n for n in spaces if n.startswith(f"{net.PREFIX}h-"))
            infra_spaces = [n for n in (*(s.router_ns for s in net.SITES), net.CORE_NS) if n in spaces]
            inside = [p for ns in host_spaces + infra_spaces for p in net.netns_pids(ns)]
            rep.processes = kill_pids([*recorded, *inside])  # recorded sshds + everything in our namespaces
            present = set(net.netns_list())
            doomed = [ns for ns in host_spaces + infra_spaces if ns in present]
            net.delete_netns_many(doomed)
            rep.namespaces = len(doomed)
            for dev in net.root_lab_links():  # gone with the core; a crash may leave a half-made one
                net.ip("link", "del", dev, check=False)
                rep.links += 1
            for r in net.root_lab_routes():
                if r.get("type") == "unreachable":
                    continue
                args = ["route", "del", r["dst"]]
                if r.get("dev"):
                    args += ["dev", r["dev"]]
                net.ip(*args, check=False)
                rep.routes += 1
            # the guard goes last, once no live socket of ours still points into the lab range
            rep.guard_kept = keep_guard or not self._lab_sockets_closed(guard_wait)
            if not rep.guard_kept and net.guard_present():
                net.remove_guard()
                rep.routes += 1
            shutil.rmtree(self.files.hosts, ignore_errors=True)
            shutil.rmtree(self.files.run, ignore_errors=True)
            st.hosts.clear()
            st.cut.clear()
            st.partitions.clear()
            st.up = False
            H.write_known_hosts(self.files, [])
        return rep

    @staticmethod
    def _lab_sockets_closed(wait: float) -> bool:
        try:
            wait_for(lambda: not _live_lab_sockets(), timeout=wait, interval=0.1, what="lab sockets")
            return True
        except TimeoutError:
            log.warning("sockets into %s remain; keeping the guard route: %s", net.LAB_NET,
                        "; ".join(_live_lab_sockets(with_process=True)))
            return False

    def cut(self, site: str) -> None:
        """Datacentre outage: the site's uplink goes down (from the core and controller too)."""
        s = net.site(site)
        with self.store.locked() as st:
            self._require_up(st)
            net.set_uplink(s, up=False)
            if site not in st.cut:
                st.cut.append(site)

    def restore(self, site: str) -> None:
        s = net.site(site)
        with self.store.locked() as st:
            self._require_up(st)
            net.set_uplink(s, up=True)
            if site in st.cut:
                st.cut.remove(site)
            self._apply(st)
            # hosts on subnets spanning sites resolve remote peers by proxy ARP: drop the outage's failures
            for h in st.hosts.values():
                if IPv4Address(h.ip) not in net.site(h.site).subnet:
                    net.ip("neigh", "flush", "all", ns=net.host_ns(h.key), check=False)
            for ns in (net.CORE_NS, *(o.router_ns for o in net.SITES)):
                net.ip("neigh", "flush", "all", ns=ns, check=False)

    def partition(self, a: str, b: str) -> None:
        """Break only the path between sites ``a`` and ``b``; both still reach the others."""
        pair = sorted((net.site(a).name, net.site(b).name))
        if pair[0] == pair[1]:
            raise net.LabError("a partition needs two different sites")
        with self.store.locked() as st:
            self._require_up(st)
            if pair not in st.partitions:
                st.partitions.append(pair)
            self._apply(st)

    def heal(self, a: str | None = None, b: str | None = None) -> None:
        """Remove the partition between ``a`` and ``b`` (all partitions without arguments)."""
        with self.store.locked() as st:
            self._require_up(st)
            if a is None or b is None:
                st.partitions.clear()
            else:
                pair = sorted((net.site(a).name, net.site(b).name))
                st.partitions = [p for p in st.partitions if p != pair]
            self._apply(st)

    def _require_up(self, st: LabState) -> None:
        if not st.up or net.CORE_NS not in net.netns_list():
            raise net.LabError("the lab is not up (run `devcloud lab up`)")

    # ------------------------------------------------------------ hosts

    def add_host(
        self,
        key: str,
        site: str,
        *,
        ip: str | None = None,
        prefixlen: int | None = None,
        gateway: str | None = None,
        hostname: str | None = None,
        kind: str = "infra",
        authorized_keys: Sequence[str] = (),
        controller_key: bool = True,
        meta: dict[str, str] | None = None,
    ) -> HostSpec:
        """Create (or return the existing, identical) host. ``ip`` defaults to the next free one
        in the site subnet; the controller key is authorised unless ``controller_key=False``."""
        return self.add_hosts(
            [dict(key=key, site=site, ip=ip, prefixlen=prefixlen, gateway=gateway, hostname=hostname, kind=kind,
                  authorized_keys=authorized_keys, controller_key=controller_key, meta=meta)]
        )[0]

    def add_hosts(self, specs: Sequence[dict[str, Any]]) -> list[HostSpec]:
        """Several :meth:`add_host` calls (same keyword arguments) under one lock, one route and
        known_hosts update: what ``lab legacy`` uses for hundreds of hosts."""
        out = []
        with self.store.locked() as st:
            self._require_up(st)
            ctl = H.ensure_controller_key(self.files)
            try:
                for spec in specs:
                    kw = dict(spec)
                    keys = list(kw.pop("authorized_keys", ()) or ())
                    if kw.pop("controller_key", True):
                        keys.insert(0, ctl)
                    kw.setdefault("kind", "infra")
                    out.append(self._add(st, kw.pop("key"), kw.pop("site"), authorized_keys=keys, **kw))
            finally:
                self._apply(st)
                H.write_known_hosts(self.files, st.hosts.values())
        return out

    def remove_host(self, key: str) -> bool:
        with self.store.locked() as st:
            gone = self._remove(st, key)
            self._apply(st)
            H.write_known_hosts(self.files, st.hosts.values())
            return gone

    def remove_hosts(self, keys: Sequence[str]) -> list[str]:
        """Several :meth:`remove_host` under one lock, one route and known_hosts update, the hosts
        stopped side by side (what the reconcile watcher uses when many servers go at once).
        Returns the keys that were lab hosts."""
        from concurrent.futures import ThreadPoolExecutor

        with self.store.locked() as st:
            todo = list(dict.fromkeys(keys))
            try:
                with ThreadPoolExecutor(max_workers=max(1, min(8, len(todo)))) as pool:
                    list(pool.map(lambda k: H.stop_host(self.files, k), todo))
            finally:
                gone = [k for k in todo if st.hosts.pop(k, None) is not None]
                self._apply(st)
                H.write_known_hosts(self.files, st.hosts.values())
            return gone

    def _remove(self, st: LabState, key: str) -> bool:
        H.stop_host(self.files, key)
        return st.hosts.pop(key, None) is not None

    def _add(
        self,
        st: LabState,
        key: str,
        site_name: str,
        *,
        ip: str | None = None,
        prefixlen: int | None = None,
        gateway: str | None = None,
        hostname: str | None = None,
        kind: str,
        authorized_keys: Sequence[str],
        meta: dict[str, str] | None = None,
    ) -> HostSpec:
        net.check_key(key)
        s = net.site(site_name)
        if ip is None:
            ip = str(_next_free(s, {h.ip for h in st.hosts.values()}))
        addr = IPv4Address(ip)
        if prefixlen is None:
            if addr not in s.subnet:
                raise net.LabError(f"{ip}: give prefixlen and gateway for addresses outside {s.subnet}")
            prefixlen = s.subnet.prefixlen
        if gateway is None:
            gateway = str(s.gateway.ip) if addr in s.subnet else str(IPv4Interface(f"{ip}/{prefixlen}").network.network_address + 1)
        net.validate_host_address(s, addr, prefixlen, IPv4Address(gateway))
        spec = HostSpec(
            key=key, hostname=hostname or key, site=s.name, ip=str(addr), prefixlen=prefixlen, gateway=gateway,
            kind=kind, authorized_keys=list(dict.fromkeys(k.strip() for k in authorized_keys if k.strip())),
            meta=dict(meta or {}),
        )
        old = st.hosts.get(key)
        if old is not None and old.same_shape(spec) and self.files.registry().is_running(f"sshd-{key}"):
            return old
        if old is not None:
            self._remove(st, key)
        clash = [h.key for h in st.hosts.values() if h.ip == spec.ip]
        if clash:
            raise net.LabError(f"{spec.ip} is already lab host {clash[0]}")
        st.hosts[key] = spec  # recorded before the side effect: a crash leaves it removable
        spec.pid = H.start_host(self.files, spec)
        return spec

    def _apply(self, st: LabState) -> None:
        """Dynamic network state from the lab state: host routes, bridge gateways, partition rules."""
        addrs = self._addrs(st)
        net.apply_plan(net.plan_routes(addrs), st.cut)
        net.apply_partition_rules(net.plan_partition_rules(addrs, [(a, b) for a, b in st.partitions]))

    @staticmethod
    def _addrs(st: LabState) -> list[net.HostAddr]:
        return [
            net.HostAddr(h.key, h.site, IPv4Address(h.ip), h.prefixlen, IPv4Address(h.gateway))
            for h in st.hosts.values()
        ]

    # ------------------------------------------------------------ using hosts

    def exec(self, name: str, argv: Sequence[str], *, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside a host (nsenter into its sshd's namespaces), no ssh involved."""
        h = self.host(name)
        pid = self.files.registry().pid(f"sshd-{h.key}")
        if pid is None:
            raise net.LabError(f"lab host {h.key} is not running")
        return H.exec_in(pid, argv, input=input, timeout=timeout)

    def write_file(self, name: str, path: str, text: str, *, mode: str = "600", owner: str = "root") -> None:
        """Write ``path`` inside a host atomically (a temporary file, then rename), created 0077-masked."""
        r = self.exec(name, ["/bin/sh", "-c", 'umask 077 && cat > "$1.tmp" && chmod "$2" "$1.tmp" && chown "$3" "$1.tmp" '
                             '&& mv "$1.tmp" "$1"', "sh", path, mode, owner], input=text)
        if r.returncode != 0:
            raise net.LabError(f"{name}: cannot write {path}: {(r.stderr or r.stdout).strip()[-300:]}")

    def ssh_options(self, known_hosts: Path | None = None) -> list[str]:
        """OpenSSH options for strict host-key checking against the lab's known_hosts."""
        return [
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "ConnectTimeout=5",
        ]

    def ssh_argv(self, name: str, command: str | None = None, *, key: Path | None = None, user: str = "root") -> list[str]:
        h = self.host(name)
        argv = ["ssh", "-i", str(key or self.controller_key), *self.ssh_options(), f"{user}@{h.ip}"]
        return argv + ([command] if command is not None else [])

    def ssh(self, name: str, command: str, *, key: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.ssh_argv(name, command, key=key), capture_output=True, text=True, timeout=timeout, check=False)

    def paramiko_client(self, name: str, *, key: Path | None = None, known_hosts: Path | None = None, timeout: float = 5) -> Any:
        """A connected paramiko SSHClient with ``RejectPolicy`` and only the lab's known_hosts."""
        import paramiko

        h = self.host(name)
        c = paramiko.SSHClient()
        c.load_host_keys(str(known_hosts or self.known_hosts))
        c.set_missing_host_key_policy(paramiko.RejectPolicy())
        c.connect(
            h.ip, 22, username="root", key_filename=str(key or self.controller_key),
            look_for_keys=False, allow_agent=False, timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
        )
        return c

    def status(self) -> dict[str, Any]:
        st = self.state()
        reg = self.files.registry()
        spaces = set(net.netns_list())
        sites = {}
        for s in net.SITES:
            sites[s.name] = {
                "subnet": str(s.subnet),
                "router": s.router_ns,
                "present": s.router_ns in spaces,
                "cut": s.name in st.cut,
            }
        return {
            "up": st.up and net.CORE_NS in spaces,
            "lab_range": str(net.LAB_NET),
            "guard_route": net.guard_present(),
            "known_hosts": str(self.known_hosts),
            "controller_key": str(self.controller_key),
            "control_dir": str(self.files.control_dir),
            "watcher": {"pid": self.watcher_pid(), "log": str(self.files.root / "reconcile-watch.log")},
            "sites": sites,
            "partitions": [f"{a}/{b}" for a, b in st.partitions],
            "hosts": [
                {
                    "key": h.key, "hostname": h.hostname, "site": h.site, "ip": h.ip, "prefixlen": h.prefixlen,
                    "kind": h.kind, "running": reg.is_running(f"sshd-{h.key}"), **h.meta,
                }
                for h in sorted(st.hosts.values(), key=lambda x: (x.site, x.key))
            ],
        }


def _next_free(s: net.Site, used: Iterable[str]) -> IPv4Address:
    taken = set(used)
    for i, a in enumerate(s.subnet.hosts()):
        if i < 10:  # .1 is the router; .2-.10 kept for fixed infrastructure
            continue
        if str(a) not in taken:
            return a
    raise net.LabError(f"site {s.name} has no free address")


def _live_lab_sockets(*, with_process: bool = False) -> list[str]:
    """Non-TIME-WAIT TCP sockets in the root namespace whose peer is in the lab range."""
    out = subprocess.run(
        ["ss", "-tanH" + ("p" if with_process else ""), "exclude", "time-wait", "dst", str(net.LAB_NET)],
        capture_output=True, text=True, check=False,
    ).stdout
    return [ln for ln in out.splitlines() if ln.strip()]


def tcp_reachable(ip: str, port: int = 22, timeout: float = 2.0, *, from_pid: int | None = None) -> bool:
    """Can a TCP connection to ip:port be opened (from the controller, or from inside a host)?"""
    if from_pid is None:
        import socket

        try:
            with socket.create_connection((ip, port), timeout=timeout):
                return True
        except OSError:
            return False
    code = f"import socket; socket.create_connection(({ip!r}, {port}), timeout={timeout}).close()"
    r = H.exec_in(from_pid, ["/usr/bin/python3", "-c", code], timeout=timeout + 10)
    return r.returncode == 0


__all__ = ["Lab", "DownReport", "tcp_reachable"]


def _watch_lock_holder(lab_dir: Path) -> int | None:
    """PID of the live watcher holding ``.reconcile-watch.lock`` (None when nobody holds it)."""
    import fcntl

    from devcloud.lab.reconcile import watch_singleton_path
    from devcloud.procs import process_starttime

    path = watch_singleton_path(Path(lab_dir))
    if not path.exists():
        return None
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read().strip()
            pid = int(text) if text.isdigit() else None
            return pid if pid is not None and process_starttime(pid) is not None else None
        fcntl.flock(fh, fcntl.LOCK_UN)
        return None
