"""Our BOINC tables against stock BOINC's own schema, column by column and index by index.

Stock's schema comes as facts (tests/data/stock_schema_columns.json: what MariaDB reports for
a database made by stock's db/schema.sql and db/constraints.sql), so this runs every time.
BOINC's tables must match stock exactly: name, position, type, nullability, default and
extra of every column; name, uniqueness and columns in order of every index.
"""

import pytest

from boinc_ext.boinc import schema as boinc_schema

from boinc_ext.project import ext_schema
from boinc_ext.boinc.db import Database
from boinc_ext.project.project_xml import ProjectXml, register
from boinc_ext.boinc.work import WorkCreator, WorkunitRequest
from stock_schema import (STOCK_TABLES, _fresh_database, load_stock_sql, needs_boinc_source,  # noqa: F401
                          schema_of, stock_db)

@pytest.fixture
def our_db(mariadb):
    with _fresh_database(mariadb, "ours_schema_check") as settings, Database(settings) as db:
        boinc_schema.create_boinc_tables(db)
        yield db


@pytest.mark.parametrize("table", boinc_schema.BOINC_TABLES)
def test_columns_match_stock(our_db, table):
    assert schema_of(our_db, [table])[table]["columns"] == STOCK_TABLES[table]["columns"]


@pytest.mark.parametrize("table", boinc_schema.BOINC_TABLES)
def test_indexes_match_stock(our_db, table):
    assert schema_of(our_db, [table])[table]["indexes"] == STOCK_TABLES[table]["indexes"]


def test_the_stock_database_is_made_exactly_as_the_facts_say(stock_db):
    assert schema_of(stock_db, STOCK_TABLES) == STOCK_TABLES


@needs_boinc_source
def test_the_facts_are_what_stock_sql_files_make(mariadb):
    with _fresh_database(mariadb, "stock_sql_check") as settings:
        load_stock_sql(settings)
        with Database(settings) as db:
            assert schema_of(db, STOCK_TABLES) == STOCK_TABLES


def test_work_creation_on_a_stock_database(stock_db, project):
    """Our additions and create_work on a database made by stock BOINC's schema files."""
    ext_schema.migrate(stock_db)
    register(stock_db, ProjectXml.load())
    (project.project_dir / "templates" / "in").write_text(
        "<input_template><file_info/><workunit><file_ref><open_name>in</open_name></file_ref>"
        "</workunit></input_template>")
    (project.project_dir / "templates" / "out").write_text(
        "<output_template><file_info><name><OUTFILE_0/></name><max_nbytes>1000</max_nbytes>"
        "<url><UPLOAD_URL/></url></file_info><result><file_ref><file_name><OUTFILE_0/></file_name>"
        "<open_name>out</open_name></file_ref></result></output_template>")
    data = project.project_dir / "x.txt"
    data.write_text("x\n")
    creator = WorkCreator(project, stock_db, "r_job", "templates/in", "templates/out")
    ids = creator.create_many([WorkunitRequest(f"stock_{i}", [data]) for i in range(3)])
    assert stock_db.scalar("select count(*) from workunit where id in (%s, %s, %s)", ids) == 3


def test_ddl_covers_the_tables_daemons_use():
    for table in ("platform", "app", "app_version", "user", "team", "host", "host_app_version",
                  "workunit", "result", "msg_from_host", "msg_to_host", "assignment", "credited_job"):
        assert table in boinc_schema.BOINC_TABLES
        assert boinc_schema.table_ddl(table).startswith(f"create table `{table}`")
