"""Real Debian server applications in the lab's legacy machine room (issue 30, item 5).

A real estate's legacy hosts run software that no one at govcloud wrote, started and stopped by
whatever its operators wrote down. The lab reproduces two such systems from Debian packages, so that
migrations are tested on them and not only on the lab's own sample app:

- **a static site**: nginx (package ``nginx-light``) serving ``/srv/www/html``, its data directory;
- **a wiki**: DokuWiki (package ``dokuwiki``, file-backed) on php-fpm (``php8.2-fpm``) behind nginx,
  its configuration in ``/srv/wiki/conf`` and its pages in ``/srv/wiki/data``.

Only their files are laid out here. govcloud learns about them from the inventory alone (services
with start / stop / status commands, checks, directories, runtime files, packages; see
``tests/data/mig`` and the shipped example), and the lab starts them by those very commands. Which
application a host gets follows from the packages its services declare: ``dokuwiki`` means the wiki,
``nginx-light`` without it the static site. Lab hosts have no systemd, so both run under
``start-stop-daemon`` with pid files, each server in its own prefix under ``/srv``.

The packages are installed machine-wide by ``devcloud lab install`` (lab hosts share ``/usr``,
``/etc`` and ``/var`` with the machine), which is why the software never lives in a shared place that
two hosts could both write: the package's code is read from ``/usr/share/dokuwiki``, but DokuWiki's
configuration and data move to the host's own ``/srv`` (``DOKU_CONF`` set by php-fpm's
``auto_prepend_file``, ``savedir`` in the copied ``local.php``).
"""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SITE_ROOT = "/srv/www"
WIKI_ROOT = "/srv/wiki"
WIKI_START_PAGE = "start"
DOKUWIKI_CONF = Path("/etc/dokuwiki")
DOKUWIKI_DATA = Path("/var/lib/dokuwiki/data")
WEB_USER = "www-data"


@dataclass(frozen=True)
class Layout:
    """Where one application goes: ``dest`` on the controller is ``inside`` in the host."""

    dest: Path
    inside: str
    listen: str = "80"  # nginx's `listen` (a port, or address:port for a loopback trial)


def app_kind(packages: Iterable[str]) -> str | None:
    """Which real application a host's declared packages call for: "wiki", "site" or None."""
    have = set(packages)
    if "dokuwiki" in have:
        return "wiki"
    if "nginx-light" in have or "nginx" in have:
        return "site"
    return None


def _nginx_conf(at: Layout, server: str) -> str:
    """A self-contained nginx.conf: pid, logs and temporary files under the prefix, nothing in /var."""
    run = f"{at.inside}/run"
    return f"""# nginx for {at.inside} (started with -p {at.inside}/ -c nginx/nginx.conf; see the inventory)
user {WEB_USER};
worker_processes 1;
pid {run}/nginx.pid;
error_log {at.inside}/logs/nginx-error.log;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {at.inside}/logs/nginx-access.log;
    client_body_temp_path {run}/nginx-body;
    proxy_temp_path {run}/nginx-proxy;
    fastcgi_temp_path {run}/nginx-fastcgi;
    server {{
        listen {at.listen};
{server}
    }}
}}
"""


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def site_index(system: str) -> str:
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{system}: lab portal</title></head>\n"
            f"<body><h1>{system}</h1><p>A static site served by nginx from a Debian package.</p>\n"
            "<p><a href=\"files/MANIFEST.txt\">the published files</a></p></body></html>\n")


def lay_out_site(at: Layout, system: str) -> None:
    """nginx's configuration under ``nginx/`` and the site's front page in ``html/`` (the data path,
    whose generated files the caller puts in ``html/files``)."""
    server = f"        root {at.inside}/html;\n        index index.html;"
    _write(at.dest / "nginx" / "nginx.conf", _nginx_conf(at, server))
    _write(at.dest / "html" / "index.html", site_index(system))
    for d in ("run", "logs"):
        (at.dest / d).mkdir(parents=True, exist_ok=True)


def wiki_page(system: str) -> str:
    return (f"====== {system} ======\n\nThe lab wiki of **{system}**: DokuWiki from Debian, its pages in "
            "files.\n\n  * moved by govcloud with its configuration and data\n")


def lay_out_wiki(at: Layout, system: str) -> None:
    """DokuWiki's configuration (``conf/``, a dereferenced copy of the package's ``/etc/dokuwiki``)
    and data (``data/``, of ``/var/lib/dokuwiki/data``) moved under the host's own ``/srv``, and the
    php-fpm (``php/``) and nginx (``nginx/``) configurations that point DokuWiki there."""
    if at.dest.exists():
        shutil.rmtree(at.dest)
    shutil.copytree(DOKUWIKI_CONF, at.dest / "conf", symlinks=False)
    shutil.copytree(DOKUWIKI_DATA, at.dest / "data", symlinks=False)
    _write(at.dest / "conf" / "local.php",
           "<?php\n/* the lab's DokuWiki: data under the host's own /srv (devcloud/lab/legacyapps.py) */\n"
           f"$conf['title'] = '{system} wiki';\n$conf['savedir'] = '{at.inside}/data';\n"
           "$conf['useacl'] = 1;\n$conf['superuser'] = '@admin';\n$conf['license'] = 'cc-by-sa';\n")
    _write(at.dest / "data" / "pages" / f"{WIKI_START_PAGE}.txt", wiki_page(system))
    _write(at.dest / "php" / "preload.php",
           f"<?php\n// php-fpm's auto_prepend_file: DokuWiki reads its configuration from {at.inside}/conf\n"
           f"if (!defined('DOKU_CONF')) define('DOKU_CONF', '{at.inside}/conf/');\n")
    _write(at.dest / "php" / "php-fpm.conf", f"""; php-fpm for {at.inside}'s DokuWiki
[global]
pid = {at.inside}/run/php-fpm.pid
error_log = {at.inside}/logs/php-fpm.log
daemonize = yes

[wiki]
user = {WEB_USER}
group = {WEB_USER}
listen = {at.inside}/run/php-fpm.sock
listen.owner = {WEB_USER}
listen.group = {WEB_USER}
listen.mode = 0660
pm = static
pm.max_children = 2
php_admin_value[auto_prepend_file] = {at.inside}/php/preload.php
php_admin_value[error_log] = {at.inside}/logs/php-error.log
php_admin_flag[log_errors] = on
""")
    server = f"""        root /usr/share/dokuwiki;
        index doku.php;
        location ~ ^/(data|conf|bin|inc|vendor)/ {{ deny all; }}
        location ~ \\.php$ {{
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_pass unix:{at.inside}/run/php-fpm.sock;
        }}"""
    _write(at.dest / "nginx" / "nginx.conf", _nginx_conf(at, server))
    for d in ("run", "logs"):
        (at.dest / d).mkdir(parents=True, exist_ok=True)
    web = pwd.getpwnam(WEB_USER)
    for top in ("conf", "data"):  # DokuWiki writes its pages, cache and index (and its settings)
        for base, dirs, files in os.walk(at.dest / top):
            for name in (base, *(os.path.join(base, n) for n in dirs + files)):
                os.chown(name, web.pw_uid, web.pw_gid)
