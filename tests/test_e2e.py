"""End to end with real BOINC clients: three Debian boinc-client processes attached through
the web RPCs to a project served by the embedded server with all its daemons, running R jobs
through the wrapper. Slow by nature (the client acts in steps of about 5 s)."""
import os
import time

import pytest

from boinc_ext.jobs.result import fetch_result
from boinc_ext.local_grid import LocalGrid, run_locally, same_r_value
from boinc_ext.states import OUTCOME_SUCCESS, VALIDATE_STATE_VALID
from boinc_ext.volunteer import boinc_available

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(boinc_available() is not None, reason=str(boinc_available()))]

JOB_TIMEOUT = 240


@pytest.fixture(scope="module")
def grid(mariadb, tmp_path_factory):
    grid = LocalGrid(tmp_path_factory.mktemp("grid"), mariadb.settings(f"e2e{os.getpid()}"), n_volunteers=3,
                     name="e2e", checkpoint_period=2)
    try:
        grid.start()
        yield grid
    finally:
        grid.stop()


def script(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def wait_one(grid, job_id, timeout=JOB_TIMEOUT):
    status = grid.wait([job_id], timeout)[job_id]
    assert status.state in ("done", "failed"), f"job {job_id} still {status.state} after {timeout} s"
    return status


def results_of(grid, job_id):
    with grid.database() as db:
        wu = db.scalar("select workunitid from ext_job where id = %s", (job_id,))
        return db.query("select * from result where workunitid = %s order by id", (wu,))


def check_against_local_run(grid, job_id, path, tmp_path, data=()):
    status = grid.status(job_id)
    with grid.database() as db:
        fetched = fetch_result(grid.config, db, job_id, tmp_path / f"result_{job_id}")
    remote = next(p for p in fetched if p.name == "result.rds")
    local = run_locally(path, list(data), status.seed, tmp_path / f"local_{job_id}")
    assert same_r_value(remote, local)


def test_replicated_stochastic_job_validates_on_two_hosts(grid, tmp_path):
    path = script(tmp_path, "bootstrap.R",
                  "x <- c(2.1, 3.4, 1.9, 5.6, 4.4, 3.3, 2.8, 4.9)\n"
                  "boot <- replicate(2000, mean(sample(x, replace = TRUE)))\n"
                  "c(estimate = mean(x), se = sd(boot))\n")
    job_id = grid.submit(path, replication=2)
    status = wait_one(grid, job_id)
    assert status.state == "done", status.error
    results = results_of(grid, job_id)
    valid = [r for r in results if r["outcome"] == OUTCOME_SUCCESS and r["validate_state"] == VALIDATE_STATE_VALID]
    assert len(valid) == 2 and len({r["hostid"] for r in valid}) == 2
    assert all(r["granted_credit"] > 0 for r in valid)
    check_against_local_run(grid, job_id, path, tmp_path)


def test_failing_script_fails_the_job_with_the_r_error(grid, tmp_path):
    path = script(tmp_path, "fails.R", "x <- 1\nstop('the data are not what I expected')\n")
    status = wait_one(grid, grid.submit(path, replication=1))
    assert status.state == "failed"
    assert "the data are not what I expected" in status.error


def test_vanished_volunteer_job_is_resent_after_the_deadline(grid, tmp_path):
    path = script(tmp_path, "slow.R", "Sys.sleep(20)\nsum(sqrt(1:1000))\n")
    job_id = grid.submit(path, replication=1, deadline=30)
    volunteer, task = _wait_for_running_task(grid, f"rjob_{job_id}_")
    volunteer.kill()           # SIGKILL, client and task: it never reports
    try:
        status = wait_one(grid, job_id, timeout=JOB_TIMEOUT + 60)
        assert status.state == "done", status.error
        results = results_of(grid, job_id)
        assert len(results) >= 2 and results[0]["outcome"] == 4   # NO_REPLY, then a replica elsewhere
        check_against_local_run(grid, job_id, path, tmp_path)
    finally:
        volunteer.start()


def _wait_for_running_task(grid, prefix, min_fraction=0.0, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for volunteer in grid.volunteers:
            for task in volunteer.tasks():
                if task.name.startswith(prefix) and task.active_state == "EXECUTING" \
                        and task.fraction_done >= min_fraction:
                    return volunteer, task
        time.sleep(0.5)
    raise AssertionError(f"no volunteer ran a task {prefix}* within {timeout} s")
