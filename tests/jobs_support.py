"""Helpers for the tests of R jobs and the assimilator: real daemons in-process, and the row
changes the scheduler and validator would make (they are someone else's daemons)."""
from __future__ import annotations

import time
from pathlib import Path

from boinc_ext.jobs.submit import submit_job
from boinc_ext.jobs.work_generator import WorkGenerator
from boinc_ext.boinc.result_files import output_paths
from boinc_ext.transitioner.daemon import Transitioner
from boinc_ext.boinc.states import (ASSIMILATE_READY, INT_MAX, OUTCOME_CLIENT_ERROR, OUTCOME_SUCCESS,
                              SERVER_STATE_IN_PROGRESS, SERVER_STATE_OVER, VALIDATE_STATE_VALID)

R_ERROR = "Error in eval(ei, envir) : object 'undefined_var' not found\nExecution halted"


def client_stderr(text: str, exit_code: int = 1) -> str:
    """A result's stderr_out as the 7.20 client reports a failed task."""
    return ("<core_client_version>7.20.5</core_client_version>\n<![CDATA[\n<message>\n"
            f"process exited with code {exit_code} (0x{exit_code:x}, -255)</message>\n"
            f"<stderr_txt>\n{text}\n</stderr_txt>\n]]>\n")


def write_inputs(directory: Path, script: str = "x <- read.csv('data.csv')\nsum(x$a)\n",
                 data: dict[str, str] | None = None) -> tuple[Path, list[Path]]:
    """The script (as analysis.R) and data files (default: one data.csv) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    script_path = directory / "analysis.R"
    script_path.write_text(script)
    paths = []
    for name, text in ({"data.csv": "a,b\n1,2\n"} if data is None else data).items():
        path = directory / name
        path.write_text(text)
        paths.append(path)
    return script_path, paths


def run_once(daemon_class, config, **extra) -> int:
    return daemon_class(config, daemon_class.options_class(one_pass=True, **extra)).run()


def make_due(db, wu_id: int) -> None:
    db.execute("update workunit set transition_time = %s where id = %s", (int(time.time()) - 1, wu_id))


def running_job(project, db, directory: Path, replication: int = 1,
                data: dict[str, str] | None = None) -> tuple[int, int]:
    """A submitted job taken up by the work generator and given results by the transitioner."""
    script, paths = write_inputs(directory, data=data)
    job_id = submit_job(project, db, script, paths, replication=replication, seed=42)
    assert run_once(WorkGenerator, project) == 0
    wu_id = db.scalar("select workunitid from ext_job where id = %s", (job_id,))
    assert wu_id
    make_due(db, wu_id)  # created this second; the transitioner takes what is strictly due
    assert run_once(Transitioner, project) == 0
    assert len(results_of(db, wu_id)) == replication
    return job_id, wu_id


def results_of(db, wu_id: int) -> list[dict]:
    return db.query("select * from result where workunitid = %s order by id", (wu_id,))


def report_success(project, db, result: dict, rds: bytes, stdout: bytes | None = b"[1] 3\n") -> None:
    """A task that ran and uploaded its outputs, as the scheduler and upload handler leave it."""
    files = output_paths(project, result)
    files["result.rds"].parent.mkdir(parents=True, exist_ok=True)
    files["result.rds"].write_bytes(rds)
    if stdout is not None:
        files["stdout.txt"].parent.mkdir(parents=True, exist_ok=True)
        files["stdout.txt"].write_bytes(stdout)
    now = int(time.time())
    db.execute("update result set server_state = %s, outcome = %s, client_state = 5, hostid = 1, "
               "sent_time = %s, received_time = %s, exit_status = 0 where id = %s",
               (SERVER_STATE_OVER, OUTCOME_SUCCESS, now - 60, now, result["id"]))


def report_error(db, result: dict, stderr: str = R_ERROR, exit_code: int = 1) -> None:
    now = int(time.time())
    db.execute("update result set server_state = %s, outcome = %s, client_state = 3, hostid = 1, "
               "sent_time = %s, received_time = %s, exit_status = %s, stderr_out = %s where id = %s",
               (SERVER_STATE_OVER, OUTCOME_CLIENT_ERROR, now - 60, now, exit_code,
                client_stderr(stderr, exit_code), result["id"]))


def send(db, result: dict) -> None:
    now = int(time.time())
    db.execute("update result set server_state = %s, hostid = 1, sent_time = %s, report_deadline = %s "
               "where id = %s", (SERVER_STATE_IN_PROGRESS, now, now + 3600, result["id"]))


def validate(db, wu_id: int, canonical_id: int) -> None:
    """What the validator does once a quorum agrees."""
    with db.transaction():
        db.execute("update result set validate_state = %s where workunitid = %s and outcome = %s",
                   (VALIDATE_STATE_VALID, wu_id, OUTCOME_SUCCESS))
        db.execute("update workunit set canonical_resultid = %s, assimilate_state = %s, need_validate = 0, "
                   "transition_time = %s where id = %s", (canonical_id, ASSIMILATE_READY, INT_MAX, wu_id))


def valid_job(project, db, directory: Path, rds: bytes = b"RDS-bytes", replication: int = 1) -> tuple[int, int]:
    """A job whose workunit the validator has just made valid: ready to assimilate."""
    job_id, wu_id = running_job(project, db, directory, replication=replication)
    results = results_of(db, wu_id)
    for result in results:
        report_success(project, db, result, rds)
    validate(db, wu_id, results[0]["id"])
    return job_id, wu_id
