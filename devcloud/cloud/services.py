"""The OpenStack services: their rendered configs and how each process is started and checked."""

from __future__ import annotations

import base64
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from devcloud.cloud import render
from devcloud.cloud.layout import CloudLayout
from devcloud.cloud.mariadb import db_url
from devcloud.cloud.rabbitmq import USER as RABBIT_USER
from devcloud.cloud.topology import KEYSTONE_PORT, KEYSTONE_URL, RABBIT_PORT, REGIONS, Region


@dataclass(frozen=True)
class Service:
    """One long-running process of the cloud."""

    name: str
    argv: tuple[str, ...]
    log: Path  # the service's own log (what to read when it fails)
    port: int | None = None  # HTTP API port, if any
    env: dict[str, str] = field(default_factory=dict)
    uwsgi_ini: dict[str, str] | None = None  # values for templates/uwsgi.ini, for the WSGI APIs


def _base_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONWARNINGS": "ignore",
        "HOME": os.environ.get("HOME", "/root"),
    }


def _authtoken(pw: str, user: str, region: str) -> str:
    return render.render("keystone_authtoken.ini", keystone_url=KEYSTONE_URL, user=user, password=pw, region=region)


def _service_auth(pw: str, section: str, user: str, region: str) -> str:
    return render.render(
        "service_auth.ini", section=section, keystone_url=KEYSTONE_URL, user=user, password=pw, region=region
    )


def _uwsgi(lay: CloudLayout, name: str, port: int, module: str, env: dict[str, str], extra: str = "") -> Service:
    ini = lay.etc / f"{name}-uwsgi.ini"
    log = lay.log / f"{name}-uwsgi.log"
    values = {
        "port": str(port),
        "module": module,
        "venv": str(lay.venv),
        "env_lines": "\n".join(f"env = {k}={v}" for k, v in env.items()),
        "log": str(log),
        "extra": extra,
    }
    return Service(name, (lay.bin("uwsgi"), "--ini", str(ini)), log, port, _base_env(), values)


def _copy_paste_ini(lay: CloudLayout, project: str, src_name: str, dest: Path) -> None:
    """The API paste pipelines ship in the venv's etc/<project>/ (pip installs them as data files)."""
    src = lay.venv / "etc" / project / src_name
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest / src_name)


def write_fernet_keys(lay: CloudLayout) -> None:
    """Fresh key repositories (what keystone-manage fernet_setup/credential_setup do), without a Python start-up."""
    for repo in ("fernet-keys", "credential-keys"):
        d = lay.state / "keystone" / repo
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        for idx in ("0", "1"):
            p = d / idx
            if not p.exists():
                fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(base64.urlsafe_b64encode(os.urandom(32)).decode())


def keystone_conf(lay: CloudLayout) -> Path:
    return lay.etc / "keystone" / "keystone.conf"


def nova_dir(lay: CloudLayout, r: Region) -> Path:
    return lay.etc / f"nova-{r.short}"


def write_configs(lay: CloudLayout, pw: str) -> None:
    """Render every OpenStack config file (used by both the schema sync and the services)."""
    render.write(
        keystone_conf(lay), "keystone.conf", log=lay.log / "keystone.log", db_url=db_url(pw, "keystone"),
        state=lay.state / "keystone",
    )
    for r in REGIONS:
        s = r.short
        transport = f"rabbit://{RABBIT_USER}:{pw}@127.0.0.1:{RABBIT_PORT}/{s}"
        # placement
        render.write(
            lay.etc / f"placement-{s}" / "placement.conf", "placement.conf", log=lay.log / f"placement-{s}.log",
            db_url=db_url(pw, f"placement_{s}"), authtoken=_authtoken(pw, "placement", r.name),
        )
        # glance
        gdir, gstate = lay.etc / f"glance-{s}", lay.state / f"glance-{s}"
        for sub in ("images", "staging", "tasks", "locks"):
            (gstate / sub).mkdir(parents=True, exist_ok=True)
        _copy_paste_ini(lay, "glance", "glance-api-paste.ini", gdir)
        render.write(
            gdir / "glance-api.conf", "glance-api.conf", log=lay.log / f"glance-{s}.log", port=r.glance_port,
            db_url=db_url(pw, f"glance_{s}"), state=gstate, confdir=gdir, authtoken=_authtoken(pw, "glance", r.name),
        )
        # neutron
        ndir, nstate = lay.etc / f"neutron-{s}", lay.state / f"neutron-{s}"
        (nstate / "locks").mkdir(parents=True, exist_ok=True)
        _copy_paste_ini(lay, "neutron", "api-paste.ini", ndir)
        render.write(
            ndir / "neutron.conf", "neutron.conf", log=lay.log / f"neutron-{s}.log", transport_url=transport,
            state=nstate, confdir=ndir, db_url=db_url(pw, f"neutron_{s}"),
            authtoken=_authtoken(pw, "neutron", r.name), nova_auth=_service_auth(pw, "nova", "nova", r.name),
        )
        render.write(ndir / "plugins" / "ml2" / "ml2_conf.ini", "ml2_conf.ini")
        # nova
        vdir, vstate = nova_dir(lay, r), lay.state / f"nova-{s}"
        (vstate / "locks").mkdir(parents=True, exist_ok=True)
        _copy_paste_ini(lay, "nova", "api-paste.ini", vdir)
        render.write(
            vdir / "nova.conf", "nova.conf", transport_url=transport, state=vstate, confdir=vdir, region=r.name,
            keystone_url=KEYSTONE_URL, password=pw, authtoken=_authtoken(pw, "nova", r.name),
            placement_auth=_service_auth(pw, "placement", "placement", r.name),
            neutron_auth=_service_auth(pw, "neutron", "neutron", r.name),
        )
        # cell0 is nova-manage's default: the [database] name + "_cell0" (so no URL on a command line)
        render.write(vdir / "nova-db.conf", "nova-db.conf", api_db_url=db_url(pw, f"nova_api_{s}"), db_url=db_url(pw, f"nova_{s}"))
        render.write(vdir / "nova-api.conf", "nova-api.conf", log=lay.log / f"nova-api-{s}.log")
        for c in r.computes:
            cstate = lay.state / f"nova-compute-{c.host}"
            (cstate / "instances").mkdir(parents=True, exist_ok=True)
            render.write(vdir / f"compute-{c.host}.conf", "nova-compute.conf", host=c.host, state=cstate)
    for svc in all_services(lay):
        if svc.uwsgi_ini is not None:
            render.write_mapping(Path(svc.argv[-1]), "uwsgi.ini", svc.uwsgi_ini)


def keystone(lay: CloudLayout) -> Service:
    return _uwsgi(lay, "keystone", KEYSTONE_PORT, "keystone.wsgi.api:application",
                  {"OS_KEYSTONE_CONFIG_FILES": str(keystone_conf(lay))})


def regional_apis(lay: CloudLayout, r: Region) -> list[Service]:
    """Placement, Glance, Neutron, nova-api (uwsgi), nova-conductor and nova-scheduler of one region."""
    s, vdir = r.short, nova_dir(lay, r)
    nova_cfg = ("--config-file", str(vdir / "nova.conf"), "--config-file", str(vdir / "nova-db.conf"))
    glance_extra = render.render("uwsgi-glance-extra.ini")
    return [
        _uwsgi(lay, f"placement-{s}", r.placement_port, "placement.wsgi.api:application",
               {"OS_PLACEMENT_CONFIG_DIR": str(lay.etc / f"placement-{s}")}),
        _uwsgi(lay, f"glance-{s}", r.glance_port, "glance.wsgi.api:application",
               {"OS_GLANCE_CONFIG_DIR": str(lay.etc / f"glance-{s}")}, extra=glance_extra),
        _uwsgi(lay, f"neutron-{s}", r.neutron_port, "neutron.wsgi.api:application",
               {"OS_NEUTRON_CONFIG_DIR": str(lay.etc / f"neutron-{s}")}),
        # nova-api reads its paste pipeline from the FIRST file of OS_NOVA_CONFIG_FILES ([wsgi] api_paste_config is ignored)
        _uwsgi(lay, f"nova-api-{s}", r.nova_port, "nova.wsgi.osapi_compute:application",
               {"OS_NOVA_CONFIG_DIR": str(vdir),
                "OS_NOVA_CONFIG_FILES": "api-paste.ini;nova.conf;nova-db.conf;nova-api.conf"}),
        Service(f"nova-conductor-{s}", (lay.bin("nova-conductor"), *nova_cfg, "--log-file", str(lay.log / f"nova-conductor-{s}.log")),
                lay.log / f"nova-conductor-{s}.log", None, _base_env()),
        Service(f"nova-scheduler-{s}", (lay.bin("nova-scheduler"), *nova_cfg, "--log-file", str(lay.log / f"nova-scheduler-{s}.log")),
                lay.log / f"nova-scheduler-{s}.log", None, _base_env()),
    ]


def computes(lay: CloudLayout, r: Region) -> list[Service]:
    """The nova-computes of a region (a few per site): fake driver, no database access, own host + state_path."""
    vdir = nova_dir(lay, r)
    out = []
    for c in r.computes:
        log = lay.log / f"nova-compute-{c.host}.log"
        argv = (lay.bin("nova-compute"), "--config-file", str(vdir / "nova.conf"),
                "--config-file", str(vdir / f"compute-{c.host}.conf"), "--log-file", str(log))
        out.append(Service(f"nova-compute-{c.host}", argv, log, None, _base_env()))
    return out


def all_services(lay: CloudLayout) -> list[Service]:
    out = [keystone(lay)]
    for r in REGIONS:
        out += regional_apis(lay, r)
    for r in REGIONS:
        out += computes(lay, r)
    return out
