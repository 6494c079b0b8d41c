"""The batched UPDATE builder against a real project database: several rows of one table per
statement, increments, composite keys, missing rows, and the numeric-columns-only rule."""
import pytest

from boinc_ext.boinc.schema import blank_row, numeric_columns
from boinc_ext.boinc.table_updates import RowChanges, RowsNotFound, check_numeric, update_rows


def insert_row(db, table, **values):
    row = blank_row(table) | values
    return db.insert(f"insert into `{table}` ({', '.join(row)}) values ({', '.join(['%s'] * len(row))})",
                     tuple(row.values()))


class Capture:
    """Keeps the statements instead of sending them."""

    def __init__(self):
        self.statements = []

    def execute(self, sql):
        self.statements.append(sql)
        return 1


@pytest.fixture
def hosts(project_db):
    return [insert_row(project_db, "host", userid=7, total_credit=10.0 * i) for i in (1, 2, 3)]


def host_values(db, columns):
    return [tuple(row.values()) for row in db.query(f"select {columns} from host order by id")]


def test_several_rows_and_increments_in_one_statement(project_db, hosts):
    h1, h2, h3 = hosts
    changes = [RowChanges("host", ("id",), [{"id": h1, "avg_turnaround": 1.5, "credit": 2.0},
                                           {"id": h3, "avg_turnaround": -1.0, "credit": 5.0}],
                          ("avg_turnaround",), {"total_credit": "credit"})]
    capture = Capture()
    update_rows(capture, changes)
    assert len(capture.statements) == 1
    assert capture.statements[0].startswith("update `host` set avg_turnaround = case id when ")

    assert update_rows(project_db, changes) == 2
    assert host_values(project_db, "avg_turnaround, total_credit") == [(1.5, 12.0), (0.0, 20.0), (-1.0, 35.0)]


def test_composite_keys_single_rows_and_empty_changes(project_db):
    for host_id, version_id in ((1, 1), (1, 2), (2, 1)):
        insert_row(project_db, "host_app_version", host_id=host_id, app_version_id=version_id)
    key = ("host_id", "app_version_id")
    changed = update_rows(project_db, [
        RowChanges("host_app_version", key, [{"host_id": 1, "app_version_id": 2, "max_jobs_per_day": 9,
                                              "consecutive_valid": 3},
                                             {"host_id": 2, "app_version_id": 1, "max_jobs_per_day": 4,
                                              "consecutive_valid": 1}], ("max_jobs_per_day", "consecutive_valid")),
        RowChanges("host_app_version", key, [{"host_id": 1, "app_version_id": 1, "n_jobs_today": 6}],
                   ("n_jobs_today",)),
        RowChanges("workunit", ("id",), [], ("transition_time",)),  # nothing to write: no statement
    ])
    assert changed == 3
    rows = project_db.query("select host_id, app_version_id, max_jobs_per_day, consecutive_valid, n_jobs_today "
                            "from host_app_version order by host_id, app_version_id")
    assert [tuple(r.values()) for r in rows] == [(1, 1, 0, 0, 6), (1, 2, 9, 3, 0), (2, 1, 4, 1, 0)]


def test_rows_not_found_only_when_every_row_changes(project_db, hosts):
    h1 = hosts[0]
    same = [RowChanges("host", ("id",), [{"id": h1, "avg_turnaround": 0.0}], ("avg_turnaround",))]
    assert update_rows(project_db, same) == 0  # a row left as it was is no error
    missing = [RowChanges("host", ("id",), [{"id": h1, "avg_turnaround": 3.0}, {"id": 999, "avg_turnaround": 3.0}],
                          ("avg_turnaround",), every_row_changes=True)]
    with pytest.raises(RowsNotFound, match="host changed 1 of 2"):
        update_rows(project_db, missing)


@pytest.mark.parametrize("table, change", [
    ("workunit", RowChanges("workunit", ("id",), [{"id": 1, "xml_doc": "<x/>"}], ("xml_doc",))),
    ("result", RowChanges("result", ("id",), [{"id": 1, "name": "r"}], ("name",))),
    ("host", RowChanges("host", ("id",), [{"id": 1, "credit": 1.0}], (), {"domain_name": "credit"})),
    ("host", RowChanges("host", ("domain_name",), [{"domain_name": "a"}], ("avg_turnaround",))),
    ("host", RowChanges("host", ("id",), [{"id": 1, "nosuch": 1}], ("nosuch",))),
])
def test_a_column_not_declared_numeric_is_refused_before_any_sql(table, change):
    capture = Capture()
    good = RowChanges("host", ("id",), [{"id": 1, "avg_turnaround": 1.0}], ("avg_turnaround",))
    with pytest.raises(ValueError, match=rf"{table}\.\w+ is not a numeric column"):
        update_rows(capture, [good, change])
    assert capture.statements == []


def test_numeric_columns_come_from_the_schema():
    check_numeric("workunit", ("id", "transition_time", "rsc_fpops_est", "need_validate", "transitioner_flags"))
    check_numeric("host_app_version", ("host_id", "app_version_id", "pfc_avg", "consecutive_valid"))
    assert {"xml_doc", "name", "mod_time", "result_template_file"}.isdisjoint(numeric_columns("workunit"))
    with pytest.raises(ValueError, match="ext_job"):
        update_rows(Capture(), [RowChanges("ext_job", ("id",), [], ("state",))])
