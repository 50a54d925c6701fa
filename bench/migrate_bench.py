"""Benchmark: govcloud's migration engine vs a raw `rsync -a` over ssh, on the devcloud and its lab.

Issue 5's benchmark, everything measured in one script so the ratios compare:

1. **Initial sync** of one system with 1 GiB in 1,024 files (legacy host ``bmig-big-01``): govcloud's
   warm sync (rsync run on the legacy host, pushing to the Nova target over ssh with a per-migration key;
   the step also takes the checksum manifests of both sides, priming their hash caches; the transfer alone
   is the ``transfer_seconds`` fact) vs the peer, a raw ``rsync -a`` run ON the
   same legacy host to the same target host over ssh with strict host keys.
2. **Cutover** after 1% of the files changed (10 of 1,024 rewritten): govcloud's measured downtime
   (legacy stop -> target healthy: final delta sync, manifests, app start, endpoint switch, health)
   vs the peer's raw delta rsync between the same hosts.
3. **20 small systems** (8 x 64 KiB each) at concurrency 1, 5 and 10 (waves 2, 3, 4 of
   ``bench/mig/plan.yaml``): wall time of the whole run, of its per-system pipeline, and per-system
   orchestration overhead against the peer copying the same data between the same hosts at the same
   concurrency.

The peer parts work on their own (``--peer-only``: the target is then an infra lab host made for the
bench). Everything the bench makes is named ``bmig-*`` (legacy hosts 10.240.28.0/24, department
``bmig``); it is removed at the start of a run, and at the end unless ``--keep``. Needs root, the
running devcloud (``devcloud up``) and lab (``devcloud lab up``: its reconcile watcher makes the
booted servers lab hosts). Run it under the shared lab lock (the sites must stay up):

    flock -s /var/tmp/govcloud-labcut.lock .venv/bin/python bench/migrate_bench.py [--peer-only]
        [--skip-small] [--concurrency 1,5,10] [--size-mib 1024] [--files 1024] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devcloud.lab.api import Lab  # noqa: E402
from devcloud.lab.legacy import create_legacy, host_srv  # noqa: E402
from devcloud.paths import DevcloudPaths  # noqa: E402
from devcloud.procs import wait_for  # noqa: E402

MIG = REPO / "bench" / "mig"
WORK = Path(os.environ.get("GOVCLOUD_BENCH_DIR", "/var/tmp/govcloud-bench")) / "mig"
PLAN_NAME = "bmig"
DEPT = "bmig"
BIG = "bmig-big"
BIG_HOST = "bmig-big-01"
BIG_PATH = "/srv/bmig-big/data"
SMALL_WAVES = {1: 2, 5: 3, 10: 4}  # concurrency -> wave of bench/mig/plan.yaml
PEER_TARGET = "bmig-peer-tgt"  # infra host: the peer's target with --peer-only
PEER_KEY = "/root/.ssh/bmig_peer"  # on the legacy hosts (the peer's own key, like an admin would make)
PEER_DIR = "/srv/bmig-peer"  # on the targets: the peer writes beside govcloud's copy, never over it
SSH_E = f"ssh -i {PEER_KEY} -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes"
MiB = 1024 * 1024


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------ the project and the lab


@dataclass
class Bench:
    lab: Lab
    paths: DevcloudPaths
    root: Path  # the govcloud project (inventories, plan, journal)
    state: Path  # GOVCLOUD_STATE_DIR: the operator key, Ansible artifacts
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def ops_key(self) -> Path:
        return self.state / "keys" / "ops_ed25519"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.update(OS_CLIENT_CONFIG_FILE=str(self.paths.clouds_yaml), GOVCLOUD_STATE_DIR=str(self.state),
                   PYTHONPATH=str(REPO))
        return env


def make_project(work: Path) -> Bench:
    root, state = work / "project", work / "state"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    shutil.copytree(MIG / "inventories", root / "inventories")
    shutil.copy(MIG / "plan.yaml", root / "plan.yaml")
    (root / "govcloud.yaml").write_text("version: 1\n")
    state.mkdir(parents=True, exist_ok=True)
    # the engine runs in this process: its operator key, Ansible state and clouds come from the environment
    os.environ["GOVCLOUD_STATE_DIR"] = str(state)
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(DevcloudPaths.from_env().clouds_yaml)
    os.environ.pop("GOVCLOUD_JOURNAL", None)
    return Bench(Lab(), DevcloudPaths.from_env(), root, state)


def connect(b: Bench, cloud: str = "gz") -> Any:
    from devcloud.lab.reconcile import connect as lab_connect

    return lab_connect(cloud, b.paths.clouds_yaml)


def delete_servers(b: Bench, prefixes: tuple[str, ...] = ("bmig-",)) -> int:
    """Delete the servers named ``prefixes*`` and wait until Nova and the lab (watcher) have dropped them."""
    conn = connect(b)
    doomed = [s for s in conn.compute.servers(all_projects=True) if str(s.name).startswith(prefixes)]
    for s in doomed:
        conn.compute.delete_server(s, force=True)
    if doomed:
        ids = {s.id for s in doomed}
        wait_for(lambda: not [s for s in conn.compute.servers(all_projects=True) if s.id in ids], timeout=300,
                 interval=1, what="bmig servers deleted")
    conn.close()
    wait_for(lambda: not [h for h in b.lab.hosts(kind="nova") if h.hostname.startswith(prefixes)], timeout=60,
             interval=0.5, what="their lab hosts removed by the reconcile watcher")
    return len(doomed)


def cleanup(b: Bench) -> None:
    """Remove what an earlier bench left: bmig servers, bmig legacy hosts, the peer target."""
    n = delete_servers(b)
    if n:
        log(f"cleanup: {n} bmig servers deleted")
    gone = [h.key for h in b.lab.hosts() if h.key.startswith("bmig-") and h.kind in ("legacy", "infra")]
    for key in gone:
        b.lab.remove_host(key)
    if gone:
        log(f"cleanup: {len(gone)} bmig lab hosts removed")


def provision(b: Bench) -> float:
    """The bmig landing zone in region gz (project, network, keypair with the operator key, flavors)."""
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "govcloud", "--root", str(b.root), "provision", "apply", "--region", "gz",
                        "--department", DEPT], env=b.env(), capture_output=True, text=True, timeout=900, check=False)
    if r.returncode != 0:
        raise SystemExit(f"govcloud provision apply failed (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return time.monotonic() - t0


def make_legacy(b: Bench, systems: Sequence[str], *, files: int, size: int) -> float:
    t0 = time.monotonic()
    create_legacy(b.lab, b.root / "inventories", systems, files=files, size=size)
    return time.monotonic() - t0


# ------------------------------------------------------------------ the peer: raw rsync -a on the legacy host


@dataclass
class Rsync:
    seconds: float  # measured on the legacy host around rsync (its ssh to the target included)
    sent: int  # bytes on the wire (rsync --stats "Total bytes sent")
    files: int

    @property
    def mib_s(self) -> float:
        return self.sent / MiB / self.seconds if self.seconds > 0 else 0.0


def _ssh(b: Bench, host: str, command: str, *, key: Path | None = None, timeout: float = 3600) -> str:
    r = b.lab.ssh(host, command, key=key, timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"ssh {host}: `{command[:200]}` exited {r.returncode}: {r.stderr.strip()[-1500:]}")
    return r.stdout


def peer_authorize(b: Bench, source: str, target: str, target_key: Path | None, dest: str) -> None:
    """The peer's own key on ``source``, authorised on ``target``, and the destination directory made
    (not timed: the set-up an admin does once)."""
    pub = _ssh(b, source, f"test -f {PEER_KEY} || ssh-keygen -q -t ed25519 -N '' -C bmig-peer -f {PEER_KEY}; "
                          f"cat {PEER_KEY}.pub").strip()
    _ssh(b, target, f"grep -qxF {shlex.quote(pub)} /root/.ssh/authorized_keys || echo {shlex.quote(pub)} "
                    f">> /root/.ssh/authorized_keys; mkdir -p {shlex.quote(dest)}", key=target_key)


def peer_revoke(b: Bench, source: str, target: str, target_key: Path | None) -> None:
    pub = _ssh(b, source, f"cat {PEER_KEY}.pub").strip()
    _ssh(b, target, f"grep -vxF {shlex.quote(pub)} /root/.ssh/authorized_keys > /root/.ssh/ak.bmig; "
                    "mv /root/.ssh/ak.bmig /root/.ssh/authorized_keys", key=target_key)


def raw_rsync(b: Bench, source: str, path: str, target_ip: str, dest: str) -> Rsync:
    """``rsync -a`` run ON ``source`` to ``target_ip`` over ssh, strict host keys (the host's ssh_config
    points at the lab's known_hosts; StrictHostKeyChecking=yes is repeated on the command line)."""
    cmd = (f"s=$(date +%s.%N); LC_ALL=C rsync -a --stats -e {shlex.quote(SSH_E)} {shlex.quote(path.rstrip('/') + '/')} "
           f"root@{target_ip}:{shlex.quote(dest.rstrip('/') + '/')}; rc=$?; e=$(date +%s.%N); "
           f"echo BENCH_T $s $e; exit $rc")
    out = _ssh(b, source, cmd)
    t = next(ln.split() for ln in out.splitlines() if ln.startswith("BENCH_T "))
    from govcloud.adapters.ssh import parse_rsync_stats

    st = parse_rsync_stats(out)
    return Rsync(float(t[2]) - float(t[1]), st.bytes_sent, st.files_transferred)


def timed_on(b: Bench, host: str, command: str) -> float:
    """Seconds ``command`` takes on ``host`` (measured there: no ssh set-up included)."""
    out = _ssh(b, host, f"s=$(date +%s.%N); {command} >/dev/null; e=$(date +%s.%N); echo BENCH_T $s $e")
    t = next(ln.split() for ln in out.splitlines() if ln.startswith("BENCH_T "))
    return float(t[2]) - float(t[1])


def change_files(b: Bench, host: str, rel: str, *, files: int, share: float = 0.01) -> list[str]:
    """Rewrite ``share`` of the files (same size, new content), spread over the set."""
    d = host_srv(b.lab, host) / rel
    parts = sorted(d.glob("part-*.bin"))
    n = max(1, round(len(parts) * share)) if share < 1 else len(parts)
    n = min(n, len(parts))
    step = max(1, len(parts) // n)
    chosen = parts[::step][:n]
    rnd = random.Random(time.time_ns())
    for p in chosen:
        size = p.stat().st_size
        p.write_bytes(rnd.randbytes(size))
    return [p.name for p in chosen]


# ------------------------------------------------------------------ govcloud's engine


class Phases:
    """A migrate Reporter that keeps when each phase started (monotonic) and when systems finished."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.phases: list[tuple[float, str]] = []
        self.done: dict[str, tuple[float, str, str]] = {}

    def phase(self, text: str) -> None:
        self.phases.append((time.monotonic(), text))
        log(f"  engine: {text}")

    def step(self, system: str, step: str, *, total: int | None = None, done: int | None = None) -> None:
        return None

    def finished(self, system: str, state: str, note: str = "") -> None:
        self.done[system] = (time.monotonic(), state, note)

    def first(self, prefix: str) -> float | None:
        return next((t for t, text in self.phases if text.startswith(prefix)), None)


def engine_options(b: Bench, wave: int, **kw: Any) -> Any:
    from govcloud.services.migration import MigrateOptions

    return MigrateOptions(plan_file=b.root / "plan.yaml", wave=wave, known_hosts=b.lab.known_hosts,
                          ssh_key=b.lab.controller_key, clouds_yaml=b.paths.clouds_yaml, outside_window=True,
                          control_path_dir=b.lab.files.control_dir, boot_timeout=900.0, ssh_wait=600.0, **kw)


def step_seconds(b: Bench, system: str) -> dict[str, float]:
    """Seconds per step of ``system`` from its journal (intent -> outcome), last occurrence of each."""
    from govcloud.adapters.journal import Journal, journal_path

    with Journal(journal_path(b.root)) as j:
        rows = j.transitions(PLAN_NAME, system)
    by_id = {r["id"]: r for r in rows}
    out: dict[str, float] = {}
    for r in rows:
        if r["phase"] == "outcome" and r.get("intent_id") in by_id:
            a = datetime.fromisoformat(by_id[r["intent_id"]]["at"])
            z = datetime.fromisoformat(r["at"])
            out[r["action"]] = (z - a).total_seconds()
    return out


def facts(b: Bench, system: str) -> dict[str, Any]:
    from govcloud.adapters.journal import Journal, journal_path

    with Journal(journal_path(b.root)) as j:
        return {f["key"]: f["value"] for f in j.facts(PLAN_NAME, system)}


def targets_of(b: Bench, system: str) -> list[dict[str, Any]]:
    t = facts(b, system).get("targets")
    if not t:
        raise SystemExit(f"{system}: the journal has no targets (did provisioning fail?)")
    return list(t)


def run_engine(b: Bench, opts: Any) -> tuple[Any, Phases]:
    from govcloud.errors import GovcloudError
    from govcloud.services.migration import run

    rep = Phases()
    try:
        summary = run(b.root, opts, rep)
    except GovcloudError as e:
        raise SystemExit(f"engine run failed:\n{e.render()}") from e
    bad = [r for r in summary.results if r.state not in ("done", "synced")]
    if bad:
        raise SystemExit("engine run failed: " + "; ".join(f"{r.system}: {r.state}: {r.note}" for r in bad))
    return summary, rep


def cutover_engine(b: Bench, system: str) -> tuple[Any, float]:
    from govcloud.services.migration import cutover_one, system_options

    opts = system_options(b.root, None, system, "cutover", outside_window=True, clouds_yaml=b.paths.clouds_yaml,
                          control_path_dir=b.lab.files.control_dir)
    t0 = time.monotonic()
    summary = cutover_one(b.root, opts, Phases())
    secs = time.monotonic() - t0
    bad = [r for r in summary.results if r.state != "done"]
    if bad:
        raise SystemExit("cutover failed: " + "; ".join(f"{r.system}: {r.state}: {r.note}" for r in bad))
    return summary, secs


# ------------------------------------------------------------------ the scenarios


def save(b: Bench) -> None:
    """The figures so far (a later failure keeps the earlier ones)."""
    out = Path(b.results.get("json_path") or WORK / "results.json")
    out.write_text(json.dumps(b.results, indent=2, default=str))


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def big_peer_only(b: Bench, files: int, size: int) -> None:
    """The peer half of scenarios 1 and 2 against an infra lab host (works without the engine)."""
    log(f"peer only: legacy host {BIG_HOST} with {files} x {size // 1024} KiB, target infra host {PEER_TARGET}")
    b.results["legacy_setup_s"] = make_legacy(b, [BIG], files=files, size=size)
    tgt = b.lab.add_host(PEER_TARGET, "gz-a")
    peer_authorize(b, BIG_HOST, PEER_TARGET, None, f"{PEER_DIR}{BIG_PATH}")
    full = raw_rsync(b, BIG_HOST, BIG_PATH, tgt.ip, f"{PEER_DIR}{BIG_PATH}")
    changed = change_files(b, BIG_HOST, "bmig-big/data", files=files)
    delta = raw_rsync(b, BIG_HOST, BIG_PATH, tgt.ip, f"{PEER_DIR}{BIG_PATH}")
    peer_revoke(b, BIG_HOST, PEER_TARGET, None)
    b.results["peer_only"] = {"initial": full.__dict__, "delta": delta.__dict__, "changed_files": len(changed)}
    print(f"peer rsync -a initial : {full.seconds:7.2f} s  {full.sent / MiB:8.1f} MiB sent  {full.mib_s:7.1f} MiB/s "
          f"({full.files} files)")
    print(f"peer rsync -a delta   : {delta.seconds:7.2f} s  {delta.sent / MiB:8.1f} MiB sent  ({delta.files} files; "
          f"{len(changed)} changed)")


def big(b: Bench, files: int, size: int) -> None:
    log(f"scenario 1+2: {BIG} with {files} x {size // 1024} KiB on {BIG_HOST}")
    b.results["legacy_setup_s"] = make_legacy(b, [BIG], files=files, size=size)
    # govcloud: preflight, provision (boot + Ansible), warm sync; the cutover waits (manual)
    summary, _ = run_engine(b, engine_options(b, 1, manual_cutover=True, concurrency=1))
    steps = step_seconds(b, BIG)
    f = facts(b, BIG)
    t = targets_of(b, BIG)[0]
    sync_s, sync_bytes = steps["warm_sync"], int(f.get("bytes_sent") or 0)
    # the warm sync step = transfer (rsync) + priming the hosts' manifest caches (both sides at once)
    xfer_s = float(f.get("transfer_seconds") or sync_s)
    prime_s = float(f.get("manifest_seconds") or 0.0)
    log(f"engine warm sync {sync_s:.2f}s, {sync_bytes / MiB:.1f} MiB sent to {t['name']} ({t['ip']})")
    # the peer: the same two hosts, its own key, a directory of its own on the target
    peer_authorize(b, BIG_HOST, t["name"], b.ops_key, f"{PEER_DIR}{BIG_PATH}")
    full = raw_rsync(b, BIG_HOST, BIG_PATH, t["ip"], f"{PEER_DIR}{BIG_PATH}")
    # 1% of the files change while the source keeps running
    changed = change_files(b, BIG_HOST, "bmig-big/data", files=files)
    delta = raw_rsync(b, BIG_HOST, BIG_PATH, t["ip"], f"{PEER_DIR}{BIG_PATH}")
    peer_revoke(b, BIG_HOST, t["name"], b.ops_key)
    # govcloud's cutover: stop, final delta, manifests, start, switch, verify (health + manifests)
    _, cut_wall = cutover_engine(b, BIG)
    steps = step_seconds(b, BIG)
    f = facts(b, BIG)
    downtime = float(f.get("downtime_seconds") or 0.0)
    verify_s = steps.get("verify", 0.0)
    from govcloud.adapters.ssh import manifest_command

    manifest_s = timed_on(b, BIG_HOST, manifest_command(BIG_PATH))  # one checksum manifest of the data, one host
    r = {
        "files": files, "file_size": size, "target": t["name"], "provision_s": summary.seconds - sync_s,
        "engine_warm_sync_s": sync_s, "engine_warm_sync_bytes": sync_bytes, "engine_run_s": summary.seconds,
        "engine_transfer_s": xfer_s, "engine_prime_manifests_s": prime_s,
        "engine_cutover_transfer_s": f.get("transfer_seconds"), "engine_cutover_manifests_s": f.get("manifest_seconds"),
        "engine_cutover_hashed_bytes": f.get("manifest_hashed_bytes"),
        "peer_initial": full.__dict__, "changed_files": len(changed), "peer_delta": delta.__dict__,
        "engine_cutover_step_s": steps.get("cutover"), "engine_verify_step_s": verify_s,
        "engine_downtime_s": downtime, "engine_cutover_wall_s": cut_wall,
        "engine_cutover_bytes": int(f.get("bytes_sent") or 0), "manifest_one_host_s": manifest_s,
    }
    b.results["big"] = r
    save(b)
    eng_mib_s = sync_bytes / MiB / sync_s if sync_s else 0.0
    bound = 1.2 * delta.seconds + verify_s
    print()
    print(f"== initial sync, {files} files, {files * size / MiB:.0f} MiB, {BIG_HOST} -> {t['name']}")
    print(f"peer  rsync -a over ssh (on the legacy host)  : {full.seconds:7.2f} s  {full.mib_s:7.1f} MiB/s  (1.00x)")
    xfer_mib_s = sync_bytes / MiB / xfer_s if xfer_s else 0.0
    print(f"govcloud warm sync transfer (rsync alone)     : {xfer_s:7.2f} s  {xfer_mib_s:7.1f} MiB/s  "
          f"({full.seconds / xfer_s if xfer_s else 0:.2f}x peer throughput; goal >= 0.90x)")
    print(f"govcloud warm sync step (transfer + priming)  : {sync_s:7.2f} s  {eng_mib_s:7.1f} MiB/s  "
          f"({full.seconds / sync_s:.2f}x peer; priming both sides' manifest caches at once: {prime_s:.2f} s)")
    print(f"== cutover with {len(changed)} of {files} files changed")
    print(f"peer  rsync -a delta                          : {delta.seconds:7.2f} s  {delta.sent / MiB:7.1f} MiB sent")
    print(f"govcloud verify step                          : {verify_s:7.2f} s")
    print(f"govcloud downtime (stop -> target healthy)    : {downtime:7.2f} s  ({ratio(downtime, delta.seconds)} raw delta; "
          f"goal <= 1.2 x delta + verify = {bound:.2f} s: {'met' if downtime <= bound else 'NOT met'})")
    print(f"govcloud cutover command wall time            : {cut_wall:7.2f} s  (cutover {steps.get('cutover', 0):.2f} s, "
          f"verify {verify_s:.2f} s, finish {steps.get('finish', 0):.2f} s)")
    print(f"for reference: one checksum manifest of the {files * size / MiB:.0f} MiB on one host (sha256 of every file): "
          f"{manifest_s:.2f} s")
    cut_m = float(f.get("manifest_seconds") or 0.0)
    print(f"  -> cutover: final delta {float(f.get('transfer_seconds') or 0):.2f} s, incremental manifests (both sides) "
          f"{cut_m:.2f} s, {int(f.get('manifest_hashed_bytes') or 0) / MiB:.1f} MiB re-read "
          f"(verify's own manifest comes after `healthy`, outside the downtime)")


def small(b: Bench, concurrency: int, n: int = 20) -> None:
    from govcloud.services.planning import load_plan

    wave = SMALL_WAVES[concurrency]
    plan = load_plan(b.root / "plan.yaml")
    systems = [s.id for w in plan.waves if w.number == wave for s in w.systems][:n]
    log(f"scenario 3: {len(systems)} small systems (wave {wave}) at concurrency {concurrency}")
    make_legacy(b, systems, files=8, size=64 * 1024)
    summary, rep = run_engine(b, engine_options(b, wave, concurrency=concurrency, systems=tuple(systems)))
    pipe_start = rep.first("migrate:") or rep.t0
    pipeline = rep.t0 + summary.seconds - pipe_start
    per_sys = [sum(v for k, v in step_seconds(b, s).items() if k not in ("preflight", "provision")) for s in systems]
    # the peer: each system's data from its legacy host to its target, `concurrency` at a time
    pairs = []
    for s in systems:
        t = targets_of(b, s)[0]
        pairs.append((f"{s}-01", f"/srv/{s}/data", t))
    with ThreadPoolExecutor(max_workers=min(8, len(pairs))) as pool:
        list(pool.map(lambda p: peer_authorize(b, p[0], p[2]["name"], b.ops_key, f"{PEER_DIR}{p[1]}"), pairs))
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        runs = list(pool.map(lambda p: raw_rsync(b, p[0], p[1], p[2]["ip"], f"{PEER_DIR}{p[1]}"), pairs))
    peer_wall = time.monotonic() - t0
    overhead = (pipeline - peer_wall) / len(systems)
    r = {"systems": len(systems), "concurrency": concurrency, "wall_s": summary.seconds, "pipeline_s": pipeline,
         "provision_s": pipe_start - rep.t0, "per_system_median_s": statistics.median(per_sys),
         "peer_wall_s": peer_wall, "peer_median_s": statistics.median(x.seconds for x in runs),
         "overhead_per_system_s": overhead}
    b.results.setdefault("small", []).append(r)
    save(b)
    # free the wave's quota and lab hosts for the next level (not timed)
    delete_servers(b, tuple(f"{x}-01-" for x in systems))
    print(f"concurrency {concurrency:>2}: run {summary.seconds:6.1f} s (provision+configure {r['provision_s']:5.1f} s, "
          f"pipeline {pipeline:5.1f} s; per system median {r['per_system_median_s']:.2f} s) | peer rsync {peer_wall:5.2f} s "
          f"| overhead {overhead:.2f} s/system ({ratio(pipeline, peer_wall)} peer)")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer-only", action="store_true", help="Only the raw rsync peer (no govcloud engine).")
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--skip-small", action="store_true")
    ap.add_argument("--concurrency", default="1,5,10", help="Concurrency levels for the small systems (of 1, 5, 10).")
    ap.add_argument("--files", type=int, default=1024)
    ap.add_argument("--size-mib", type=float, default=1.0, help="Size of each file of the big system (MiB).")
    ap.add_argument("--keep", action="store_true", help="Leave servers, hosts and the journal for inspection.")
    ap.add_argument("--json", type=Path, default=WORK / "results.json", help="Also write the figures here.")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("needs root (the lab)")
    b = make_project(WORK)
    if not b.lab.is_up() or b.lab.watcher_pid() is None:
        raise SystemExit("the lab must be up with its reconcile watcher: `devcloud lab up`")
    if not b.paths.clouds_yaml.exists():
        raise SystemExit("the devcloud must be up: `devcloud up`")
    size = int(a.size_mib * MiB)
    b.results["json_path"] = str(a.json)
    b.results["loadavg_start"] = os.getloadavg()
    b.results["started"] = datetime.now().isoformat(timespec="seconds")
    t_all = time.monotonic()
    cleanup(b)
    try:
        if a.peer_only:
            big_peer_only(b, a.files, size)
        else:
            log(f"provision: landing zone {DEPT} in gz: {provision(b):.1f}s")
            if not a.skip_big:
                big(b, a.files, size)
            if not a.skip_small:
                print("\n== 20 small systems (8 x 64 KiB each): engine run vs raw rsync of the same data, same hosts")
                for c in (int(x) for x in a.concurrency.split(",") if x.strip()):
                    small(b, c)
    finally:
        if not a.keep:
            cleanup(b)
    b.results["total_s"] = time.monotonic() - t_all
    b.results["loadavg_end"] = os.getloadavg()
    save(b)
    print(f"load average at start {b.results['loadavg_start'][0]:.1f}, at end {b.results['loadavg_end'][0]:.1f} "
          "(2 cores; other work on the machine)")
    log(f"done in {b.results['total_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
