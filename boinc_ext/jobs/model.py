"""What a job is: its states, its files, its limits and the errors a user can meet.

A job is the user's unit of work (an `ext_job` row plus `ext_job_file` rows); BOINC's
workunit and results are how it gets computed. The work generator moves a job from
`submitted` to `running`; the assimilator from `running` to `done` or `failed`.
"""
from __future__ import annotations

from dataclasses import dataclass

KIND_R_JOB = "r_job"          # ext_job.kind, and the BOINC app that runs it

STATE_SUBMITTED = "submitted"  # rows and staged inputs exist; no workunit yet
STATE_RUNNING = "running"      # linked to its workunit
STATE_DONE = "done"            # result files are in the job store
STATE_FAILED = "failed"        # error_msg says why
TERMINAL_STATES = (STATE_DONE, STATE_FAILED)

ROLE_SCRIPT = "script"         # ext_job_file.role
ROLE_DATA = "data"

SCRIPT_NAME = "script.R"       # open names fixed by docs/r_job.md
RESULT_NAME = "result.rds"
STDOUT_NAME = "stdout.txt"
OUTPUT_NAMES = (RESULT_NAME, STDOUT_NAME)
# A data file may not take a name the slot already uses for something else.
RESERVED_NAMES = frozenset({SCRIPT_NAME, RESULT_NAME, STDOUT_NAME, "stderr.txt", "init_data.xml"})

PHYSICAL_PREFIX = "rjob_"
WORKUNIT_PREFIX = "rjob_"

DEFAULT_REPLICATION = 1
MAX_REPLICATION = 20
DEFAULT_DEADLINE = 7 * 86400   # stock create_work's delay_bound
MAX_DATA_FILES = 100           # keeps the workunit's xml_doc well inside BOINC's 64 KB
SEED_LIMIT = 2 ** 31           # R's set.seed() takes a 32-bit integer


class JobError(Exception):
    """Something a user asked of a job cannot be done; the message says what and why."""


class JobInputError(JobError, ValueError):
    """A submission is malformed (missing file, bad name, bad number); nothing was created."""


class UnknownJobError(JobError, LookupError):
    """No job has this id."""


class JobNotFinishedError(JobError):
    """The job has no result yet."""


class JobFailedError(JobError):
    """The job failed; the message carries its error."""


@dataclass(frozen=True)
class Job:
    """One ext_job row, under the names users meet in submissions and status."""

    id: int
    name: str
    kind: str
    state: str
    userid: int
    replication: int
    deadline: int            # ext_job.delay_bound
    seed: int
    workunit_id: int         # ext_job.workunitid; 0 before the work generator links one
    create_time: int
    finish_time: int
    error: str | None        # ext_job.error_msg


@dataclass(frozen=True)
class JobFile:
    """One ext_job_file row: an input staged content-addressed in the download hierarchy."""

    role: str
    logical_name: str
    physical_name: str
    md5: str
    nbytes: int


def workunit_name(job_id: int) -> str:
    """Deterministic, so that a work generator killed after inserting the workunit finds it again."""
    return f"{WORKUNIT_PREFIX}{job_id}"


def job_id_from_workunit_name(name: str) -> int | None:
    tail = name[len(WORKUNIT_PREFIX):] if name.startswith(WORKUNIT_PREFIX) else ""
    return int(tail) if tail.isdigit() else None


def physical_name(md5: str, logical_name: str) -> str:
    """Content-addressed: the same bytes under the same name are staged once for every job."""
    return f"{PHYSICAL_PREFIX}{md5}_{logical_name}"
