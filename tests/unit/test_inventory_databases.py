"""A host's ``databases:`` (issue 13): the model, and validate's errors with file:line:col and a fix."""

from __future__ import annotations

from pathlib import Path

from govcloud.inventory import load_inventory
from govcloud.model import DbEngine
from tests.unit.test_validate_errors import edit, validate

ZSJ = "inventories/departments/zsj.yaml"
FLOW_HOST = "      - {name: pop-db-01, address: 10.240.16.10, port: 22, user: root, role: db, data: [/srv/pop]}\n"


def with_databases(project: Path, *lines: str) -> None:
    """pop-db-01 (zsj.yaml line 14) in block style; its databases start at line 19."""
    edit(project, ZSJ, FLOW_HOST, "      - name: pop-db-01\n        address: 10.240.16.10\n        role: db\n"
         "        data: [/srv/pop]\n        databases:\n" + "".join(f"          - {{{x}}}\n" for x in lines))


def test_databases_load_with_engine_defaults(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_databases(project, 'engine: postgresql, version: "15", data_dir: /var/lib/postgresql/15/main, verify: [pop]',
                   'engine: mariadb, version: "10.11", data_dir: /var/lib/mysql')
    result = validate(project, run_cli)
    assert result.exit_code == 0, result.stderr
    host = next(h for s in load_inventory(project).systems for h in s.hosts if h.name == "pop-db-01")
    pg, maria = host.databases
    assert (pg.engine, pg.port, pg.version, pg.verify) == (DbEngine.POSTGRESQL, 5432, "15", ("pop",))
    assert (maria.engine, maria.port, maria.data_dir, maria.verify) == (DbEngine.MARIADB, 3306, "/var/lib/mysql", ())


def test_an_unknown_engine_is_a_schema_error_with_a_guess(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_databases(project, 'engine: postgres, version: "15", data_dir: /var/lib/postgresql/15/main')
    result = validate(project, run_cli)
    assert result.exit_code == 2
    assert f"{ZSJ}:19:22: systems[0].hosts[0].databases[0].engine: unknown engine 'postgres'" in result.stderr
    assert "did you mean 'postgresql'? valid values: postgresql, mariadb" in result.stderr


def test_ports_that_clash_on_the_host(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_databases(project, 'engine: mariadb, version: "10.11", port: 22, data_dir: /var/lib/mysql',
                   'engine: postgresql, version: "15", port: 8080, data_dir: /var/lib/postgresql/15/main',
                   'engine: postgresql, version: "15", port: 3306, data_dir: /var/lib/postgresql/15/b',
                   'engine: mariadb, version: "10.11", data_dir: /var/lib/mysql-b')
    result = validate(project, run_cli)
    assert result.exit_code == 2
    err = result.stderr
    assert f"{ZSJ}:19:55: systems[0].hosts[0].databases[0].port: mariadb on pop-db-01 uses port 22, the host's SSH port" in err
    assert f"{ZSJ}:20:55: systems[0].hosts[0].databases[1].port: postgresql on pop-db-01 uses port 8080, the application's port" in err
    assert (f"{ZSJ}:22:13: systems[0].hosts[0].databases[3]: mariadb on pop-db-01 uses port 3306, as does postgresql "
            "(databases[2])") in err
    assert "hint: two database servers on one host need two ports" in err


def test_a_data_directory_inside_a_data_path_or_another_database(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_databases(project, 'engine: postgresql, version: "15", data_dir: /srv/pop/pgdata',
                   'engine: mariadb, version: "10.11", data_dir: /srv/pop/pgdata/mysql')
    result = validate(project, run_cli)
    assert result.exit_code == 2
    err = result.stderr
    assert (f"{ZSJ}:19:59: systems[0].hosts[0].databases[0].data_dir: data directory /srv/pop/pgdata of postgresql on "
            "pop-db-01 overlaps the data path /srv/pop (data[0])") in err
    assert "a database moves by replication, not as files" in err
    assert "data directory /srv/pop/pgdata/mysql overlaps postgresql (databases[0])'s /srv/pop/pgdata" in err


def test_versions_a_number_that_yaml_rounds_a_malformed_one_and_one_too_old(project: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    with_databases(project, "engine: mariadb, version: 10.10, data_dir: /var/lib/mysql",
                   'engine: postgresql, version: "15.4", data_dir: /var/lib/postgresql/15/main',
                   "engine: postgresql, version: 9, port: 5433, data_dir: /var/lib/postgresql/9/main")
    result = validate(project, run_cli)
    assert result.exit_code == 2
    err = result.stderr
    assert (f"{ZSJ}:19:40: systems[0].hosts[0].databases[0].version: version 10.1 of mariadb on pop-db-01 is a number: "
            "YAML reads 10.10 as 10.1") in err
    assert 'hint: quote the version as you mean it, e.g. version: "10.11"' in err
    assert f"{ZSJ}:20:43: systems[0].hosts[0].databases[1].version: '15.4' is not a postgresql major version" in err
    assert "postgresql 9 is too old to migrate by replication (needs 10 or later)" in err
