"""A host's ``services:``, a system's hooks and ready check, a host's ``os`` and the topology's images.

Through `govcloud validate` as a planner runs it: each bad inventory exits 2 with file:line:col, the
path, what is wrong and the fix. The fixture is a trimmed form of the Tomcat + nginx system of
docs/inventory.md; the documented example itself is validated as written too.
"""

from __future__ import annotations

import re
from pathlib import Path

from govcloud.inventory import load_inventory
from govcloud.inventory.images import image_for, missing_images
from govcloud.model import Inventory
from govcloud.model.services import (
    CheckKind,
    CheckRef,
    CommandControl,
    CommandProbe,
    HookPoint,
    HttpProbe,
    OsSpec,
    ServiceDirectory,
    SystemdControl,
)
from tests.unit.test_validate_errors import HRSS, TOPO, edit, validate

FLOW_HOST = "      - {name: si-app-01, address: 10.240.16.12, role: app, data: [/srv/si]}\n"
# hrss.yaml from line 15 on: system hrss-si's two hosts, then its hooks, ready check and role
SYSTEM = """\
      - name: si-web-01
        address: 10.240.16.14
        role: web
        os: {family: debian, version: "12"}
        services:
          - name: nginx
            systemd: nginx.service
            checks:
              - {name: http, http: {port: 80, path: /, status: 200, body: 社会保险}, deadline_s: 30, interval_s: 1}
              - {name: tls, tcp: {port: 443}}
            directories: [{path: /etc/nginx}, {path: /srv/www, exclude: ["*.tmp"]}]
            runtime: [/run/nginx.pid, /var/cache/nginx]
            packages: [nginx]
      - name: si-app-01
        address: 10.240.16.12
        role: app
        data: [/srv/si]
        os: {family: rocky, version: "9"}
        services:
          - name: tomcat
            commands: {start: /opt/tomcat/bin/startup.sh, stop: /opt/tomcat/bin/shutdown.sh, timeout_s: 180}
            checks:
              - {name: http, http: {port: 8080, path: /si/health}, deadline_s: 120}
              - {name: log, command: {run: grep -q 'Server startup' /opt/tomcat/logs/catalina.out, timeout_s: 5}}
            directories: [{path: /opt/tomcat, exclude: [logs/, temp/, work/]}]
            runtime: [/opt/tomcat/temp/tomcat.pid]
            packages: [java-17-openjdk-headless]
    hooks:
      before_cutover: [{host: si-app-01, command: /opt/si/bin/drain.sh, timeout_s: 600}]
      after_cutover: [{host: si-web-01, command: nginx -t}]
      smoke_test: [{host: si-app-01, command: /opt/si/bin/smoke.sh, timeout_s: 120}]
      before_rollback: [{host: si-app-01, command: /opt/si/bin/notify.sh rollback}]
    ready_check: tomcat/http
    ansible_role: hrss_si_app
"""
DOCS = Path(__file__).resolve().parents[2] / "docs" / "inventory.md"
MIGRATION_DOCS = DOCS.parent / "migration.md"
IMAGES = "    network_pool: 10.246.0.0/15\n    images: {debian: {\"12\": debian-12-gov}}\n"


def with_services(project: Path) -> None:
    edit(project, HRSS, FLOW_HOST, SYSTEM)


def loaded(project: Path) -> Inventory:
    return load_inventory(project)


def test_a_system_with_services_hooks_a_ready_check_and_os_loads(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_services(project)
    result = validate(project, run_cli)
    assert result.exit_code == 0, result.stderr
    system = loaded(project).system("hrss-si")
    web, app = system.hosts
    assert web.os == OsSpec("debian", "12") and app.os == OsSpec("rocky", "9")
    assert str(web.os.source) == f"{HRSS}:18:9" and web.os.path == "systems[0].hosts[0].os"
    nginx = web.services[0]
    assert nginx.control == SystemdControl("nginx.service")
    assert [(c.name, c.kind, c.port) for c in nginx.checks] == [("http", CheckKind.HTTP, 80), ("tls", CheckKind.TCP, 443)]
    assert nginx.checks[0].probe == HttpProbe(80, "/", 200, "社会保险")
    assert (nginx.checks[0].deadline_s, nginx.checks[0].interval_s) == (30, 1)
    assert (nginx.checks[1].deadline_s, nginx.checks[1].interval_s) == (60, 2)  # the defaults
    assert nginx.directories == (ServiceDirectory("/etc/nginx"), ServiceDirectory("/srv/www", ("*.tmp",)))
    assert nginx.runtime == ("/run/nginx.pid", "/var/cache/nginx") and nginx.packages == ("nginx",)
    assert nginx.listen_ports() == (80, 443)
    tomcat = app.service("tomcat")
    assert tomcat is not None
    assert tomcat.control == CommandControl("/opt/tomcat/bin/startup.sh", "/opt/tomcat/bin/shutdown.sh", None, 180)
    assert tomcat.checks[0].probe == HttpProbe(8080, "/si/health")  # status 200 by default
    assert tomcat.checks[1].probe == CommandProbe("grep -q 'Server startup' /opt/tomcat/logs/catalina.out", 5)
    assert tomcat.listen_ports() == (8080,)
    assert [(h.point, h.host, h.timeout_s) for h in system.hooks] == [
        (HookPoint.BEFORE_CUTOVER, "si-app-01", 600), (HookPoint.AFTER_CUTOVER, "si-web-01", 300),
        (HookPoint.SMOKE_TEST, "si-app-01", 120), (HookPoint.BEFORE_ROLLBACK, "si-app-01", 300)]
    assert system.hooks_at(HookPoint.SMOKE_TEST)[0].command == "/opt/si/bin/smoke.sh"
    assert system.ready_check == CheckRef("tomcat", "http") and system.ansible_role == "hrss_si_app"
    # a system without any of it is unchanged
    pay = loaded(project).system("hrss-pay")
    assert (pay.hooks, pay.ready_check, pay.hosts[0].services, pay.hosts[0].os) == ((), None, (), None)


def test_a_unit_name_with_a_space(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_services(project)
    edit(project, HRSS, "systemd: nginx.service", 'systemd: "my app.service"')
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert (f"{HRSS}:21:22: systems[0].hosts[0].services[0].systemd: systemd unit 'my app.service' has a space\n"
            "  hint: name the unit as systemctl shows it, e.g. my-app.service") in result.stderr


def test_a_unit_name_without_its_suffix(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_services(project)
    edit(project, HRSS, "systemd: nginx.service", "systemd: nginx")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert f"{HRSS}:21:22: systems[0].hosts[0].services[0].systemd: systemd unit 'nginx' lacks its type suffix" in result.stderr
    assert "hint: name the unit as systemctl shows it, e.g. nginx.service" in result.stderr


def test_two_services_on_one_port(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_services(project)
    edit(project, HRSS, "            packages: [java-17-openjdk-headless]\n",
         "            packages: [java-17-openjdk-headless]\n          - name: admin\n            systemd: si-admin.service\n"
         "            ports: [8080]\n")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert (f"{HRSS}:44:21: systems[0].hosts[1].services[1].ports[0]: service 'admin' on si-app-01 listens on port "
            f"8080, as does service 'tomcat' (at {HRSS}:37:43)") in result.stderr
    assert ("hint: two services cannot bind one port: correct the port of one of them, or declare them as one "
            "service") in result.stderr


def test_checks_of_one_service_may_share_a_port(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_services(project)
    edit(project, HRSS, "{name: tls, tcp: {port: 443}}", "{name: tcp, tcp: {port: 80}}")
    result = validate(project, run_cli)
    assert result.exit_code == 0, result.stderr


def test_a_service_on_the_ssh_or_a_database_port(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_services(project)
    edit(project, HRSS, "{name: tls, tcp: {port: 443}}", "{name: tls, tcp: {port: 22}}")
    edit(project, HRSS, "        data: [/srv/si]\n", "        data: [/srv/si]\n        databases: [{engine: postgresql, "
         'version: "15", data_dir: /opt/tomcat/pg}]\n')
    edit(project, HRSS, "http: {port: 8080, path: /si/health}", "http: {port: 5432, path: /si/health}")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    err = result.stderr
    assert (f"{HRSS}:24:41: systems[0].hosts[0].services[0].checks[1].tcp.port: service 'nginx' on si-web-01 listens "
            "on port 22, the host's SSH port") in err
    assert (f"{HRSS}:38:43: systems[0].hosts[1].services[0].checks[0].http.port: service 'tomcat' on si-app-01 "
            "listens on port 5432, as does postgresql (databases[0])") in err
    assert "hint: a database moves by replication and is not a service" in err
    assert (f"{HRSS}:40:34: systems[0].hosts[1].services[0].directories[0].path: directory /opt/tomcat of service "
            "'tomcat' overlaps the data directory /opt/tomcat/pg of postgresql (databases[0])") in err


def test_a_relative_directory(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_services(project)
    edit(project, HRSS, "{path: /opt/tomcat,", "{path: opt/tomcat,")
    edit(project, HRSS, "runtime: [/run/nginx.pid,", "runtime: [run/nginx.pid,")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    err = result.stderr
    assert (f"{HRSS}:39:34: systems[0].hosts[1].services[0].directories[0].path: expected an absolute path, got "
            "'opt/tomcat'\n  hint: service directories start with '/', e.g. /opt/tomcat") in err
    assert (f"{HRSS}:26:23: systems[0].hosts[0].services[0].runtime[0]: expected an absolute path, got "
            "'run/nginx.pid'\n  hint: runtime files are named by absolute path, e.g. /run/tomcat.pid") in err


def test_a_hook_on_a_host_the_system_does_not_have(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_services(project)
    edit(project, HRSS, "smoke_test: [{host: si-app-01", "smoke_test: [{host: si-app-1")
    edit(project, HRSS, "after_cutover: [{host: si-web-01", "after_cutover: [{host: pay-app-01")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    err = result.stderr
    assert (f"{HRSS}:45:27: systems[0].hooks.smoke_test[0].host: smoke_test hook runs on host 'si-app-1', which "
            "system 'hrss-si' does not have\n  hint: did you mean 'si-app-01'? hosts of hrss-si: si-web-01, "
            "si-app-01") in err
    # a host of another system is no host of this one
    assert (f"{HRSS}:44:30: systems[0].hooks.after_cutover[0].host: after_cutover hook runs on host 'pay-app-01', "
            "which system 'hrss-si' does not have") in err


def test_an_unknown_hook_point(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_services(project)
    edit(project, HRSS, "      smoke_test:", "      smoke_tests:")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert (f"{HRSS}:45:7: systems[0].hooks.smoke_tests: unknown key 'smoke_tests'\n  hint: did you mean "
            "'smoke_test'?") in result.stderr


def test_a_ready_check_naming_no_declared_check(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_services(project)
    edit(project, HRSS, "ready_check: tomcat/http", "ready_check: tomcat/helth")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert (f"{HRSS}:47:18: systems[0].ready_check: ready check 'tomcat/helth' names no health check of system "
            "'hrss-si'\n  hint: did you mean 'tomcat/http'? declared checks: nginx/http, nginx/tls, tomcat/http, "
            "tomcat/log") in result.stderr


def test_a_service_with_no_control_or_two(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_services(project)
    edit(project, HRSS, "            systemd: nginx.service\n", "")
    edit(project, HRSS, "          - name: tomcat\n", "          - name: tomcat\n            systemd: tomcat.service\n")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    err = result.stderr
    assert (f"{HRSS}:20:13: systems[0].hosts[0].services[0]: service 'nginx' has no control: it needs 'systemd' or "
            "'commands'\n  hint: add 'systemd: <unit>' (e.g. systemd: tomcat.service) or 'commands: {start: ..., "
            "stop: ...}'") in err
    assert (f"{HRSS}:35:13: systems[0].hosts[1].services[0].commands: service 'tomcat' has 'systemd' and 'commands': "
            "it takes exactly one control") in err


def test_a_service_written_as_a_bare_name_is_one_error(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_services(project)
    edit(project, HRSS, "          - name: nginx\n            systemd: nginx.service\n", "          - nginx\n          - name: nginx\n"
         "            systemd: nginx.service\n")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert f"{HRSS}:20:13: systems[0].hosts[0].services[0]: expected a mapping, got a string 'nginx'" in result.stderr
    assert "valid under each of" not in result.stderr and "1 error," in result.stderr


def test_a_health_check_without_a_probe_and_other_check_mistakes(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_services(project)
    edit(project, HRSS, "{name: tls, tcp: {port: 443}}", "{name: http, deadline_s: 0}")
    edit(project, HRSS, "deadline_s: 30, interval_s: 1}", "deadline_s: 3, interval_s: 5}")
    edit(project, HRSS, "{port: 80, path: /, status: 200,", "{port: 80, path: /, status: 20,")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    err = result.stderr
    assert (f"{HRSS}:24:17: systems[0].hosts[0].services[0].checks[1]: health check 'http' has no probe: it needs "
            "'http', 'tcp' or 'command'") in err
    assert (f"{HRSS}:24:42: systems[0].hosts[0].services[0].checks[1].deadline_s: must be more than 0, got 0\n"
            "  hint: a duration in seconds, more than 0 and at most 86400 (a day)") in err
    assert f"{HRSS}:23:64: systems[0].hosts[0].services[0].checks[0].http.status: must be at least 100, got 20" in err


def test_semantic_check_mistakes(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_services(project)
    edit(project, HRSS, "{name: tls, tcp: {port: 443}}", "{name: http, tcp: {port: 443}}")
    edit(project, HRSS, "deadline_s: 30, interval_s: 1}", "deadline_s: 3, interval_s: 5}")
    edit(project, HRSS, "runtime: [/opt/tomcat/temp/tomcat.pid]", "runtime: [/opt]")
    edit(project, HRSS, "          - name: tomcat\n", "          - name: tomcat\n            systemd: x.service\n"
         "          - name: tomcat\n")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    err = result.stderr
    assert (f"{HRSS}:24:24: systems[0].hosts[0].services[0].checks[1].name: service 'nginx' has two health checks "
            f"named 'http' (first at {HRSS}:23:24)") in err
    assert (f"{HRSS}:23:109: systems[0].hosts[0].services[0].checks[0].interval_s: health check 'http' of 'nginx' "
            "waits 5 s between attempts but gives up after 3 s") in err
    assert (f"{HRSS}:36:19: systems[0].hosts[1].services[1].name: service 'tomcat' is declared twice on si-app-01 "
            f"(first at {HRSS}:34:19)") in err
    assert (f"{HRSS}:41:34: systems[0].hosts[1].services[1].directories[0].path: directory /opt/tomcat of service "
            "'tomcat' lies in its runtime path /opt: nothing of it would be copied") in err


def test_an_os_version_yaml_reads_as_a_number(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_services(project)
    edit(project, HRSS, 'os: {family: debian, version: "12"}', "os: {family: Debian, version: 12.10}")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    err = result.stderr
    assert (f"{HRSS}:18:39: systems[0].hosts[0].os.version: expected a string, got a number 12.1 (YAML reads "
            f'unquoted 12.10 as 12.1)\n  hint: quote it: "12.10"') in err
    assert f"{HRSS}:18:22: systems[0].hosts[0].os.family: expected an OS family: the distribution's name in lowercase" in err


def test_images_by_region_and_the_hosts_without_one(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_services(project)
    edit(project, TOPO, "    network_pool: 10.246.0.0/15\n", IMAGES)
    result = validate(project, run_cli)
    assert result.exit_code == 0, result.stderr  # a missing image is preflight's to refuse, not validate's
    inv = loaded(project)
    hrss_si = inv.system("hrss-si")
    assert image_for(inv.topology, "st", OsSpec("debian", "12")) == "debian-12-gov"
    assert image_for(inv.topology, "st", OsSpec("debian", "11")) is None
    assert image_for(inv.topology, "gz", OsSpec("debian", "12")) is None
    [rocky] = missing_images([hrss_si], inv.topology, "st")
    assert (rocky.host, rocky.os) == ("si-app-01", OsSpec("rocky", "9"))
    assert rocky.diagnostic.render() == (
        f"{HRSS}:32:9: systems[0].hosts[1].os: host si-app-01 of system hrss-si runs rocky 9, for which region st has "
        f'no image\n  hint: add rocky: {{"9": <Glance image name>}} under images of region st ({TOPO}:11:3)')
    web, app = missing_images([hrss_si], inv.topology, "gz")
    assert web.diagnostic.hint == f'add images: {{debian: {{"12": <Glance image name>}}}} to region gz ({TOPO}:4:3)'
    assert (app.host, str(app.diagnostic.location)) == ("si-app-01", f"{HRSS}:32:9")
    # an OS read from the host's facts fills in an undeclared one; no OS at all is refused too
    pay = inv.system("hrss-pay")
    [unknown] = missing_images([pay], inv.topology, "st")
    assert unknown.os is None and str(unknown.diagnostic.location) == f"{HRSS}:60:9"
    assert "declares no os and its facts give none" in unknown.diagnostic.message
    assert missing_images([pay], inv.topology, "st", facts={"pay-app-01": OsSpec("debian", "12")}) == ()
    [from_facts] = missing_images([pay], inv.topology, "st", facts={"pay-app-01": OsSpec("debian", "11")})
    assert "runs debian 11 (from its facts)" in from_facts.diagnostic.message
    assert from_facts.diagnostic.hint == f'add "11": <Glance image name> under images.debian of region st ({TOPO}:11:3)'


def test_an_image_entry_must_be_keyed_by_os(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    edit(project, TOPO, "    network_pool: 10.246.0.0/15\n", "    network_pool: 10.246.0.0/15\n    images: {Debian: {}}\n")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    err = result.stderr
    assert f"{TOPO}:15:13: regions.st.images: expected an OS family: the distribution's name in lowercase" in err
    assert f"{TOPO}:15:22: regions.st.images.Debian: must define at least 1 entry" in err


def test_the_documented_example_validates(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """docs/migration.md's Tomcat + nginx system and docs/inventory.md's images, pasted into the mini inventory."""
    text = MIGRATION_DOCS.read_text(encoding="utf-8")
    system = re.findall(r"```yaml\n(.*?)```", text[text.index("### A typical Tomcat + nginx system"):], re.DOTALL)[0]
    text = DOCS.read_text(encoding="utf-8")
    images = re.findall(r"```yaml\n(.*?)```", text[text.index("### Target images"):], re.DOTALL)[0]
    hosts = system[system.index("    hosts:\n"):]
    edit(project, HRSS, "    hosts:\n" + FLOW_HOST, hosts)
    edit(project, TOPO, "    network_pool: 10.244.0.0/15\n",
         "    network_pool: 10.244.0.0/15\n" + images[images.index("    images:\n"):])
    result = validate(project, run_cli)
    assert result.exit_code == 0, result.stderr
    inv = loaded(project)
    si = inv.system("hrss-si")
    assert [s.name for h in si.hosts for s in h.services] == ["nginx", "tomcat"]
    assert si.ready_check == CheckRef("tomcat", "http")
    assert missing_images([si], inv.topology, "gz") == ()
