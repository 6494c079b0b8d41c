"""Our BOINC tables against stock BOINC's own schema, column by column and index by index.

Stock BOINC's schema is not part of this repository (it is LGPL source we do not copy):
point BOINC_SOURCE_DIR at a checkout of BOINC (the folder holding db/schema.sql) to run
the comparison; without it these tests skip and say why.
"""

import pytest

from boinc_ext.boinc import schema as boinc_schema

from boinc_ext.project import ext_schema
from boinc_ext.boinc.db import Database
from boinc_ext.project.project_xml import ProjectXml, register
from boinc_ext.boinc.work import WorkCreator, WorkunitRequest
from stock_schema import _COLUMN_QUERY, _INDEX_QUERY, _fresh_database, needs_stock, stock_db  # noqa: F401

@pytest.fixture
def our_db(mariadb):
    with _fresh_database(mariadb, "ours_schema_check") as settings, Database(settings) as db:
        boinc_schema.create_boinc_tables(db)
        yield db


def _rows(db, query):
    ours = set(boinc_schema.BOINC_TABLES)
    return sorted(tuple(r.values()) for r in db.query(query) if r["t"] in ours)


@needs_stock
def test_columns_match_stock(stock_db, our_db):
    assert _rows(our_db, _COLUMN_QUERY) == _rows(stock_db, _COLUMN_QUERY)


@needs_stock
def test_indexes_match_stock(stock_db, our_db):
    assert _rows(our_db, _INDEX_QUERY) == _rows(stock_db, _INDEX_QUERY)


@needs_stock
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
