"""The assimilator and its r_job handler against a real MariaDB project. Workunits are made by
the real work generator and transitioner; the scheduler's and validator's moves are made on
the rows as those daemons make them (jobs_support)."""
from __future__ import annotations

import logging
import subprocess
import sys
import time

import pytest

from boinc_ext.assimilator.daemon import (EVENT_ASSIMILATED, EVENT_DEFERRED, EVENT_NO_CANONICAL, Assimilator,
                                           AssimilatorOptions)
from boinc_ext.assimilator.failure_report import task_stderr
from boinc_ext.apps.r_job import EVENT_JOB_DONE, EVENT_NO_JOB
from boinc_ext.apps.r_job import assimilate as assimilate_r_job
from boinc_ext.daemons.base import EXIT_FAILED, EXIT_OK
from boinc_ext.daemons.options import DaemonOptions
from boinc_ext.jobs import store
from boinc_ext.jobs.result_store import result_dir
from boinc_ext.transitioner.daemon import Transitioner
from boinc_ext.apps.r_job import OUTPUT_TEMPLATE, ensure_input_template, install_templates
from boinc_ext.boinc.result_files import output_paths
from boinc_ext.boinc.states import (ASSIMILATE_DONE, ASSIMILATE_INIT, ASSIMILATE_READY, FILE_DELETE_READY,
                              WU_ERROR_NO_CANONICAL_RESULT, WU_ERROR_TOO_MANY_ERROR_RESULTS)
from boinc_ext.boinc.work import WorkCreator, WorkunitRequest


from jobs_support import (R_ERROR, client_stderr, make_due, report_error, report_success, results_of, run_once,
                          running_job, valid_job, validate)


class Killed(BaseException):
    """Stands for the process dying: nothing after it runs, the open transaction is lost."""


def wu_row(db, wu_id):
    return db.query_one("select * from workunit where id = %s", (wu_id,))


def stored(project, job_id) -> dict[str, bytes]:
    directory = result_dir(project, job_id)
    return {p.name: p.read_bytes() for p in directory.iterdir()} if directory.exists() else {}


def test_valid_workunit_stores_the_canonical_result(project, project_db, tmp_path, caplog):
    job_id, wu_id = running_job(project, project_db, tmp_path / "in", replication=2)
    first, second = results_of(project_db, wu_id)
    report_success(project, project_db, first, b"rds of the first", b"out 1")
    report_success(project, project_db, second, b"rds of the second", b"out 2")
    validate(project_db, wu_id, second["id"])
    before = int(time.time())
    with caplog.at_level(logging.INFO, "boinc_ext.daemon"):
        assert run_once(Assimilator, project) == EXIT_OK

    assert stored(project, job_id) == {"result.rds": b"rds of the second", "stdout.txt": b"out 2"}
    job = store.load_job(project_db, job_id)
    assert (job.state, job.workunit_id, job.error) == ("done", wu_id, None)
    assert job.finish_time >= before
    wu = wu_row(project_db, wu_id)
    assert wu["assimilate_state"] == ASSIMILATE_DONE and before <= wu["transition_time"] <= int(time.time())
    messages = [r.getMessage() for r in caplog.records]
    assert f"[WU#{wu_id} rjob_{job_id}] {EVENT_ASSIMILATED}" in messages
    assert any(m.startswith(f"[WU#{wu_id} rjob_{job_id}] {EVENT_JOB_DONE}") for m in messages)

    # The transitioner takes it from here: the files may now be deleted.
    make_due(project_db, wu_id)
    run_once(Transitioner, project)
    assert wu_row(project_db, wu_id)["file_delete_state"] == FILE_DELETE_READY


def test_errored_workunit_fails_the_job_with_rs_error(project, project_db, tmp_path):
    job_id, wu_id = running_job(project, project_db, tmp_path / "in")
    for _ in range(10):  # the script fails on every volunteer until there are too many errors
        for result in results_of(project_db, wu_id):
            if result["outcome"] == 0:
                report_error(project_db, result)
        make_due(project_db, wu_id)
        run_once(Transitioner, project)
        if wu_row(project_db, wu_id)["error_mask"]:
            break
    wu = wu_row(project_db, wu_id)
    assert wu["error_mask"] & WU_ERROR_TOO_MANY_ERROR_RESULTS and wu["assimilate_state"] == ASSIMILATE_READY

    assert run_once(Assimilator, project) == EXIT_OK
    job = store.load_job(project_db, job_id)
    assert job.state == "failed" and job.finish_time > 0
    assert "too many tasks failed" in job.error
    assert R_ERROR in job.error
    assert "exit status 1" in job.error and "process exited with code 1" in job.error
    assert job.error.count(R_ERROR) == 1  # the same stderr from every task is shown once
    assert stored(project, job_id) == {}
    assert wu_row(project_db, wu_id)["assimilate_state"] == ASSIMILATE_DONE


def test_no_canonical_result_sets_error_bit_32(project, project_db, tmp_path, caplog):
    job_id, wu_id = running_job(project, project_db, tmp_path / "in")
    project_db.execute("update workunit set assimilate_state = %s where id = %s", (ASSIMILATE_READY, wu_id))
    with caplog.at_level(logging.INFO, "boinc_ext.daemon"):
        assert run_once(Assimilator, project) == EXIT_OK
    assert wu_row(project_db, wu_id)["error_mask"] == WU_ERROR_NO_CANONICAL_RESULT
    job = store.load_job(project_db, job_id)
    assert job.state == "failed" and "no valid result" in job.error
    assert any(EVENT_NO_CANONICAL in r.getMessage() for r in caplog.records)


def test_killed_after_copying_then_rerun_stores_once(project, project_db, tmp_path, monkeypatch):
    job_id, wu_id = valid_job(project, project_db, tmp_path / "in", rds=b"rds")

    def copy_then_die(context):
        assimilate_r_job(context)
        raise Killed
    assimilator = Assimilator(project, DaemonOptions(one_pass=True), handlers={"r_job": copy_then_die})
    assimilator.setup()
    with pytest.raises(Killed):
        assimilator.do_pass()
    assimilator.db.close()
    assert stored(project, job_id) == {"result.rds": b"rds", "stdout.txt": b"[1] 3\n"}
    assert store.load_job(project_db, job_id).state == "running"  # the transaction never committed
    assert wu_row(project_db, wu_id)["assimilate_state"] == ASSIMILATE_READY

    assert run_once(Assimilator, project) == EXIT_OK
    assert stored(project, job_id) == {"result.rds": b"rds", "stdout.txt": b"[1] 3\n"}  # no leftovers
    job = store.load_job(project_db, job_id)
    assert job.state == "done"
    # Done is done: a later pass changes nothing.
    transition_time = wu_row(project_db, wu_id)["transition_time"]
    assert run_once(Assimilator, project) == EXIT_OK
    assert store.load_job(project_db, job_id) == job
    assert wu_row(project_db, wu_id)["transition_time"] == transition_time


def test_job_not_yet_linked_is_found_by_workunit_name(project, project_db, tmp_path):
    """The work generator died between creating the workunit and linking the job, and stayed down."""
    job_id, wu_id = valid_job(project, project_db, tmp_path / "in")
    project_db.execute("update ext_job set state = 'submitted', workunitid = 0 where id = %s", (job_id,))
    assert run_once(Assimilator, project) == EXIT_OK
    job = store.load_job(project_db, job_id)
    assert (job.state, job.workunit_id) == ("done", wu_id)


def test_unavailable_upload_directory_defers(project, project_db, tmp_path, caplog):
    job_id, wu_id = valid_job(project, project_db, tmp_path / "in", rds=b"late")
    project.upload_dir.rename(tmp_path / "unmounted")
    with caplog.at_level(logging.INFO, "boinc_ext.daemon"):
        assert run_once(Assimilator, project) == EXIT_OK
    wu = wu_row(project_db, wu_id)
    assert wu["assimilate_state"] == ASSIMILATE_INIT and wu["transition_time"] <= int(time.time())
    assert store.load_job(project_db, job_id).state == "running"
    assert any(EVENT_DEFERRED in r.getMessage() for r in caplog.records)

    (tmp_path / "unmounted").rename(project.upload_dir)
    make_due(project_db, wu_id)
    run_once(Transitioner, project)  # deferred assimilation: READY again
    assert wu_row(project_db, wu_id)["assimilate_state"] == ASSIMILATE_READY
    assert run_once(Assimilator, project) == EXIT_OK
    assert store.load_job(project_db, job_id).state == "done"
    assert stored(project, job_id)["result.rds"] == b"late"


def test_missing_result_file_fails_the_job(project, project_db, tmp_path):
    job_id, wu_id = valid_job(project, project_db, tmp_path / "in")
    (canonical,) = results_of(project_db, wu_id)
    output_paths(project, canonical)["result.rds"].unlink()
    assert run_once(Assimilator, project) == EXIT_OK
    job = store.load_job(project_db, job_id)
    assert job.state == "failed" and "has no result.rds" in job.error


def test_missing_stdout_is_tolerated(project, project_db, tmp_path):
    job_id, wu_id = running_job(project, project_db, tmp_path / "in")
    (result,) = results_of(project_db, wu_id)
    report_success(project, project_db, result, b"rds", stdout=None)
    validate(project_db, wu_id, result["id"])
    assert run_once(Assimilator, project) == EXIT_OK
    assert store.load_job(project_db, job_id).state == "done"
    assert stored(project, job_id) == {"result.rds": b"rds"}


def test_dont_update_db_changes_no_rows(project, project_db, tmp_path):
    job_id, wu_id = valid_job(project, project_db, tmp_path / "in", rds=b"dry")
    assert Assimilator(project, AssimilatorOptions.parse(["--one_pass", "-dont_update_db"])).run() == EXIT_OK
    assert wu_row(project_db, wu_id)["assimilate_state"] == ASSIMILATE_READY
    assert store.load_job(project_db, job_id).state == "running"
    assert stored(project, job_id)["result.rds"] == b"dry"


def test_workunit_without_a_job_is_assimilated(project, project_db, tmp_path, caplog):
    """An r_job workunit made by hand with create-work has no job to store into."""
    install_templates(project)
    script = tmp_path / "s.R"
    script.write_text("1\n")
    creator = WorkCreator(project, project_db, "r_job", ensure_input_template(project, 0), OUTPUT_TEMPLATE)
    wu_id = creator.create(WorkunitRequest("by_hand", [script]))
    make_due(project_db, wu_id)
    run_once(Transitioner, project)
    (result,) = results_of(project_db, wu_id)
    report_success(project, project_db, result, b"x")
    validate(project_db, wu_id, result["id"])
    with caplog.at_level(logging.INFO, "boinc_ext.daemon"):
        assert run_once(Assimilator, project) == EXIT_OK
    assert wu_row(project_db, wu_id)["assimilate_state"] == ASSIMILATE_DONE
    assert any(EVENT_NO_JOB in r.getMessage() and "by_hand" in r.getMessage() for r in caplog.records)


def test_handler_error_stops_the_daemon_and_rolls_back(project, project_db, tmp_path):
    job_id, wu_id = valid_job(project, project_db, tmp_path / "in")

    def broken(context):
        store.mark_done(context.db, job_id, context.wu["id"], context.now)
        raise RuntimeError("bug in a handler")
    options = DaemonOptions(one_pass=True)
    assert Assimilator(project, options, handlers={"r_job": broken}).run() == EXIT_FAILED
    assert wu_row(project_db, wu_id)["assimilate_state"] == ASSIMILATE_READY
    assert store.load_job(project_db, job_id).state == "running"


def test_app_flag_and_one_pass_n_wu(project, project_db, tmp_path):
    first, first_wu = valid_job(project, project_db, tmp_path / "a")
    second, second_wu = valid_job(project, project_db, tmp_path / "b", rds=b"other")
    assert run_once(Assimilator, project, one_pass_N_WU=1) == EXIT_OK
    states = [wu_row(project_db, w)["assimilate_state"] for w in (first_wu, second_wu)]
    assert sorted(states) == [ASSIMILATE_READY, ASSIMILATE_DONE]
    assert Assimilator(project, DaemonOptions(one_pass=True, app="mr_map")).run() == EXIT_FAILED  # no handler
    assert Assimilator(project, DaemonOptions(one_pass=True, app="r_job")).run() == EXIT_OK
    assert {store.load_job(project_db, j).state for j in (first, second)} == {"done"}


def test_mod_splits_workunits(project, project_db, tmp_path):
    jobs = [valid_job(project, project_db, tmp_path / str(i), rds=bytes([i])) for i in range(3)]
    Assimilator(project, DaemonOptions(one_pass=True, mod=(2, 1))).run()
    assert {j: store.load_job(project_db, j).state for j, w in jobs} == {
        j: "done" if w % 2 == 1 else "running" for j, w in jobs}


def test_runs_as_a_module_with_stock_flags(project, project_db, tmp_path):
    job_id, wu_id = valid_job(project, project_db, tmp_path / "in")
    run = subprocess.run([sys.executable, "-m", "boinc_ext.assimilator", "-app", "r_job", "-one_pass",
                          "-d", "3", "--project_dir", str(project.project_dir)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert f"[WU#{wu_id} rjob_{job_id}] {EVENT_ASSIMILATED}" in run.stderr
    assert store.load_job(project_db, job_id).state == "done"


def test_task_stderr_extracts_message_and_stderr():
    text = task_stderr(client_stderr("Error: boom\nExecution halted", 3).encode())
    assert text == "process exited with code 3 (0x3, -255)\nError: boom\nExecution halted"
    assert task_stderr(b"") == ""
    assert task_stderr("<core_client_version>7.20.5</core_client_version>\n<![CDATA[\nplain\n]]>") == "plain"
