"""Our ext_ tables' migrations: each runs once, and one interrupted half-way completes when run again."""
import re

import pytest

from boinc_ext.boinc.db import Database
from boinc_ext.project import ext_schema

_IDEMPOTENT = re.compile(r"\s*(create table if not exists|create (unique )?index if not exists"
                         r"|alter table \w+ (add|drop) (column|index|key) if (not )?exists"
                         r"|drop (table|index) if exists)\s", re.IGNORECASE)


@pytest.fixture
def empty_db(db_settings):
    with Database(db_settings, with_database=False) as server:
        server.execute(f"create database `{db_settings.name}` character set utf8mb4")
    with Database(db_settings) as db:
        yield db


def _tables(db) -> set[str]:
    return {r["table_name"] for r in db.query(
        "select table_name from information_schema.tables where table_schema = database()")}


def _versions(db) -> list[int]:
    return [r["version"] for r in db.query("select version from ext_schema_version order by version")]


@pytest.mark.parametrize("version, description, statements", ext_schema.MIGRATIONS)
def test_every_migration_statement_can_run_twice(version, description, statements):
    for statement in statements:
        assert _IDEMPOTENT.match(statement), f"migration {version}: not idempotent: {statement[:60]}"


def test_migrations_run_once(empty_db):
    all_versions = [version for version, _, _ in ext_schema.MIGRATIONS]
    assert ext_schema.migrate(empty_db) == all_versions
    assert ext_schema.migrate(empty_db) == []
    assert _versions(empty_db) == all_versions
    assert ext_schema.applied_version(empty_db) == all_versions[-1]


@pytest.mark.parametrize("version, description, statements",
                         [m for m in ext_schema.MIGRATIONS if len(m[2]) > 1])
def test_a_migration_interrupted_half_way_completes_when_run_again(empty_db, version, description, statements):
    for earlier, _, earlier_statements in ext_schema.MIGRATIONS:
        if earlier == version:
            break
        for statement in earlier_statements:
            empty_db.execute(statement)
    for statement in statements[:len(statements) // 2]:  # done before the interruption
        empty_db.execute(statement)
    ext_schema.migrate(empty_db)
    assert version in _versions(empty_db)
    assert {"ext_job", "ext_job_file", "ext_schema_version"} <= _tables(empty_db)
