"""Handing a finished job's result files to the user."""
from __future__ import annotations

import filecmp
import logging
from pathlib import Path

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.boinc.db import Database
from boinc_ext.jobs import store
from boinc_ext.jobs.model import (OUTPUT_NAMES, RESULT_NAME, STATE_DONE, STATE_FAILED, JobError, JobFailedError,
                    JobNotFinishedError, UnknownJobError)
from boinc_ext.jobs.result_store import copy_atomically, result_path

log = logging.getLogger("boinc_ext.jobs")


def fetch_result(config: ProjectConfig, db: Database, job_id: int, out_dir: Path | str) -> list[Path]:
    """Copies the result files of a done job into `out_dir`; returns their paths there.

    A file already in `out_dir` with other content is never overwritten (JobError)."""
    job = store.load_job(db, job_id)
    if job is None:
        raise UnknownJobError(f"no job with id {job_id}")
    if job.state == STATE_FAILED:
        raise JobFailedError(f"job {job.id} ({job.name}) failed:\n{job.error or '(no message)'}")
    if job.state != STATE_DONE:
        raise JobNotFinishedError(f"job {job.id} ({job.name}) is {job.state}, not finished yet; "
                                  f"`boinc-ext job status` shows how far it got")
    sources = [result_path(config, job.id, name) for name in OUTPUT_NAMES]
    sources = [p for p in sources if p.is_file()]
    if result_path(config, job.id, RESULT_NAME) not in sources:
        raise JobError(f"job {job.id} ({job.name}) is done, but its {RESULT_NAME} is missing "
                       f"from the job store ({result_path(config, job.id, RESULT_NAME)})")
    out_dir = Path(out_dir)
    targets = [out_dir / source.name for source in sources]
    for source, target in zip(sources, targets, strict=True):
        if target.exists() and not filecmp.cmp(source, target, shallow=False):
            raise JobError(f"{target}: exists with other content; choose another output directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    for source, target in zip(sources, targets, strict=True):
        copy_atomically(source, target)
    log.info("[JOB#%d %s] result written to %s", job.id, job.name, out_dir)
    return targets
