"""R jobs for users: submit a script and data, follow its status, fetch its result.

The API the CLI (`boinc-ext job ...`) and the web pages call:

    job_id = submit_job(config, db, "script.R", ["data.csv"], replication=2)
    status = job_status(config, db, job_id)          # a JobStatus
    fetch_result(config, db, job_id, "out/")         # once status.state == "done"

The work generator daemon (`python -m boinc_ext.jobs.work_generator`) turns submitted jobs
into r_job workunits; the assimilator (`python -m boinc_ext.assimilator`) stores results.
"""
from boinc_ext.jobs.model import (JobError, JobFailedError, JobInputError, JobNotFinishedError, UnknownJobError)
from boinc_ext.jobs.result import fetch_result
from boinc_ext.jobs.status import JobStatus, ResultCounts, job_status
from boinc_ext.jobs.submit import JobRequest, submit_job

__all__ = ["JobError", "JobFailedError", "JobInputError", "JobNotFinishedError", "UnknownJobError",
           "fetch_result", "JobStatus", "ResultCounts", "job_status",
           "JobRequest", "submit_job"]
