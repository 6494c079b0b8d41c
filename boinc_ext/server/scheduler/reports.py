"""Reported results: store what the client says about each finished task, then ack it.

Stock's rules (sched_result.cpp): unknown, unsent, already-received and other-user results
are acked and ignored; a result already OVER is accepted only if it had timed out
(NO_REPLY) or been detached; success means client state UPLOADED and exit status 0. Every
affected workunit gets transition_time = now so the transitioner looks at it at once.
All of one request's reports are stored in one transaction.
"""
from __future__ import annotations

import logging
import time

from boinc_ext.boinc.db import Database
from boinc_ext.boinc.states import (OUTCOME_CLIENT_DETACHED, OUTCOME_CLIENT_ERROR, OUTCOME_NO_REPLY, OUTCOME_SUCCESS,
                      SERVER_STATE_IN_PROGRESS, SERVER_STATE_OVER, VALIDATE_STATE_INVALID)
from boinc_ext.server.scheduler.request import ReportedResult

log = logging.getLogger("boinc_ext.server.scheduler")

CLIENT_STATE_UPLOADED = 5
EVENT_RESULT_REPORTED = "result reported"
EVENT_REPORT_IGNORED = "report ignored"

_COLUMNS = ("id, name, workunitid, server_state, outcome, received_time, hostid, userid, sent_time")


def store_reports(db: Database, reports: tuple[ReportedResult, ...], host: dict, user: dict) -> list[str]:
    """Stores the reports; returns the names to acknowledge (all of them, as stock does)."""
    if not reports:
        return []
    now = int(time.time())
    names = [r.name for r in reports]
    with db.transaction():
        rows = {row["name"]: row for row in db.query(
            f"select {_COLUMNS} from result where name in ({', '.join(['%s'] * len(names))}) for update",
            tuple(names))}
        touched: set[int] = set()
        for report in reports:
            row = rows.get(report.name)
            reason = _ignore_reason(row, host, user)
            if reason:
                log.info("[RESULT %s] %s: %s", report.name, EVENT_REPORT_IGNORED, reason)
                continue
            _store(db, row, report, host, user, now)
            touched.add(row["workunitid"])
        if touched:
            db.execute(f"update workunit set transition_time = %s where id in "
                       f"({', '.join(['%s'] * len(touched))})", (now, *sorted(touched)))
    return names


def _ignore_reason(row: dict | None, host: dict, user: dict) -> str:
    if row is None:
        return "no such result"
    if row["server_state"] == SERVER_STATE_OVER:
        if row["outcome"] not in (OUTCOME_NO_REPLY, OUTCOME_CLIENT_DETACHED):
            return "already over"
    elif row["server_state"] != SERVER_STATE_IN_PROGRESS:
        return "not sent"
    if row["received_time"]:
        return "already received"
    if row["hostid"] != host["id"] and row["userid"] != user["id"]:
        return f"sent to host {row['hostid']} of another account"
    return ""


def _store(db: Database, row: dict, report: ReportedResult, host: dict, user: dict, now: int) -> None:
    success = report.state == CLIENT_STATE_UPLOADED and report.exit_status == 0
    elapsed = report.elapsed_time or report.cpu_time
    if row["sent_time"]:
        elapsed = min(max(elapsed, 0.0), float(max(now - row["sent_time"], 0)))
    db.execute(
        "update result set hostid = %s, userid = %s, teamid = %s, received_time = %s, client_state = %s, "
        "cpu_time = %s, elapsed_time = %s, exit_status = %s, app_version_num = %s, "
        "peak_working_set_size = %s, peak_swap_size = %s, peak_disk_usage = %s, stderr_out = %s, "
        "xml_doc_out = %s, server_state = %s, outcome = %s"
        + ("" if success else f", validate_state = {VALIDATE_STATE_INVALID}")
        + " where id = %s",
        (host["id"], user["id"], user["teamid"], now, report.state, report.cpu_time, elapsed,
         report.exit_status, report.app_version_num, report.peak_working_set_size, report.peak_swap_size,
         report.peak_disk_usage, report.stderr_out.encode(), report.xml_doc_out.encode(), SERVER_STATE_OVER,
         OUTCOME_SUCCESS if success else OUTCOME_CLIENT_ERROR, row["id"]))
    log.info("[RESULT#%d %s] %s: %s (exit %d, %.1f s)", row["id"], row["name"], EVENT_RESULT_REPORTED,
             "success" if success else "client error", report.exit_status, elapsed)
