"""End to end with real BOINC clients: three Debian boinc-client processes attached through
the web RPCs to a project served by the embedded server with all its daemons, running R jobs
through the wrapper. Slow by nature (the client acts in steps of about 5 s)."""
import http.client
import os
import re
import signal
import time
from urllib.parse import urlsplit

import pytest
from sched_client import scheduler_request
from upload_client import parse_reply, upload_body

from boinc_ext.boinc import crypto
from boinc_ext.daemons.control import running_pid
from boinc_ext.jobs.result import fetch_result
from boinc_ext.local.grid import LocalGrid, run_locally, same_r_value
from boinc_ext.server.scheduler.request import MAX_REQUEST_BYTES
from boinc_ext.server.scheduler.handler import scheduler_url
from boinc_ext.server.uploads import STATUS_OK, STATUS_PERMANENT
from boinc_ext.boinc.states import OUTCOME_NO_REPLY, OUTCOME_SUCCESS, VALIDATE_STATE_VALID
from boinc_ext.local.volunteer import boinc_available
from wrapper import events as wrapper_events

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
    assert status.state in ("done", "failed"), \
        f"job {job_id} still {status.state} after {timeout} s\n{grid_picture(grid, job_id)}"
    return status


def grid_picture(grid, job_id) -> str:
    """What a stuck job's rows and the clients' tasks look like, for the failure message."""
    columns = ("name", "hostid", "server_state", "outcome", "client_state", "validate_state")
    rows = [{c: r[c] for c in columns} for r in results_of(grid, job_id)]
    tasks = {str(v.directory.name): [(t.name, t.state, t.active_state) for t in v.tasks()] if v.running
             else "not running" for v in grid.volunteers}
    logs = {str(v.directory.name): v.log_tail(15) for v in grid.volunteers}
    return f"results: {rows}\nclient tasks: {tasks}\nclient logs: {logs}"


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
    volunteer, _ = _wait_for_running_task(grid, f"rjob_{job_id}_")
    volunteer.kill()           # SIGKILL, client and task: it never reports
    try:
        status = wait_one(grid, job_id, timeout=JOB_TIMEOUT + 60)
        assert status.state == "done", status.error
        results = results_of(grid, job_id)
        assert len(results) >= 2 and results[0]["outcome"] == OUTCOME_NO_REPLY   # NO_REPLY, then a replica elsewhere
        check_against_local_run(grid, job_id, path, tmp_path)
    finally:
        volunteer.start()


def test_task_quit_by_the_client_resumes_from_its_checkpoint(grid, tmp_path):
    path = script(tmp_path, "loop.R",
                  "total <- 0\nboinc_for(i, 1:40, {\n  Sys.sleep(1)\n  total <- total + i\n"
                  "  boinc_progress(i / 40)\n})\ntotal\n")
    job_id = grid.submit(path, replication=1)
    volunteer, _ = _wait_for_running_task(grid, f"rjob_{job_id}_", min_fraction=0.3)
    volunteer.stop()           # SIGTERM: the client sends <quit/> to its tasks and exits
    volunteer.start()          # the client restarts the task in its slot
    status = wait_one(grid, job_id)
    assert status.state == "done", status.error
    [result] = results_of(grid, job_id)
    stderr = text_of(result["stderr_out"])
    assert stderr.count(wrapper_events.STARTED) == 2, stderr
    assert wrapper_events.QUIT in stderr
    resumed = re.search(rf"{wrapper_events.CHECKPOINT_RESTORED} at expression \d+, iteration (\d+)", stderr)
    assert resumed is not None, stderr
    assert int(resumed.group(1)) >= 6, "the restarted task did not resume from a late checkpoint"
    check_against_local_run(grid, job_id, path, tmp_path)


def text_of(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


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


def test_daemons_killed_mid_pass_lose_nothing_and_do_nothing_twice(grid, tmp_path):
    paths = [script(tmp_path, f"mc{i}.R", f"n <- {20000 + i}\nu <- runif(n)\nmean(4 * sqrt(1 - u^2))\n")
             for i in range(4)]
    job_ids = [grid.submit(p, replication=2) for p in paths]
    for _ in range(5):
        time.sleep(3)
        for entry in grid.config.daemons_for_this_host():
            pid = running_pid(grid.config, entry)
            if pid is not None and entry.program != "ext_server":
                os.kill(pid, signal.SIGKILL)
        grid.start_daemons()
    statuses = grid.wait(job_ids, JOB_TIMEOUT)
    assert all(s.state == "done" for s in statuses.values()), {k: (s.state, s.error) for k, s in statuses.items()}
    with grid.database() as db:
        for job_id in job_ids:
            assert db.scalar("select count(*) from workunit where name = %s", (f"rjob_{job_id}",)) == 1
            assert len(results_of(grid, job_id)) == 2     # no replica created twice
        for row in db.query("select id, total_credit from user"):
            granted = db.scalar("select coalesce(sum(granted_credit), 0) from result where userid = %s",
                                (row["id"],))
            assert abs(row["total_credit"] - granted) < 1e-6
    for job_id, path in zip(job_ids, paths):
        check_against_local_run(grid, job_id, path, tmp_path)


def http_request(url: str, method: str = "GET", body: bytes | None = None, raw_path: str | None = None,
                 headers: dict | None = None) -> tuple[int, bytes]:
    """One request on a fresh connection; `raw_path` goes on the wire as given (no normalising)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(method, raw_path or parts.path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_bad_input_gets_clear_errors_and_the_server_keeps_serving(grid, tmp_path):
    scheduler = scheduler_url(grid.config)
    status, body = http_request(scheduler, "POST", b"<scheduler_request><authenticator>x</scheduler_request")
    assert status == 200 and b"<message" in body and b"<request_delay>" in body
    status, body = http_request(scheduler, "POST", b"<scheduler_request>" + b" " * MAX_REQUEST_BYTES)
    assert status == 413
    status, body = http_request(scheduler, "POST", scheduler_request("not-an-account"))
    assert status == 200 and b"<message" in body

    upload_url, key = grid.config.upload_url, crypto.read_private_key(grid.config.key_dir / "upload_private")
    other_key, _ = crypto.generate_key_pair()
    def upload(body: bytes) -> tuple[int, str]:
        status, reply = http_request(upload_url, "POST", body)
        assert status == 200
        code, message, _ = parse_reply(reply.decode())
        return code, message
    code, message = upload(upload_body("e2e_forged_out", b"forged", other_key))
    assert code == STATUS_PERMANENT and "invalid upload certificate" in message
    code, message = upload(upload_body("e2e_big_out", b"x" * 200, key, max_nbytes=100))
    assert code == STATUS_PERMANENT and "exceeds the limit of 100 bytes" in message
    code, message = upload(upload_body("../e2e_escape_out", b"evil", key))
    assert code == STATUS_PERMANENT and message
    assert not (grid.config.upload_dir.parent / "e2e_escape_out").exists()

    download = urlsplit(grid.config.download_url).path
    for trick in ("/../keys/upload_private", "/%2e%2e/keys/upload_private", "/..%2fkeys%2fupload_private"):
        status, body = http_request(grid.config.download_url, raw_path=download + trick)
        assert status in (400, 403, 404) and b"PRIVATE" not in body.upper()

    assert upload(upload_body("e2e_fine_out", b"fine", key))[0] == STATUS_OK
    path = script(tmp_path, "after.R", "sum(1:100)\n")
    status = wait_one(grid, grid.submit(path, replication=1))
    assert status.state == "done", status.error
    check_against_local_run(grid, status.id, path, tmp_path)
