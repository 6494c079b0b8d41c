"""Getting host_app_version rows as stock's hav_lookup does, against a real project database.
The daemons' own paths through it are tested in tests/transitioner (timeouts) and
tests/validator (valid and invalid results)."""
import pytest

from boinc_ext.boinc.host_app_version import (
    ZEROED_COLUMNS,
    generalized_app_version_id,
    get_or_create_rows,
    lock_rows,
)
from boinc_ext.boinc.schema import blank_row

COLUMNS = ("max_jobs_per_day", "consecutive_valid", "turnaround_n")


def insert_row(db, table, **values):
    row = blank_row(table) | values
    return db.insert(f"insert into `{table}` ({', '.join(row)}) values ({', '.join(['%s'] * len(row))})",
                     tuple(row.values()))


def hav_keys(db):
    return [(r["host_id"], r["app_version_id"])
            for r in db.query("select host_id, app_version_id from host_app_version order by host_id, app_version_id")]


@pytest.fixture
def versions(project_db):
    """Versions of one app: 100 and 200 (platform 1, no plan class), 300 with plan class mt,
    and 400 of platform 2."""
    def version(num, platformid=1, plan_class=""):
        return insert_row(project_db, "app_version", appid=5, version_num=num, platformid=platformid,
                          plan_class=plan_class)
    return {"v100": version(100), "v200": version(200), "mt300": version(300, plan_class="mt"),
            "p2_400": version(400, platformid=2)}


def test_generalized_id_and_zeroed_columns():
    assert generalized_app_version_id(17, 3) == 17
    assert generalized_app_version_id(-2, 3) == 3000002  # anonymous platform: per app and resource
    assert set(ZEROED_COLUMNS) == set(blank_row("host_app_version")) - {"host_id", "app_version_id"}
    assert len(ZEROED_COLUMNS) == 13


def test_existing_rows_are_returned_locked_as_they_are(project_db, versions):
    insert_row(project_db, "host_app_version", host_id=1, app_version_id=versions["v200"], max_jobs_per_day=8)
    with project_db.transaction():
        rows = get_or_create_rows(project_db, [(1, versions["v200"])], COLUMNS)
    assert rows == {(1, versions["v200"]): {"host_id": 1, "app_version_id": versions["v200"],
                                            "max_jobs_per_day": 8, "consecutive_valid": 0, "turnaround_n": 0}}
    assert hav_keys(project_db) == [(1, versions["v200"])]


def test_missing_row_takes_over_the_newest_row_of_the_same_app_platform_and_plan_class(project_db, versions):
    v100, v200, mt300, p2_400 = versions.values()
    newest = insert_row(project_db, "app_version", appid=5, version_num=250, platformid=1)
    insert_row(project_db, "host_app_version", host_id=1, app_version_id=v100, max_jobs_per_day=3)
    insert_row(project_db, "host_app_version", host_id=1, app_version_id=newest, max_jobs_per_day=7,
               consecutive_valid=4)
    insert_row(project_db, "host_app_version", host_id=1, app_version_id=mt300, max_jobs_per_day=50)
    insert_row(project_db, "host_app_version", host_id=1, app_version_id=p2_400, max_jobs_per_day=60)
    with project_db.transaction():
        rows = get_or_create_rows(project_db, [(1, v200)], COLUMNS)
    # even a newer version's row is taken over, as stock does: the highest version_num wins
    assert rows[(1, v200)]["max_jobs_per_day"] == 7 and rows[(1, v200)]["consecutive_valid"] == 4
    assert hav_keys(project_db) == sorted([(1, v100), (1, v200), (1, mt300), (1, p2_400)])


def test_missing_row_without_one_to_take_over_is_zeroed(project_db, versions):
    insert_row(project_db, "host_app_version", host_id=2, app_version_id=versions["v100"], max_jobs_per_day=3)
    with project_db.transaction():
        rows = get_or_create_rows(project_db, [(1, versions["v200"])], COLUMNS)
    assert rows[(1, versions["v200"])] == {"host_id": 1, "app_version_id": versions["v200"],
                                           "max_jobs_per_day": 0, "consecutive_valid": 0, "turnaround_n": 0}
    row = project_db.query_one("select * from host_app_version where host_id = 1")
    assert all(row[c] == 0 for c in ZEROED_COLUMNS)


def test_unknown_or_anonymous_app_version_gets_no_row(project_db, versions):
    anonymous = generalized_app_version_id(-1, 5)
    with project_db.transaction():
        rows = get_or_create_rows(project_db, [(1, 999999), (1, anonymous), (1, versions["v100"])], COLUMNS)
    assert set(rows) == {(1, versions["v100"])}
    assert hav_keys(project_db) == [(1, versions["v100"])]


def test_lock_rows_reads_only_existing_rows(project_db, versions):
    insert_row(project_db, "host_app_version", host_id=1, app_version_id=versions["v100"], consecutive_valid=2)
    with project_db.transaction():
        rows = lock_rows(project_db, [(1, versions["v100"]), (1, versions["v200"])], ("consecutive_valid",))
        assert lock_rows(project_db, [], ("consecutive_valid",)) == {}
    assert rows == {(1, versions["v100"]): {"host_id": 1, "app_version_id": versions["v100"], "consecutive_valid": 2}}
    assert hav_keys(project_db) == [(1, versions["v100"])]
