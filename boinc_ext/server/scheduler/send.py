"""Choosing and claiming unsent results for a host (stock's sched_send / mark_as_sent).

Candidates are unsent results of apps with a version for one of the host's platforms, by
priority then age, never two results of one workunit to the same host (replicas must run
on different hosts to be worth comparing). Each claim is a guarded UPDATE in its own
transaction, so concurrent RPCs never send one result twice: a loser moves on to the next
candidate.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from boinc_ext.boinc.db import Database
from boinc_ext.jobs.store import submitted_job_since
from boinc_ext.boinc.states import (
    SERVER_STATE_IN_PROGRESS,
    SERVER_STATE_UNSENT,
    TRANSITION_NO_NEW_RESULTS,
    TRANSITION_NONE,
)
from boinc_ext.server.scheduler.app_catalog import AppCatalog, AppVersion
from boinc_ext.server.scheduler.reply import SentJob, element, splice_after, splice_before_last
from boinc_ext.server.scheduler.request import SchedulerRequest

log = logging.getLogger("boinc_ext.server.scheduler")

EVENT_RESULT_SENT = "result sent"
DEFAULT_FLOPS = 1e9
CANDIDATE_FACTOR = 4     # fetch this many candidates per job wanted, for losers of races
ON_THE_WAY_WINDOW = 30   # seconds: older pending work waits on a stalled daemon, not on the next poll


@dataclass(frozen=True)
class SendLimits:
    max_wus_to_send: int = 50
    max_wus_in_progress: int = 1      # per CPU of the host
    report_grace_period: int = 0

    @classmethod
    def from_config(cls, config) -> "SendLimits":
        return cls(max_wus_to_send=config.option_int("max_wus_to_send", 50, minimum=1),
                   max_wus_in_progress=config.option_int("max_wus_in_progress", 1, minimum=1),
                   report_grace_period=config.option_int("report_grace_period", 0, minimum=0))


def jobs_wanted(request: SchedulerRequest, host: dict, in_progress: int, limits: SendLimits,
                typical_fpops_est: float) -> int:
    """How many results this request should get: enough for its idle CPUs or requested
    seconds, within the per-RPC and per-host limits."""
    if not request.wants_work:
        return 0
    ncpus = max(int(host["p_ncpus"] or 1), 1)
    room = ncpus * limits.max_wus_in_progress - in_progress
    if request.cpu_req_instances > 0:
        by_request = math.ceil(request.cpu_req_instances)
    else:
        seconds_per_job = max(typical_fpops_est / _flops(host), 1.0)
        by_request = math.ceil(request.work_req_seconds / seconds_per_job)
    return max(0, min(room, by_request, limits.max_wus_to_send))


def send_work(db: Database, catalog: AppCatalog, request: SchedulerRequest, host: dict, user: dict,
              wanted: int, limits: SendLimits, app_ids: list[int]) -> list[SentJob]:
    """Claims up to `wanted` unsent results of `app_ids` (the apps the request's platforms run)."""
    if wanted <= 0 or not app_ids:
        return []
    sent: list[SentJob] = []
    workunits: set[int] = set()
    # One transaction for all claims: a reply that fails to go out leaves nothing claimed.
    with db.transaction():
        for candidate in _candidates(db, app_ids, host["id"], wanted * CANDIDATE_FACTOR):
            if len(sent) >= wanted:
                break
            if candidate["workunitid"] in workunits:
                continue
            version = catalog.best_version(db, candidate["appid"], request.platforms)
            if version is None:
                continue
            job = _claim(db, catalog, candidate, version, host, user, limits)
            if job is not None:
                sent.append(job)
                workunits.add(candidate["workunitid"])
    for job in sent:
        log.info("[RESULT %s] %s to host %d", job.result_name, EVENT_RESULT_SENT, host["id"])
    return sent


def in_progress_count(db: Database, host_id: int) -> int:
    return int(db.scalar("select count(*) from result where hostid = %s and server_state = %s",
                         (host_id, SERVER_STATE_IN_PROGRESS)))


def work_on_the_way(db: Database, app_ids: list[int]) -> bool:
    """Whether results may appear within moments: a job submitted lately that has no workunit
    yet (the work generator's next pass creates it), or a workunit of these apps that the
    transitioner is due to look at (it creates a new workunit's results, and retries). Each is
    one short range of an index (ext_job_state; wu_timeout over the last ON_THE_WAY_WINDOW
    seconds) read up to its first match, so a held request can ask it every poll."""
    now = int(time.time())
    if submitted_job_since(db, now - ON_THE_WAY_WINDOW):
        return True
    return bool(db.scalar(
        f"select 1 from workunit where transition_time between %s and %s "
        f"and transitioner_flags not in (%s, %s) and appid in ({', '.join(['%s'] * len(app_ids))}) limit 1",
        (now - ON_THE_WAY_WINDOW, now, TRANSITION_NONE, TRANSITION_NO_NEW_RESULTS, *app_ids)))


def _candidates(db: Database, app_ids: list[int], host_id: int, limit: int) -> list[dict]:
    """Unsent results, highest priority first and oldest first within it. Taken one priority
    level at a time so that MariaDB walks the (server_state, priority, id) index in order
    instead of sorting every unsent result on each request."""
    rows: list[dict] = []
    priority = db.scalar("select max(priority) from result where server_state = %s", (SERVER_STATE_UNSENT,))
    while priority is not None and len(rows) < limit:
        rows += db.query(_CANDIDATES_AT_PRIORITY.format(apps=", ".join(["%s"] * len(app_ids))),
                         (SERVER_STATE_UNSENT, priority, *app_ids, host_id, limit - len(rows)))
        priority = db.scalar("select max(priority) from result where server_state = %s and priority < %s",
                             (SERVER_STATE_UNSENT, priority))
    return rows


_CANDIDATES_AT_PRIORITY = (
    "select r.id, r.name, r.appid, r.workunitid, r.xml_doc_in, w.name as wu_name, w.xml_doc, "
    "w.rsc_fpops_est, w.rsc_fpops_bound, w.rsc_memory_bound, w.rsc_disk_bound, w.delay_bound "
    "from result r force index (ind_res_st) join workunit w on w.id = r.workunitid "
    "where r.server_state = %s and r.priority = %s and r.appid in ({apps}) "
    "and not exists (select 1 from result r2 where r2.workunitid = r.workunitid and r2.hostid = %s) "
    "order by r.id limit %s")


def _claim(db: Database, catalog: AppCatalog, row: dict, version: AppVersion, host: dict, user: dict,
           limits: SendLimits) -> SentJob | None:
    now = int(time.time())
    deadline = now + int(row["delay_bound"])
    flops = _flops(host)
    claimed = db.execute(
        "update result set server_state = %s, hostid = %s, userid = %s, sent_time = %s, "
        "report_deadline = %s, flops_estimate = %s, app_version_id = %s "
        "where id = %s and server_state = %s",
        (SERVER_STATE_IN_PROGRESS, host["id"], user["id"], now, deadline + limits.report_grace_period,
         flops, version.id, row["id"], SERVER_STATE_UNSENT))
    if not claimed:
        return None
    db.execute("update workunit set transition_time = least(transition_time, %s) where id = %s",
               (deadline + limits.report_grace_period, row["workunitid"]))
    return SentJob(result_name=row["name"], app_name=version.app_name, app_friendly_name=version.app_friendly_name,
                   app_version_id=version.id, app_version_xml=catalog.with_flops(version, flops),
                   workunit_xml=_workunit_xml(row, version), result_xml=_result_xml(row, version, deadline))


def _workunit_xml(row: dict, version: AppVersion) -> str:
    inserted = (element("rsc_fpops_est", float(row["rsc_fpops_est"]))
                + element("rsc_fpops_bound", float(row["rsc_fpops_bound"]))
                + element("rsc_memory_bound", float(row["rsc_memory_bound"]))
                + element("rsc_disk_bound", float(row["rsc_disk_bound"]))
                + element("name", row["wu_name"]) + element("app_name", version.app_name))
    return splice_after(_text(row["xml_doc"]), "<workunit>\n", inserted) + "\n"


def _result_xml(row: dict, version: AppVersion, deadline: int) -> str:
    text = splice_after(_text(row["xml_doc_in"]), "<result>\n",
                        element("wu_name", row["wu_name"]) + element("name", row["name"])
                        + element("report_deadline", deadline))
    tail = (element("platform", version.platform) + element("version_num", version.version_num)
            + element("plan_class", version.plan_class) + "<report_immediately/>\n")
    return splice_before_last(text, "</result>", tail) + "\n"


def _flops(host: dict) -> float:
    return float(host["p_fpops"] or 0) or DEFAULT_FLOPS


def _text(value) -> str:
    return value.decode() if isinstance(value, (bytes, bytearray)) else (value or "")
