"""The transitioner against a real MariaDB project: result creation, timeouts, error limits,
validation and deletion triggers, crash safety. Other daemons' moves (scheduler, validator,
assimilator) are simulated by updating the rows the way they would."""
import dataclasses
import re
import subprocess
import sys
import time

import pytest
from daemon_fixture import kill_after_progress
from job_templates import IN_TEMPLATE, OUT_TEMPLATE

from boinc_ext.boinc import crypto
from boinc_ext.boinc.schema import blank_row
from boinc_ext.daemons.base import EXIT_FAILED, EXIT_OK
from boinc_ext.transitioner import daemon as transitioner_module
from boinc_ext.transitioner.results import process_result_template
from boinc_ext.transitioner.daemon import Transitioner, TransitionerOptions
from boinc_ext.transitioner.penalties import add_turnaround_sample, reduced_max_jobs_per_day
from boinc_ext.boinc.states import (
    ASSIMILATE_DONE,
    ASSIMILATE_READY,
    FILE_DELETE_INIT,
    FILE_DELETE_READY,
    INT_MAX,
    OUTCOME_CLIENT_ERROR,
    OUTCOME_DIDNT_NEED,
    OUTCOME_INIT,
    OUTCOME_NO_REPLY,
    OUTCOME_SUCCESS,
    SERVER_STATE_IN_PROGRESS,
    SERVER_STATE_OVER,
    SERVER_STATE_UNSENT,
    VALIDATE_STATE_INIT,
    VALIDATE_STATE_VALID,
    WU_ERROR_TOO_MANY_ERROR_RESULTS,
    WU_ERROR_TOO_MANY_TOTAL_RESULTS,
)
from boinc_ext.boinc.work import WorkCreator, WorkunitRequest


@pytest.fixture
def make_wu(project, project_db, tmp_path):
    (project.project_dir / "templates" / "r_in").write_text(IN_TEMPLATE)
    (project.project_dir / "templates" / "r_out").write_text(OUT_TEMPLATE)
    creator = WorkCreator(project, project_db, "r_job", "templates/r_in", "templates/r_out")
    script = tmp_path / "job.R"
    script.write_text("x <- 1\n")

    def make(name, **params):
        data = tmp_path / f"{name}.csv"
        data.write_text(f"{name}\n")
        wu_id = creator.create(WorkunitRequest(name, [script, data], params=params, priority=3))
        make_due(project_db, wu_id)
        return wu_id
    return make


def make_due(db, wu_id):
    """What the scheduler, validator and assimilator do after changing a WU's results."""
    db.execute("update workunit set transition_time = %s where id = %s", (int(time.time()) - 1, wu_id))


def run_pass(config, **extra):
    return Transitioner(config, TransitionerOptions(one_pass=True, **extra)).run()


def wu_row(db, wu_id):
    return db.query_one("select * from workunit where id = %s", (wu_id,))


def results_of(db, wu_id):
    return {r["name"]: r for r in db.query("select * from result where workunitid = %s", (wu_id,))}


def set_result(db, name, **values):
    assignments = ", ".join(f"{column} = %s" for column in values)
    db.execute(f"update result set {assignments} where name = %s", (*values.values(), name))


def report(db, wu_id, name, outcome, **values):
    """A result reported by a client, as the scheduler records it."""
    set_result(db, name, server_state=SERVER_STATE_OVER, outcome=outcome, received_time=int(time.time()),
               **values)
    make_due(db, wu_id)


def test_creates_results_with_signed_output_names(project, project_db, make_wu):
    wu_id = make_wu("wu_a")
    before = int(time.time())
    assert run_pass(project) == EXIT_OK

    results = results_of(project_db, wu_id)
    assert sorted(results) == ["wu_a_0", "wu_a_1"]
    public = crypto.read_public_key(project.key_dir / "upload_public")
    for name, row in results.items():
        assert (row["server_state"], row["outcome"], row["validate_state"], row["file_delete_state"]) == (
            SERVER_STATE_UNSENT, OUTCOME_INIT, VALIDATE_STATE_INIT, FILE_DELETE_INIT)
        assert (row["appid"], row["priority"], row["batch"]) == (wu_row(project_db, wu_id)["appid"], 3, 0)
        xml = row["xml_doc_in"].decode()
        file_name = re.search(r"<name>(.*)</name>", xml).group(1)
        assert re.fullmatch(rf"{name}_r\d+_0", file_name)
        assert f"<url>{project.upload_url}</url>" in xml and "<UPLOAD_URL/>" not in xml
        assert xml.startswith("<file_info>") and xml.endswith("</result>")
        assert "output_template" not in xml and "<result>\n" in xml
        assert f"<file_name>{file_name}</file_name>" in xml
        signature = re.search(r"<xml_signature>\n(.*?)</xml_signature>\n</file_info>", xml, re.DOTALL).group(1)
        assert crypto.verify_upload_certificate(file_name, 100000, signature, public)
        assert not crypto.verify_upload_certificate(file_name, 100001, signature, public)
    wu = wu_row(project_db, wu_id)
    assert wu["transition_time"] >= before + 10 * 86400  # safety net: max(1.5 * 3600 s, 10 days)

    assert run_pass(project) == EXIT_OK  # nothing due: nothing changes
    assert sorted(results_of(project_db, wu_id)) == ["wu_a_0", "wu_a_1"]
    assert wu_row(project_db, wu_id)["transition_time"] == wu["transition_time"]


def test_certificates_off(project):
    config = dataclasses.replace(project, dont_generate_upload_certificates=True)
    xml = process_result_template(OUT_TEMPLATE, "w_0", config.upload_url, None)
    assert "xml_signature" not in xml and config.upload_url in xml


def test_missed_deadline_gets_a_replacement(project, project_db, make_wu):
    wu_id = make_wu("wu_b")
    run_pass(project)
    now = int(time.time())
    set_result(project_db, "wu_b_0", server_state=SERVER_STATE_IN_PROGRESS, sent_time=now - 100,
               report_deadline=now - 10, hostid=1)
    set_result(project_db, "wu_b_1", server_state=SERVER_STATE_IN_PROGRESS, sent_time=now - 100,
               report_deadline=now + 500, hostid=2)
    make_due(project_db, wu_id)
    run_pass(project)

    results = results_of(project_db, wu_id)
    assert sorted(results) == ["wu_b_0", "wu_b_1", "wu_b_2"]
    assert (results["wu_b_0"]["server_state"], results["wu_b_0"]["outcome"]) == (SERVER_STATE_OVER,
                                                                                  OUTCOME_NO_REPLY)
    assert results["wu_b_1"]["server_state"] == SERVER_STATE_IN_PROGRESS
    assert results["wu_b_2"]["server_state"] == SERVER_STATE_UNSENT
    assert wu_row(project_db, wu_id)["transition_time"] == now + 500  # the next deadline


def test_too_many_errors_ends_the_workunit(project, project_db, make_wu):
    wu_id = make_wu("wu_c", target_nresults=3, max_error_results=1)
    run_pass(project)
    report(project_db, wu_id, "wu_c_0", OUTCOME_CLIENT_ERROR, exit_status=1)
    report(project_db, wu_id, "wu_c_1", OUTCOME_CLIENT_ERROR, exit_status=1)
    run_pass(project)

    wu = wu_row(project_db, wu_id)
    assert wu["error_mask"] & WU_ERROR_TOO_MANY_ERROR_RESULTS
    assert wu["assimilate_state"] == ASSIMILATE_READY
    assert wu["transition_time"] == INT_MAX
    results = results_of(project_db, wu_id)
    assert sorted(results) == ["wu_c_0", "wu_c_1", "wu_c_2"]  # no replacements
    assert (results["wu_c_2"]["server_state"], results["wu_c_2"]["outcome"]) == (SERVER_STATE_OVER,
                                                                                  OUTCOME_DIDNT_NEED)


def test_user_abort_is_not_an_error(project, project_db, make_wu):
    wu_id = make_wu("wu_g", max_error_results=1)
    run_pass(project)
    report(project_db, wu_id, "wu_g_0", OUTCOME_CLIENT_ERROR, exit_status=203)
    report(project_db, wu_id, "wu_g_1", OUTCOME_CLIENT_ERROR, exit_status=1)
    run_pass(project)
    assert wu_row(project_db, wu_id)["error_mask"] == 0
    assert sorted(results_of(project_db, wu_id)) == ["wu_g_0", "wu_g_1", "wu_g_2", "wu_g_3"]


def test_quorum_of_successes_needs_validation(project, project_db, make_wu):
    wu_id = make_wu("wu_d")
    run_pass(project)
    report(project_db, wu_id, "wu_d_0", OUTCOME_SUCCESS)
    run_pass(project)
    assert wu_row(project_db, wu_id)["need_validate"] == 0  # one success, quorum 2
    report(project_db, wu_id, "wu_d_1", OUTCOME_SUCCESS)
    run_pass(project)
    wu = wu_row(project_db, wu_id)
    assert wu["need_validate"] == 1 and wu["error_mask"] == 0
    assert len(results_of(project_db, wu_id)) == 2


def test_too_many_total_results(project, project_db, make_wu):
    wu_id = make_wu("wu_e", max_total_results=2, max_error_results=2, max_success_results=2)
    run_pass(project)
    report(project_db, wu_id, "wu_e_0", OUTCOME_NO_REPLY)
    run_pass(project)
    wu = wu_row(project_db, wu_id)
    assert wu["error_mask"] & WU_ERROR_TOO_MANY_TOTAL_RESULTS
    results = results_of(project_db, wu_id)
    assert sorted(results) == ["wu_e_0", "wu_e_1"]
    assert results["wu_e_1"]["outcome"] == OUTCOME_DIDNT_NEED


def _validated(db, wu_id, assimilate_state):
    """Both results succeeded and were validated; the first is canonical."""
    report(db, wu_id, f"{wu_row(db, wu_id)['name']}_0", OUTCOME_SUCCESS, validate_state=VALIDATE_STATE_VALID)
    report(db, wu_id, f"{wu_row(db, wu_id)['name']}_1", OUTCOME_SUCCESS, validate_state=VALIDATE_STATE_VALID)
    canonical = db.scalar("select min(id) from result where workunitid = %s", (wu_id,))
    db.execute("update workunit set canonical_resultid = %s, assimilate_state = %s where id = %s",
               (canonical, assimilate_state, wu_id))


def test_assimilated_workunit_gets_its_files_deleted(project, project_db, make_wu):
    wu_id = make_wu("wu_f")
    run_pass(project)
    _validated(project_db, wu_id, ASSIMILATE_DONE)
    run_pass(project)
    wu = wu_row(project_db, wu_id)
    assert wu["file_delete_state"] == FILE_DELETE_READY and wu["transition_time"] == INT_MAX
    assert {r["file_delete_state"] for r in results_of(project_db, wu_id).values()} == {FILE_DELETE_READY}


def test_deferred_assimilation(project, project_db, make_wu):
    wu_id = make_wu("wu_h")
    run_pass(project)
    _validated(project_db, wu_id, 0)
    run_pass(project)
    wu = wu_row(project_db, wu_id)
    assert wu["assimilate_state"] == ASSIMILATE_READY and wu["file_delete_state"] == FILE_DELETE_INIT


def test_crash_mid_pass_then_restart_makes_no_duplicates(project, project_db, make_wu, monkeypatch):
    first, second = make_wu("wu_x"), make_wu("wu_y")
    monkeypatch.setattr(Transitioner, "batch_size", 1)
    original = Transitioner._write_batch
    calls = []

    def crash_on_second(self, transitions):
        calls.append(transitions)
        created = original(self, transitions)
        if len(calls) == 2:
            raise RuntimeError("simulated crash after writing, before commit")
        return created

    monkeypatch.setattr(Transitioner, "_write_batch", crash_on_second)
    assert run_pass(project) == EXIT_FAILED
    assert sorted(results_of(project_db, first)) == ["wu_x_0", "wu_x_1"]
    assert results_of(project_db, second) == {}  # rolled back
    assert wu_row(project_db, second)["transition_time"] < time.time()  # still due

    monkeypatch.setattr(Transitioner, "_write_batch", original)
    assert run_pass(project) == EXIT_OK
    assert run_pass(project) == EXIT_OK
    assert sorted(results_of(project_db, first)) == ["wu_x_0", "wu_x_1"]
    assert sorted(results_of(project_db, second)) == ["wu_y_0", "wu_y_1"]


def test_wu_id_and_mod_and_module_entry_point(project, project_db, make_wu):
    first, second = make_wu("wu_p"), make_wu("wu_q")
    assert run_pass(project, wu_id=second) == EXIT_OK
    assert results_of(project_db, first) == {} and len(results_of(project_db, second)) == 2

    out = subprocess.run([sys.executable, "-m", "boinc_ext.transitioner.daemon", "--one_pass", "-d", "3",
                          "--project_dir", str(project.project_dir)], capture_output=True, text=True, timeout=60)
    assert out.returncode == EXIT_OK, out.stderr
    assert f"[WU#{first} wu_p]" in out.stderr
    assert len(results_of(project_db, first)) == 2


def test_missing_upload_key_is_a_clear_failure(project, make_wu):
    make_wu("wu_k")
    (project.key_dir / transitioner_module.UPLOAD_PRIVATE_KEY).unlink()
    assert run_pass(project) == EXIT_FAILED


# --- host_app_version penalties for timeouts ----------------------------------------------------
def insert_row(db, table, **values):
    row = blank_row(table) | values
    return db.insert(f"insert into {table} ({', '.join(row)}) values ({', '.join(['%s'] * len(row))})",
                     tuple(row.values()))


def hav_of(db, host_id, app_version_id):
    return db.query_one("select * from host_app_version where host_id = %s and app_version_id = %s",
                        (host_id, app_version_id))


def test_timeouts_penalize_host_app_versions(project, project_db, make_wu):
    wu_id = make_wu("wu_t", target_nresults=5, max_total_results=12)
    appid = wu_row(project_db, wu_id)["appid"]
    older = insert_row(project_db, "app_version", appid=appid, platformid=77, version_num=100)
    other_plan = insert_row(project_db, "app_version", appid=appid, platformid=77, version_num=300,
                            plan_class="mt")
    current = insert_row(project_db, "app_version", appid=appid, platformid=77, version_num=200)
    insert_row(project_db, "host_app_version", host_id=1, app_version_id=current, max_jobs_per_day=10,
               consecutive_valid=5, n_jobs_today=3, turnaround_n=1, turnaround_avg=100.0)
    insert_row(project_db, "host_app_version", host_id=2, app_version_id=older, max_jobs_per_day=7,
               consecutive_valid=2)
    insert_row(project_db, "host_app_version", host_id=2, app_version_id=other_plan, max_jobs_per_day=50,
               consecutive_valid=9)
    run_pass(project)
    now = int(time.time())
    sent = [(1, current), (1, current), (2, current), (3, 999999), (4, current)]
    for suffix, (host_id, version_id) in enumerate(sent):
        set_result(project_db, f"wu_t_{suffix}", server_state=SERVER_STATE_IN_PROGRESS, sent_time=now - 100,
                   report_deadline=now - 10, hostid=host_id, app_version_id=version_id)
    make_due(project_db, wu_id)
    run_pass(project)

    assert {r["outcome"] for n, r in results_of(project_db, wu_id).items() if n < "wu_t_5"} == {OUTCOME_NO_REPLY}
    # two timeouts on one row: 10 -> 9 -> 8; turnaround samples of delay_bound (3600 s), the first
    # capped at 10x the average of 100
    hav = hav_of(project_db, 1, current)
    assert (hav["max_jobs_per_day"], hav["consecutive_valid"], hav["n_jobs_today"]) == (8, 0, 3)
    assert hav["turnaround_n"] == 3
    assert hav["turnaround_avg"] == pytest.approx(550 + 3050 / 3)
    assert hav["turnaround_q"] == pytest.approx(405000 + 3050 * (3600 - 550 - 3050 / 3))
    assert hav["turnaround_var"] == pytest.approx(hav["turnaround_q"] / 3)
    # host 2 had no row for this version: it takes over the one of the older version of the
    # same plan class (not the newer one of another plan class), as stock's hav_lookup does
    assert hav_of(project_db, 2, older) is None
    adopted = hav_of(project_db, 2, current)
    assert (adopted["max_jobs_per_day"], adopted["consecutive_valid"], adopted["turnaround_n"]) == (6, 0, 1)
    assert hav_of(project_db, 2, other_plan)["max_jobs_per_day"] == 50
    # an unknown app version: no row is made, nothing penalized
    assert hav_of(project_db, 3, 999999) is None
    # a host with no row at all gets a fresh one: 0 means the project's quota (500 here), less one
    fresh = hav_of(project_db, 4, current)
    assert (fresh["max_jobs_per_day"], fresh["turnaround_n"], fresh["turnaround_avg"]) == (499, 1, 3600)


def test_quota_and_turnaround_arithmetic():
    assert [reduced_max_jobs_per_day(n, 500) for n in (0, 10, 600, 1, 2)] == [499, 9, 499, 1, 1]
    assert reduced_max_jobs_per_day(0, 0) == 1
    hav = {"turnaround_n": 19, "turnaround_avg": 100.0, "turnaround_var": 50.0, "turnaround_q": 7.0}
    add_turnaround_sample(hav, 200.0)  # the 20th sample: exponential average from here on
    assert hav == {"turnaround_n": 20, "turnaround_avg": 101.0, "turnaround_var": pytest.approx(149.5),
                   "turnaround_q": 7.0}
    add_turnaround_sample(hav, -1.0)
    assert hav["turnaround_n"] == 20


# --- killed at any moment -----------------------------------------------------------------------
def _done_and_due(db):
    """Workunits with all their results (and their next transition time set) and ones untouched."""
    now = int(time.time())
    rows = db.query("select wu.id, wu.transition_time, count(res.id) as n from workunit wu "
                    "left join result res on res.workunitid = wu.id group by wu.id")
    done = [r for r in rows if r["n"] == 2 and r["transition_time"] > now]
    due = [r for r in rows if r["n"] == 0 and r["transition_time"] < now]
    assert len(done) + len(due) == len(rows), "a workunit is half-done"
    return len(done), len(due)


def test_sigkill_at_any_moment_leaves_whole_batches(project, project_db, tmp_path):
    (project.project_dir / "templates" / "r_in").write_text(IN_TEMPLATE)
    (project.project_dir / "templates" / "r_out").write_text(OUT_TEMPLATE)
    script, data = tmp_path / "job.R", tmp_path / "data.csv"
    script.write_text("x <- 1\n")
    data.write_text("1\n")
    n = 3000
    creator = WorkCreator(project, project_db, "r_job", "templates/r_in", "templates/r_out")
    creator.create_many([WorkunitRequest(f"k_{i}", [script, data]) for i in range(n)])
    project_db.execute("update workunit set transition_time = %s", (int(time.time()) - 1,))
    command = [sys.executable, "-m", "boinc_ext.transitioner.daemon", "--one_pass", "-d", "1",
               "--project_dir", str(project.project_dir)]

    kill_delays = (0.0, 0.012, 0.031, 0.058)  # after a commit: land at different points of a batch
    kills, done = 0, 0
    while kills < len(kill_delays):
        kill_after_progress(command, lambda: project_db.scalar("select count(*) from result"), 2 * done,
                            kill_delays[kills])
        done, due = _done_and_due(project_db)
        if due == 0:
            break
        assert 0 < done < n and done % Transitioner.batch_size == 0  # whole batches only
        kills += 1
    assert kills >= 1, "the pass ended before it could be killed"

    assert run_pass(project) == EXIT_OK
    assert _done_and_due(project_db) == (n, 0)
    names = project_db.query("select name from result where name like 'k\\_1234\\_%' order by name")
    assert [r["name"] for r in names] == ["k_1234_0", "k_1234_1"]
