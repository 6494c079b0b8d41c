"""Stock BOINC's schema as facts: every column and index of its db/schema.sql and
db/constraints.sql as MariaDB 10.11 reports them (tests/data/stock_schema_columns.json), and
a private database made from them, for comparing with ours and running daemons on.

The facts are not BOINC's code: the database is built from CREATE TABLE statements generated
here. `schema_of` reads a database back in the same form, so a database made by
`create_stock_tables` can be checked against the facts it was made from.
"""
import contextlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from boinc_ext.boinc.db import Database

STOCK_SCHEMA_FILE = Path(__file__).parent / "data" / "stock_schema_columns.json"
STOCK_TABLES: dict[str, dict] = json.loads(STOCK_SCHEMA_FILE.read_text())["tables"]

_COLUMN_QUERY = """select table_name t, column_name name, column_type type, is_nullable nullable,
    column_default `default`, extra from information_schema.columns
    where table_schema = database() order by table_name, ordinal_position"""
_INDEX_QUERY = """select table_name t, index_name name, non_unique, column_name c, sub_part
    from information_schema.statistics where table_schema = database()
    order by table_name, index_name, seq_in_index"""
_INDEX_COLUMN = re.compile(r"(\w+)(\(\d+\))?")
_UNPREFIXED_TEXT = re.compile(r"(tiny|medium|long)?(text|blob)")


# --- reading a database back --------------------------------------------------------------------
def schema_of(db, tables) -> dict[str, dict]:
    """{table: {"columns": [...], "indexes": {...}}} of `tables`, in the facts' form."""
    schema = {table: {"columns": [], "indexes": {}} for table in tables}
    for row in db.query(_COLUMN_QUERY):
        if row["t"] in schema:
            schema[row["t"]]["columns"].append(_column_fact(row))
    for row in db.query(_INDEX_QUERY):
        if row["t"] in schema:
            index = schema[row["t"]]["indexes"].setdefault(
                row["name"], {"unique": not row["non_unique"], "columns": []})
            index["columns"].append(row["c"] + (f"({row['sub_part']})" if row["sub_part"] else ""))
    return schema


def _column_fact(row: dict) -> dict:
    # MariaDB prints the default of a nullable column without one as NULL; the facts say null.
    default = None if row["default"] == "NULL" else row["default"]
    return {"name": row["name"], "type": row["type"], "nullable": row["nullable"] == "YES",
            "default": default, "extra": row["extra"]}


# --- making a database from the facts ---------------------------------------------------------
def stock_table_ddl(table: str) -> str:
    """CREATE TABLE giving exactly stock's columns (types, nullability, defaults, extras) and indexes."""
    facts = STOCK_TABLES[table]
    types = {column["name"]: column["type"] for column in facts["columns"]}
    lines = [_column_ddl(column) for column in facts["columns"]]
    lines += [_index_ddl(name, index, types) for name, index in facts["indexes"].items()]
    body = ",\n    ".join(lines)
    return f"create table `{table}` (\n    {body}\n) engine=InnoDB"


def _column_ddl(column: dict) -> str:
    sql = f"`{column['name']}` {column['type']} {'null' if column['nullable'] else 'not null'}"
    if column["default"] is not None:
        sql += f" default {column['default']}"
    if column["extra"]:
        sql += f" {column['extra']}"
    return sql


def _index_ddl(name: str, index: dict, types: dict[str, str]) -> str:
    columns = [_INDEX_COLUMN.fullmatch(c).groups() for c in index["columns"]]
    column_list = ", ".join(f"`{column}`{prefix or ''}" for column, prefix in columns)
    if name == "PRIMARY":
        return f"primary key ({column_list})"
    # A whole text column can only be in a fulltext index (stock's team_name_desc is one).
    fulltext = any(not prefix and _UNPREFIXED_TEXT.fullmatch(types[column]) for column, prefix in columns)
    kind = "unique key" if index["unique"] else "fulltext key" if fulltext else "key"
    return f"{kind} `{name}` ({column_list})"


def create_stock_tables(db) -> None:
    """Every table of stock BOINC's schema, as stock makes it."""
    for table in STOCK_TABLES:
        db.execute(stock_table_ddl(table))


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
    """A fresh database holding exactly stock BOINC's tables."""
    with _fresh_database(mariadb, "stock_schema_check") as settings, Database(settings) as db:
        create_stock_tables(db)
        yield db


# --- optional: stock's own SQL files, to check the facts ------------------------------------------
SOURCE = os.environ.get("BOINC_SOURCE_DIR")
STOCK_SQL_FILES = ("db/schema.sql", "db/constraints.sql")
needs_boinc_source = pytest.mark.skipif(
    not SOURCE or not all(Path(SOURCE, f).is_file() for f in STOCK_SQL_FILES),
    reason="optional: set BOINC_SOURCE_DIR to a BOINC source checkout to check the stock schema "
           "facts against its db/schema.sql and db/constraints.sql")


def load_stock_sql(settings) -> None:
    """Runs stock's own schema.sql and constraints.sql (from BOINC_SOURCE_DIR) into `settings`' database."""
    command = ["mariadb", "-h", settings.host, "-P", str(settings.port), "-u", settings.user,
               f"-p{settings.passwd}", settings.name]
    for name in STOCK_SQL_FILES:
        with open(Path(SOURCE, name), "rb") as f:
            subprocess.run(command, stdin=f, check=True, capture_output=True)
