"""The job store's rows: ext_job and ext_job_file, read and moved between states.

Every state change is a guarded UPDATE (`... where state = <expected>`) so that a repeated
or concurrent call changes nothing twice; the caller holds the transaction.
"""
from __future__ import annotations

import secrets
from collections.abc import Sequence

from boinc_ext.boinc.db import Database
from boinc_ext.jobs.model import (STATE_DONE, STATE_FAILED, STATE_RUNNING, STATE_SUBMITTED, Job, JobFile,
                    job_id_from_workunit_name)

_JOB_COLUMNS = ("id, name, kind, state, userid, replication, delay_bound, seed, workunitid, "
                "create_time, finish_time, error_msg")
_OPEN_STATES = (STATE_SUBMITTED, STATE_RUNNING)
_PLACEHOLDER_PREFIX = "~new~"  # unique until the id is known, in the same transaction


def insert_job(db: Database, *, name: str | None, kind: str, userid: int, replication: int,
               delay_bound: int, seed: int, now: int) -> int:
    """Inserts a submitted job; without a name it is called `job_<id>`. Caller holds the transaction."""
    job_id = db.insert(
        "insert into ext_job (create_time, userid, kind, name, state, replication, delay_bound, seed, "
        "workunitid, finish_time, error_msg) values (%s, %s, %s, %s, %s, %s, %s, %s, 0, 0, NULL)",
        (now, userid, kind, name or _PLACEHOLDER_PREFIX + secrets.token_hex(16), STATE_SUBMITTED,
         replication, delay_bound, seed))
    if name is None:
        db.execute("update ext_job set name = %s where id = %s", (default_job_name(job_id), job_id))
    return job_id


def default_job_name(job_id: int) -> str:
    return f"job_{job_id}"


def insert_job_files(db: Database, job_id: int, files: Sequence[JobFile]) -> None:
    db.executemany(
        "insert into ext_job_file (job_id, role, logical_name, physical_name, md5, nbytes) "
        "values (%s, %s, %s, %s, %s, %s)",
        [(job_id, f.role, f.logical_name, f.physical_name, f.md5, f.nbytes) for f in files])


def job_name_taken(db: Database, name: str) -> bool:
    return db.scalar("select count(*) from ext_job where name = %s", (name,)) > 0


def load_job(db: Database, job_id: int, *, lock: bool = False) -> Job | None:
    row = db.query_one(f"select {_JOB_COLUMNS} from ext_job where id = %s"
                       f"{' for update' if lock else ''}", (job_id,))
    return _job(row) if row else None


def job_files(db: Database, job_id: int) -> list[JobFile]:
    """The job's inputs: the script first, then the data files in submission order."""
    rows = db.query("select role, logical_name, physical_name, md5, nbytes from ext_job_file "
                    "where job_id = %s order by role = 'script' desc, id", (job_id,))
    return [JobFile(r["role"], r["logical_name"], r["physical_name"], r["md5"], int(r["nbytes"]))
            for r in rows]


def submitted_job_ids(db: Database, kind: str, limit: int, extra_clause: str = "") -> list[int]:
    rows = db.query(f"select id from ext_job where state = %s and kind = %s{extra_clause} "
                    f"order by id limit %s", (STATE_SUBMITTED, kind, limit))
    return [row["id"] for row in rows]


def submitted_job_since(db: Database, since: int) -> bool:
    """Whether a job created at or after `since` still waits for its workunit (one short
    range of the ext_job_state index, read up to its first match)."""
    return bool(db.scalar("select 1 from ext_job where state = %s and create_time >= %s limit 1",
                          (STATE_SUBMITTED, since)))


def job_for_workunit(db: Database, wu_id: int, wu_name: str, *, lock: bool = False) -> Job | None:
    """The job a workunit computes: linked by workunitid, or (if the work generator died before
    linking) named by the workunit's deterministic name and not linked elsewhere."""
    suffix = " for update" if lock else ""
    row = db.query_one(f"select {_JOB_COLUMNS} from ext_job where workunitid = %s{suffix}", (wu_id,))
    if row is None:
        job_id = job_id_from_workunit_name(wu_name)
        if job_id is not None:
            row = db.query_one(f"select {_JOB_COLUMNS} from ext_job where id = %s "
                               f"and workunitid in (0, %s){suffix}", (job_id, wu_id))
    return _job(row) if row else None


def mark_running(db: Database, job_id: int, workunit_id: int) -> bool:
    """submitted → running; False if the job was not (or no longer) submitted."""
    return db.execute("update ext_job set state = %s, workunitid = %s where id = %s and state = %s",
                      (STATE_RUNNING, workunit_id, job_id, STATE_SUBMITTED)) > 0


def mark_done(db: Database, job_id: int, workunit_id: int, now: int) -> bool:
    return db.execute(
        "update ext_job set state = %s, workunitid = %s, finish_time = %s, error_msg = NULL "
        "where id = %s and state in (%s, %s)",
        (STATE_DONE, workunit_id, now, job_id, *_OPEN_STATES)) > 0


def mark_failed(db: Database, job_id: int, message: str, now: int, workunit_id: int | None = None) -> bool:
    assignments = "state = %s, finish_time = %s, error_msg = %s"
    params: list = [STATE_FAILED, now, message]
    if workunit_id is not None:
        assignments += ", workunitid = %s"
        params.append(workunit_id)
    return db.execute(f"update ext_job set {assignments} where id = %s and state in (%s, %s)",
                      (*params, job_id, *_OPEN_STATES)) > 0


def _job(row: dict) -> Job:
    return Job(id=row["id"], name=row["name"], kind=row["kind"], state=row["state"], userid=row["userid"],
               replication=row["replication"], deadline=row["delay_bound"], seed=int(row["seed"]),
               workunit_id=row["workunitid"], create_time=row["create_time"], finish_time=row["finish_time"],
               error=row["error_msg"])
