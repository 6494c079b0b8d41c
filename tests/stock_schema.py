"""Stock BOINC's schema in a private database, for the comparisons with ours."""
import contextlib
import os
import subprocess
from pathlib import Path

import pytest

from boinc_ext.boinc.db import Database

SOURCE = os.environ.get("BOINC_SOURCE_DIR")
needs_stock = pytest.mark.skipif(
    not SOURCE or not Path(SOURCE, "db", "schema.sql").is_file(),
    reason="set BOINC_SOURCE_DIR to a BOINC source checkout to compare with stock db/schema.sql")

_COLUMN_QUERY = """select table_name t, column_name c, ordinal_position o, column_type ty, is_nullable n,
    column_default d, extra x from information_schema.columns where table_schema = database()"""
_INDEX_QUERY = """select table_name t, index_name i, non_unique u, seq_in_index s, column_name c, collation co,
    index_type it from information_schema.statistics where table_schema = database()"""


def _load_sql(settings, path: Path) -> None:
    command = ["mariadb", "-h", settings.host, "-P", str(settings.port), "-u", settings.user,
               f"-p{settings.passwd}", settings.name]
    with open(path, "rb") as f:
        subprocess.run(command, stdin=f, check=True, capture_output=True)


@contextlib.contextmanager
def _fresh_database(mariadb, name):
    settings = mariadb.settings(name)
    with Database(settings, with_database=False) as server:
        server.execute(f"drop database if exists `{name}`")
        server.execute(f"create database `{name}` character set utf8mb4")
    try:
        yield settings
    finally:
        with Database(settings, with_database=False) as server:
            server.execute(f"drop database `{name}`")


@pytest.fixture
def stock_db(mariadb):
    with _fresh_database(mariadb, "stock_schema_check") as settings:
        _load_sql(settings, Path(SOURCE, "db", "schema.sql"))
        _load_sql(settings, Path(SOURCE, "db", "constraints.sql"))
        with Database(settings) as db:
            yield db


