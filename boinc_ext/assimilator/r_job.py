"""Assimilating r_job workunits into the job store.

A valid workunit's canonical result files (result.rds, and stdout.txt when present) are
copied into `<project>/jobs/<id>/result/` and the job becomes `done`; a failed workunit
makes the job `failed`, with the error bits and the failed tasks' stderr (R's error
message) as its error. Copies replace files atomically and the job update is guarded by
the job's state, so running the handler again after a crash neither fails nor duplicates.
"""
from __future__ import annotations

from pathlib import Path

from ..jobs import store
from ..jobs.model import RESULT_NAME, STDOUT_NAME, TERMINAL_STATES, Job
from ..jobs.result_store import copy_atomically, result_path
from ..result_files import ResultFilesError, output_paths
from .context import AssimilationContext, AssimilationDeferred
from .failure_report import failure_message

EVENT_JOB_DONE = "job done"
EVENT_JOB_FAILED = "job failed"
EVENT_NO_JOB = "no job for this workunit; nothing to store"
EVENT_ALREADY_FINISHED = "job already finished"


def assimilate_r_job(ctx: AssimilationContext) -> None:
    job = store.job_for_workunit(ctx.db, ctx.wu["id"], ctx.wu["name"], lock=True)
    if job is None:
        ctx.log.warning("%s", EVENT_NO_JOB)
        return
    if job.state in TERMINAL_STATES:
        ctx.log.info("%s: job %d (%s) is %s", EVENT_ALREADY_FINISHED, job.id, job.name, job.state)
        return
    if ctx.canonical is None:
        _fail(ctx, job, failure_message(ctx.wu, ctx.results))
        return
    try:
        outputs = output_paths(ctx.config, ctx.canonical)
    except ResultFilesError as exc:
        _fail(ctx, job, f"the valid result {ctx.canonical['name']} lists no usable output files: {exc}")
        return
    if not ctx.config.upload_dir.is_dir():
        raise AssimilationDeferred(f"upload directory {ctx.config.upload_dir} is missing (not mounted?)")
    source = outputs.get(RESULT_NAME)
    if source is None or not source.is_file():
        _fail(ctx, job, f"the valid result {ctx.canonical['name']} has no {RESULT_NAME} "
                        f"({source or 'not among its outputs'})")
        return
    _store(ctx, job, RESULT_NAME, source)
    stdout = outputs.get(STDOUT_NAME)
    if stdout is not None and stdout.is_file():
        _store(ctx, job, STDOUT_NAME, stdout)
    else:
        ctx.log.warning("job %d (%s): no %s in the valid result %s", job.id, job.name, STDOUT_NAME,
                        ctx.canonical["name"])
    store.mark_done(ctx.db, job.id, ctx.wu["id"], ctx.now)
    ctx.log.info("%s: job %d (%s), result of %s stored", EVENT_JOB_DONE, job.id, job.name,
                 ctx.canonical["name"])


def _store(ctx: AssimilationContext, job: Job, open_name: str, source: Path) -> None:
    try:
        copy_atomically(source, result_path(ctx.config, job.id, open_name))
    except OSError as exc:
        raise AssimilationDeferred(f"cannot copy {source} into the job store: {exc}") from None


def _fail(ctx: AssimilationContext, job: Job, message: str) -> None:
    store.mark_failed(ctx.db, job.id, message, ctx.now, workunit_id=ctx.wu["id"])
    ctx.log.warning("%s: job %d (%s): %s", EVENT_JOB_FAILED, job.id, job.name, message.splitlines()[0])
