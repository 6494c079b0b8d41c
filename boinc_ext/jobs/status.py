"""A job's status for users: its state, its workunit's results, its times and its error."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.boinc.db import Database
from boinc_ext.boinc.states import (OUTCOME_CLIENT_DETACHED, OUTCOME_CLIENT_ERROR, OUTCOME_COULDNT_SEND, OUTCOME_NO_REPLY,
                      OUTCOME_SUCCESS, OUTCOME_VALIDATE_ERROR, SERVER_STATE_INACTIVE, SERVER_STATE_IN_PROGRESS,
                      SERVER_STATE_OVER, SERVER_STATE_UNSENT, VALIDATE_STATE_VALID)
from boinc_ext.jobs import store
from boinc_ext.jobs.model import Job, UnknownJobError

_ERROR_OUTCOMES = (OUTCOME_CLIENT_ERROR, OUTCOME_VALIDATE_ERROR)
_LOST_OUTCOMES = (OUTCOME_NO_REPLY, OUTCOME_CLIENT_DETACHED, OUTCOME_COULDNT_SEND)


@dataclass(frozen=True)
class ResultCounts:
    """The job's BOINC results (replicas) by what happened to them."""

    unsent: int = 0
    in_progress: int = 0
    success: int = 0       # returned without error (valid or not yet judged)
    error: int = 0         # the script or the client failed, or the output did not validate
    lost: int = 0          # never came back (deadline passed, host detached, couldn't send)
    valid: int = 0         # among success: agreed with the quorum


@dataclass(frozen=True)
class JobStatus(Job):
    """The job, and how far its workunit got."""

    start_time: int = 0                  # when its workunit was created; 0 before
    workunit_name: str | None = None
    results: ResultCounts = field(default_factory=ResultCounts)
    inputs: tuple[str, ...] = ()


def job_status(config: ProjectConfig, db: Database, job_id: int) -> JobStatus:
    """Raises UnknownJobError for an id that names no job."""
    with db.transaction():  # one consistent snapshot of the job and its results
        job = store.load_job(db, job_id)
        if job is None:
            raise UnknownJobError(f"no job with id {job_id}")
        files = store.job_files(db, job_id)
        wu = None
        results: list[dict] = []
        if job.workunit_id:
            wu = db.query_one("select name, create_time from workunit where id = %s", (job.workunit_id,))
            results = db.query("select server_state, outcome, validate_state from result "
                               "where workunitid = %s", (job.workunit_id,))
    return JobStatus(**{f.name: getattr(job, f.name) for f in fields(Job)},
                     start_time=wu["create_time"] if wu else 0, workunit_name=wu["name"] if wu else None,
                     results=count_results(results), inputs=tuple(f.logical_name for f in files))


def count_results(rows: list[dict]) -> ResultCounts:
    counts = dict.fromkeys(("unsent", "in_progress", "success", "error", "lost", "valid"), 0)
    for row in rows:
        state, outcome = row["server_state"], row["outcome"]
        if state in (SERVER_STATE_UNSENT, SERVER_STATE_INACTIVE):
            counts["unsent"] += 1
        elif state == SERVER_STATE_IN_PROGRESS:
            counts["in_progress"] += 1
        elif state == SERVER_STATE_OVER:
            if outcome == OUTCOME_SUCCESS:
                counts["success"] += 1
                counts["valid"] += row["validate_state"] == VALIDATE_STATE_VALID
            elif outcome in _ERROR_OUTCOMES:
                counts["error"] += 1
            elif outcome in _LOST_OUTCOMES:
                counts["lost"] += 1
    return ResultCounts(**counts)
