"""Submitting an R job: check everything, stage the inputs, then insert the rows in one transaction.

Every check runs before anything is written; if staging or the insert fails anyway, the
files this submission staged are removed again, so a refused or failed submission leaves
nothing behind.
"""
from __future__ import annotations

import logging
import re
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.boinc.db import Database, DuplicateKeyError
from boinc_ext.boinc.hierarchy import MAX_NAME_LENGTH, BadFileName, check_file_name
from boinc_ext.jobs import store
from boinc_ext.jobs.model import (DEFAULT_DEADLINE, DEFAULT_REPLICATION, KIND_R_JOB, MAX_DATA_FILES, MAX_REPLICATION,
                    RESERVED_NAMES, ROLE_DATA, ROLE_SCRIPT, SCRIPT_NAME, SEED_LIMIT, JobInputError,
                    physical_name)
from boinc_ext.jobs.staging import InputStaging, JobInput

log = logging.getLogger("boinc_ext.jobs")

EVENT_JOB_SUBMITTED = "job submitted"

_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_AUTOMATIC_NAME = re.compile(r"^job_\d+$")
# The physical name rjob_<md5>_<logical> must itself fit BOINC's file name limit.
MAX_LOGICAL_NAME = MAX_NAME_LENGTH - len(physical_name("0" * 32, ""))


@dataclass(frozen=True)
class JobRequest:
    """What a user submits. `seed` None means a random one, stored with the job."""

    script: Path
    data: Sequence[Path] = ()
    replication: int = DEFAULT_REPLICATION
    deadline: int = DEFAULT_DEADLINE
    seed: int | None = None
    name: str | None = None
    userid: int = 0


def submit_job(config: ProjectConfig, db: Database, script: Path | str, data: Sequence[Path | str] = (), *,
               replication: int = DEFAULT_REPLICATION, deadline: int = DEFAULT_DEADLINE,
               seed: int | None = None, name: str | None = None, userid: int = 0) -> int:
    """Creates a submitted job and returns its id; raises JobInputError for bad input."""
    return submit(config, db, JobRequest(Path(script), tuple(map(Path, data)), replication, deadline,
                                         seed, name, userid))


def submit(config: ProjectConfig, db: Database, request: JobRequest) -> int:
    """submit_job() for a ready-made JobRequest."""
    inputs = checked_inputs(request)
    _check_numbers(request)
    name = _checked_name(request.name)
    if name is not None and store.job_name_taken(db, name):
        raise JobInputError(f"--name {name}: a job of that name already exists")
    seed = request.seed if request.seed is not None else secrets.randbelow(SEED_LIMIT)

    staging = InputStaging(config)
    try:
        files = staging.stage(inputs)
        with db.transaction():
            job_id = store.insert_job(db, name=name, kind=KIND_R_JOB, userid=request.userid,
                                      replication=request.replication, delay_bound=request.deadline,
                                      seed=seed, now=int(time.time()))
            store.insert_job_files(db, job_id, files)
    except DuplicateKeyError:
        staging.rollback()
        raise JobInputError(f"--name {name}: a job of that name already exists (submitted meanwhile)") from None
    except BaseException:
        staging.rollback()
        raise
    staging.commit()
    log.info("[JOB#%d %s] %s: %s with %d data file(s), replication %d, deadline %d s, seed %d",
             job_id, name or store.default_job_name(job_id), EVENT_JOB_SUBMITTED, SCRIPT_NAME,
             len(inputs) - 1, request.replication, request.deadline, seed)
    return job_id


def checked_inputs(request: JobRequest) -> list[JobInput]:
    """The script and data files as staged inputs, or JobInputError naming the bad one."""
    _require_file(request.script, "script")
    if len(request.data) > MAX_DATA_FILES:
        raise JobInputError(f"{len(request.data)} data files: at most {MAX_DATA_FILES} per job")
    inputs = [JobInput(ROLE_SCRIPT, SCRIPT_NAME, Path(request.script))]
    for path in map(Path, request.data):
        _require_file(path, "data file")
        inputs.append(JobInput(ROLE_DATA, _data_name(path), path))
    repeated = sorted(n for n, count in Counter(i.logical_name for i in inputs[1:]).items() if count > 1)
    if repeated:
        raise JobInputError(f"data files with the same name: {', '.join(repeated)} "
                            f"(the script opens data files by name, so names must differ)")
    return inputs


def _require_file(path: Path, what: str) -> None:
    if not Path(path).is_file():
        raise JobInputError(f"{what} {path}: no such file")


def _data_name(path: Path) -> str:
    name = path.name
    try:
        check_file_name(name, f"data file {path}: name")
    except BadFileName as exc:
        raise JobInputError(str(exc)) from None
    if len(name) > MAX_LOGICAL_NAME:
        raise JobInputError(f"data file {path}: name longer than {MAX_LOGICAL_NAME} characters")
    if name in RESERVED_NAMES:
        raise JobInputError(f"data file {path}: the name {name!r} is taken by the job itself "
                            f"(reserved: {', '.join(sorted(RESERVED_NAMES))}); rename the file")
    return name


def _check_numbers(request: JobRequest) -> None:
    if not isinstance(request.replication, int) or not 1 <= request.replication <= MAX_REPLICATION:
        raise JobInputError(f"--replication {request.replication}: must be a whole number "
                            f"from 1 to {MAX_REPLICATION}")
    if not isinstance(request.deadline, int) or request.deadline <= 0:
        raise JobInputError(f"--deadline {request.deadline}: must be a positive number of seconds")
    if request.seed is not None and not 0 <= request.seed < SEED_LIMIT:
        raise JobInputError(f"--seed {request.seed}: must be from 0 to {SEED_LIMIT - 1}")


def _checked_name(name: str | None) -> str | None:
    if name is None:
        return None
    if not _JOB_NAME.match(name) or len(name) > MAX_NAME_LENGTH:
        raise JobInputError(f"--name {name!r}: use letters, digits and _ . + - only, "
                            f"starting with a letter or digit, at most {MAX_NAME_LENGTH} characters")
    if _AUTOMATIC_NAME.match(name):
        raise JobInputError(f"--name {name}: names job_<number> are given to unnamed jobs; choose another")
    return name
