"""The scheduler RPC handler: what stock BOINC's `cgi` does for one client request.

One request: parse it, authenticate the account and find or create the host, store and
ack the reported results, send work that fits the host (holding the request a few seconds
if its work is on its way: steering.WorkHold), and tell the client when to call again.
Transient database trouble answers HTTP 503, which the client retries with back-off.
"""
from __future__ import annotations

import logging
import re
import time

from flask import Blueprint, Response, request
from urllib.parse import urlsplit

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.boinc.crypto import read_public_key
from boinc_ext.boinc.db import Database, TransientDbError
from boinc_ext.boinc.config import cgi_url
from boinc_ext.boinc.states import SERVER_STATE_UNSENT
from boinc_ext.boinc.xmlutil import XmlError, parse_xml
from boinc_ext.server.scheduler.app_catalog import AppCatalog
from boinc_ext.server.http_db import ThreadDatabases
from boinc_ext.server.scheduler.auth import AuthError, Caller, authenticate
from boinc_ext.server.scheduler.reply import SchedulerReply, SentJob
from boinc_ext.server.scheduler.reports import store_reports
from boinc_ext.server.scheduler.request import MAX_REQUEST_BYTES, BadRequest, SchedulerRequest, parse_request
from boinc_ext.server.scheduler.send import SendLimits, in_progress_count, jobs_wanted, send_work, work_on_the_way
from boinc_ext.server.scheduler.steering import ActiveHostCounter, SteeringPolicy, WorkHold

log = logging.getLogger("boinc_ext.server.scheduler")

SCHEDULER_PROGRAM = "cgi"
STOP_SCHED_TRIGGER = "stop_sched"
BAD_ACCOUNT_DELAY = 3600
PROJECT_DOWN_DELAY = 3600
BAD_REQUEST_DELAY = 120
TRANSIENT_ATTEMPTS = 3
EVENT_RPC = "scheduler rpc"
EVENT_RPC_REFUSED = "scheduler rpc refused"
EVENT_WORK_HOLD = "work request held"
WORK_HOLD_EXTENSION = "boinc_ext.work_hold"   # app.extensions key: serve.py bounds and stops it
_MOD_TIME = re.compile(rb"<mod_time>\s*([0-9.]+)\s*</mod_time>")
FALLBACK_FPOPS_EST = 1e12     # stock's estimate for a job that gives none
JOB_SIZE_SAMPLE = 100         # an app's next unsent results whose workunits set its typical size
JOB_SIZE_REFRESH_SECONDS = 60.0
# (appid, server_state, id) is the res_app_state index, so this reads only the sample.
_MEAN_FPOPS_EST = ("select avg(w.rsc_fpops_est) from (select workunitid from result where appid = %s "
                   "and server_state = %s order by id limit %s) r join workunit w on w.id = r.workunitid")


def scheduler_url(config: ProjectConfig) -> str:
    return cgi_url(config.master_url) + SCHEDULER_PROGRAM


class Scheduler:
    def __init__(self, config: ProjectConfig, databases: ThreadDatabases):
        self.config = config
        self.databases = databases
        self.catalog = AppCatalog(config)
        self.limits = SendLimits.from_config(config)
        self.steering = SteeringPolicy.from_config(config)
        self.active_hosts = ActiveHostCounter()
        self.hold = WorkHold.from_config(config)
        self.code_sign_key = read_public_key(config.key_dir / "code_sign_public").to_text()
        self.job_size = TypicalJobSize()

    def handle(self, body: bytes, remote_addr: str) -> bytes:
        """The reply document for one request; raises TransientDbError for HTTP 503."""
        reply = SchedulerReply(master_url=self.config.master_url, project_name=self.config.long_name)
        try:
            rpc = parse_request(body)
        except (BadRequest, XmlError) as exc:
            log.warning("%s from %s: %s", EVENT_RPC_REFUSED, remote_addr, exc)
            reply.message(f"The project could not read your client's request: {exc}", "high")
            reply.request_delay = BAD_REQUEST_DELAY
            return reply.render()
        if (self.config.project_dir / STOP_SCHED_TRIGGER).exists():
            reply.project_is_down = True
            reply.request_delay = PROJECT_DOWN_DELAY
            return reply.render()
        try:
            self._serve_with_retries(rpc, reply, remote_addr)
        except AuthError as exc:
            log.warning("%s from %s: %s", EVENT_RPC_REFUSED, remote_addr, exc)
            reply.message(f"Invalid or missing account key ({exc}). Detach and re-attach to this project.",
                          "high")
            reply.request_delay = BAD_ACCOUNT_DELAY
        return reply.render()

    def _serve_with_retries(self, rpc: SchedulerRequest, reply: SchedulerReply, remote_addr: str) -> None:
        """Deadlocks and lost connections are retried: every step is safe to repeat (reports
        already stored are acked again, claims are one transaction, the host is found again)."""
        for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
            db = self.databases.get()
            try:
                self._serve(db, rpc, reply, remote_addr)
                return
            except TransientDbError as exc:
                db.close()
                if attempt == TRANSIENT_ATTEMPTS:
                    raise
                log.info("retrying a scheduler rpc after: %s", exc, exc_info=True)
                reply.jobs, reply.acks = [], []

    def _serve(self, db: Database, rpc: SchedulerRequest, reply: SchedulerReply, remote_addr: str) -> None:
        started = time.monotonic()
        caller = authenticate(db, rpc, remote_addr)
        reply.user, reply.host = caller.user, caller.host
        if caller.new_host:
            reply.new_hostid = caller.host["id"]
        if not rpc.has_code_sign_key:
            reply.code_sign_key = self.code_sign_key
        reply.global_prefs = self._prefs_to_send(caller, rpc)
        reply.team_name = self._team_name(db, caller.user)
        reply.acks = store_reports(db, rpc.results, caller.host, caller.user)
        reply.next_rpc_delay = self.steering.next_rpc_delay(self.active_hosts.count(db))
        self._send(db, rpc, caller, reply)
        log.info("%s: host %d, %d reported, %d sent, %.1f ms", EVENT_RPC, caller.host["id"], len(reply.acks),
                 len(reply.jobs), (time.monotonic() - started) * 1000)

    def _send(self, db: Database, rpc: SchedulerRequest, caller: Caller, reply: SchedulerReply) -> None:
        if not rpc.wants_work:
            return
        app_ids = self.catalog.app_ids(db, rpc.platforms)
        if not app_ids:
            reply.message(f"This project has no apps for your computer's platform "
                          f"({', '.join(rpc.platforms) or 'none given'}).", "high")
            return
        wanted = jobs_wanted(rpc, caller.host, in_progress_count(db, caller.host["id"]), self.limits,
                             self.job_size.fpops_est(db, app_ids))
        reply.jobs = send_work(db, self.catalog, rpc, caller.host, caller.user, wanted, self.limits, app_ids)
        if wanted and not reply.jobs:
            reply.jobs = self._hold_for_work(db, rpc, caller, wanted, app_ids)
        if wanted and not reply.jobs:
            reply.message("No tasks are available right now.")

    def _hold_for_work(self, db: Database, rpc: SchedulerRequest, caller: Caller, wanted: int,
                       app_ids: list[int]) -> list[SentJob]:
        """What a hold gets: reports are committed already and no transaction is open, so the
        request waits holding only its thread."""
        sent: list[SentJob] = []

        def try_send() -> bool:
            sent.extend(send_work(db, self.catalog, rpc, caller.host, caller.user, wanted, self.limits,
                                  app_ids))
            return bool(sent)

        waited = self.hold.wait(try_send, lambda: work_on_the_way(db, app_ids))
        if waited is not None:
            log.info("%s: host %d waited %.2f s, %d sent", EVENT_WORK_HOLD, caller.host["id"], waited, len(sent))
        return sent

    def _prefs_to_send(self, caller: Caller, rpc: SchedulerRequest) -> str | None:
        """The account's global preferences, if newer than the ones the client works with."""
        prefs = caller.user["global_prefs"]
        if not prefs:
            return None
        match = _MOD_TIME.search(prefs)
        if match is None or float(match.group(1)) <= rpc.prefs_mod_time:
            return None
        try:
            parse_xml(prefs, "global preferences")
        except XmlError:
            return None
        return prefs.decode() if isinstance(prefs, bytes) else prefs

    def _team_name(self, db: Database, user: dict) -> str:
        if not user["teamid"]:
            return ""
        return db.scalar("select name from team where id = %s", (user["teamid"],)) or ""


class TypicalJobSize:
    """The mean rsc_fpops_est of the jobs the apps are about to send: how stock sizes a
    request's work (it estimates each job's run time from its workunit, and its feeder keeps
    size statistics over the jobs on offer). Looked up at most once a minute per app, so that
    a scheduler RPC stays a handful of queries."""

    def __init__(self, refresh_seconds: float = JOB_SIZE_REFRESH_SECONDS):
        self.refresh_seconds = refresh_seconds
        self._by_app: dict[int, tuple[float, float | None]] = {}   # appid: (looked up at, mean)

    def fpops_est(self, db: Database, app_ids: list[int]) -> float:
        """The mean over the apps that have unsent work; FALLBACK_FPOPS_EST when none has."""
        means = [mean for mean in (self._app_mean(db, app_id) for app_id in app_ids) if mean]
        return sum(means) / len(means) if means else FALLBACK_FPOPS_EST

    def _app_mean(self, db: Database, app_id: int) -> float | None:
        now = time.monotonic()
        cached = self._by_app.get(app_id)
        if cached is not None and now - cached[0] < self.refresh_seconds:
            return cached[1]
        mean = db.scalar(_MEAN_FPOPS_EST, (app_id, SERVER_STATE_UNSENT, JOB_SIZE_SAMPLE))
        mean = float(mean) if mean is not None else None
        self._by_app[app_id] = (now, mean)
        return mean


def create_blueprint(config: ProjectConfig, databases: ThreadDatabases) -> Blueprint:
    scheduler = Scheduler(config, databases)
    blueprint = Blueprint("scheduler", __name__)
    blueprint.record_once(lambda state: state.app.extensions.setdefault(WORK_HOLD_EXTENSION, scheduler.hold))

    @blueprint.route(urlsplit(scheduler_url(config)).path, methods=["POST"])
    def scheduler_rpc():
        length = request.content_length
        if length is not None and length > MAX_REQUEST_BYTES:
            return Response(f"request over {MAX_REQUEST_BYTES} bytes\n", status=413, mimetype="text/plain")
        body = request.stream.read(MAX_REQUEST_BYTES + 1)
        try:
            reply = scheduler.handle(body, request.remote_addr or "")
        except TransientDbError as exc:
            log.warning("%s: database unavailable: %s", EVENT_RPC_REFUSED, exc)
            databases.get().close()
            return Response("database unavailable, try later\n", status=503, mimetype="text/plain")
        return Response(reply, mimetype="text/xml")

    return blueprint
