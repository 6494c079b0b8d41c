"""The embedded scheduler RPC handler against a real MariaDB project, through Flask's test
client with requests shaped like Debian's boinc-client 7.20.5 sends them."""
import secrets
import threading
import time

import pytest
from flask import Flask

from boinc_ext.boinc import crypto
from boinc_ext.daemons.options import DaemonOptions
from boinc_ext.jobs import store as job_store
from boinc_ext.server.scheduler import handler as scheduler_module
from boinc_ext.server.http_db import ThreadDatabases
from boinc_ext.server.scheduler.handler import EVENT_WORK_HOLD, FALLBACK_FPOPS_EST, WORK_HOLD_EXTENSION, TypicalJobSize
from boinc_ext.server.scheduler.steering import WorkHold
from boinc_ext.transitioner.daemon import Transitioner
from boinc_ext.boinc.states import (OUTCOME_CLIENT_ERROR, OUTCOME_SUCCESS, SERVER_STATE_IN_PROGRESS,
                              SERVER_STATE_OVER, SERVER_STATE_UNSENT, VALIDATE_STATE_INVALID)
from boinc_ext.boinc.work import WorkCreator, WorkunitRequest
from boinc_ext.boinc.xmlutil import parse_xml

from job_templates import IN_TEMPLATE, OUT_TEMPLATE
from sched_client import make_user, reported_result, scheduler_request

PLATFORM = "x86_64-pc-linux-gnu"


@pytest.fixture
def sched_app(project):
    app = Flask("test")
    databases = ThreadDatabases.for_project(project)
    app.register_blueprint(scheduler_module.create_blueprint(project, databases))
    yield app
    databases.close_all()


@pytest.fixture
def sched(sched_app):
    return sched_app.test_client()


@pytest.fixture
def work_hold(sched_app) -> WorkHold:
    return sched_app.extensions[WORK_HOLD_EXTENSION]


@pytest.fixture
def url(project):
    from urllib.parse import urlsplit
    return urlsplit(scheduler_module.scheduler_url(project)).path


@pytest.fixture
def app_version(project, project_db):
    """project create installed the wrapper as r_job's app version."""
    return project_db.scalar("select id from app_version")


@pytest.fixture
def make_work(project, project_db, tmp_path, app_version):
    (project.project_dir / "templates" / "r_in").write_text(IN_TEMPLATE)
    (project.project_dir / "templates" / "r_out").write_text(OUT_TEMPLATE)
    creator = WorkCreator(project, project_db, "r_job", "templates/r_in", "templates/r_out")
    script = tmp_path / "job.R"
    script.write_text("x <- 1\n")

    def make(count, replicas=2, results=True, **params):
        """Workunits due for the transitioner, and their results unless results=False."""
        data = tmp_path / "d.csv"
        data.write_text("1\n")
        params.update(min_quorum=replicas, target_nresults=replicas)
        ids = creator.create_many([WorkunitRequest(f"wu_{secrets.token_hex(4)}", [script, data], params=params)
                                   for _ in range(count)])
        project_db.execute("update workunit set transition_time = %s", (int(time.time()) - 1,))
        if results:
            run_transitioner(project)
        return ids
    return make


def run_transitioner(project):
    Transitioner(project, DaemonOptions(one_pass=True)).run()


def rpc(client, url, body):
    response = client.post(url, data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200, response.data
    return parse_xml(response.data, "reply")


def test_first_rpc_creates_host_sends_key_and_signed_work(project, project_db, sched, url, make_work):
    make_work(1)
    auth = make_user(project_db)
    reply = rpc(sched, url, scheduler_request(auth))
    hostid = int(reply.findtext("hostid"))
    host = project_db.query_one("select * from host where id = %s", (hostid,))
    assert host["p_ncpus"] == 2 and host["os_name"] == "Linux Debian" and host["rpc_time"] > 0
    public = crypto.read_public_key(project.key_dir / "code_sign_public")
    assert reply.findtext("code_sign_key").strip() == public.to_text().strip()
    assert reply.findtext("master_url") == project.master_url
    assert float(reply.findtext("next_rpc_delay")) >= 1
    # one job: app, signed app file, workunit with its spliced tags, result with deadline
    assert [a.findtext("name") for a in reply.findall("app")] == ["r_job"]
    version = reply.find("app_version")
    assert version.findtext("platform") == PLATFORM and version.findtext("version_num") == "100"
    app_file = version.findtext("file_ref/file_name")
    info = next(f for f in reply.findall("file_info") if f.findtext("name") == app_file)
    path = project.download_dir / app_file
    assert crypto.verify_file(path, info.findtext("file_signature"), public)
    wu = reply.find("workunit")
    assert wu.findtext("app_name") == "r_job" and float(wu.findtext("rsc_fpops_est")) > 0
    result = reply.find("result")
    assert result.findtext("wu_name") == wu.findtext("name")
    assert result.findtext("platform") == PLATFORM and result.find("report_immediately") is not None
    row = project_db.query_one("select * from result where name = %s", (result.findtext("name"),))
    assert row["server_state"] == SERVER_STATE_IN_PROGRESS and row["hostid"] == hostid
    assert int(result.findtext("report_deadline")) == row["report_deadline"]
    upload = next(f for f in reply.findall("file_info") if f.find("xml_signature") is not None)
    assert "file_upload_handler" in upload.findtext("url")


def test_known_host_gets_no_new_hostid_nor_key(project_db, sched, url, app_version):
    auth = make_user(project_db)
    first = rpc(sched, url, scheduler_request(auth))
    hostid = int(first.findtext("hostid"))
    again = rpc(sched, url, scheduler_request(auth, hostid=hostid, rpc_seqno=1, with_key=True))
    assert again.find("hostid") is None and again.find("code_sign_key") is None
    assert project_db.scalar("select count(*) from host") == 1
    assert project_db.scalar("select rpc_seqno from host where id = %s", (hostid,)) == 1


def test_reply_describes_the_host_as_stored(project_db, sched, url, app_version):
    auth = make_user(project_db)
    first = rpc(sched, url, scheduler_request(auth))
    hostid = int(first.findtext("hostid"))
    created = project_db.scalar("select create_time from host where id = %s", (hostid,))
    assert (int(first.findtext("host_create_time")), float(first.findtext("host_total_credit"))) == (created, 0.0)
    project_db.execute("update host set total_credit = 12.5, venue = 'home' where id = %s", (hostid,))
    again = rpc(sched, url, scheduler_request(auth, hostid=hostid, rpc_seqno=1))
    assert (float(again.findtext("host_total_credit")), again.findtext("host_venue"),
            int(again.findtext("host_create_time"))) == (12.5, "home", created)


def test_lost_client_state_reuses_host_and_detaches_its_tasks(project_db, sched, url, make_work, work_hold):
    work_hold.seconds = 0    # the detached task's retry is on its way, but no transitioner runs here
    make_work(1, replicas=1)
    auth = make_user(project_db)
    hostid = int(rpc(sched, url, scheduler_request(auth)).findtext("hostid"))
    reply = rpc(sched, url, scheduler_request(auth, hostid=0))   # re-attached: hostid 0, same CPID
    assert int(reply.findtext("hostid")) == hostid
    assert project_db.scalar("select count(*) from host") == 1
    assert project_db.scalar("select outcome from result where hostid = %s and server_state = %s "
                             "order by id limit 1", (hostid, SERVER_STATE_OVER)) == 7


def test_replicas_of_a_workunit_go_to_different_hosts(project_db, sched, url, make_work):
    make_work(1, replicas=2)
    auth = make_user(project_db)
    first = rpc(sched, url, scheduler_request(auth, cpu_req_instances=2))
    assert len(first.findall("result")) == 1
    second = rpc(sched, url, scheduler_request(auth, host_cpid="f" * 32, cpu_req_instances=2))
    assert len(second.findall("result")) == 1
    hosts = {r["hostid"] for r in project_db.query("select hostid from result")}
    assert len(hosts) == 2


def test_sends_at_most_one_task_per_idle_cpu(project_db, sched, url, make_work):
    make_work(6, replicas=1)
    auth = make_user(project_db)
    reply = rpc(sched, url, scheduler_request(auth, cpu_req_instances=2))
    assert len(reply.findall("result")) == 2
    hostid = int(reply.findtext("hostid"))
    busy = rpc(sched, url, scheduler_request(auth, hostid=hostid, rpc_seqno=1, cpu_req_instances=1))
    assert busy.findall("result") == []   # 2 CPUs, 2 in progress
    assert project_db.scalar("select count(*) from result where server_state = %s", (SERVER_STATE_UNSENT,)) == 4


@pytest.mark.parametrize("fpops_est, seconds, sent", [(1e13, 1500, 1), (1e11, 150, 2)])
def test_requested_seconds_are_filled_with_jobs_of_the_size_on_offer(project_db, sched, url, make_work,
                                                                     fpops_est, seconds, sent):
    """The host does 1e9 FLOPS on 2 CPUs; a fixed 1e12-FLOP guess would send 2 and 1."""
    make_work(4, replicas=1, rsc_fpops_est=fpops_est)
    auth = make_user(project_db)
    reply = rpc(sched, url, scheduler_request(auth, work_req_seconds=seconds, cpu_req_instances=0))
    assert len(reply.findall("result")) == sent


def test_typical_job_size_is_cached_per_app(project_db, make_work, app_version):
    app_id = project_db.scalar("select id from app where name = 'r_job'")
    assert TypicalJobSize().fpops_est(project_db, [app_id]) == FALLBACK_FPOPS_EST  # nothing on offer
    make_work(2, replicas=1, rsc_fpops_est=3e12)
    size = TypicalJobSize()
    assert size.fpops_est(project_db, [app_id]) == pytest.approx(3e12)
    project_db.execute("update workunit set rsc_fpops_est = 5e12")
    assert size.fpops_est(project_db, [app_id]) == pytest.approx(3e12)
    assert TypicalJobSize(refresh_seconds=0).fpops_est(project_db, [app_id]) == pytest.approx(5e12)


def test_reports_are_stored_acked_and_wake_the_transitioner(project_db, sched, url, make_work):
    make_work(2, replicas=1)
    auth = make_user(project_db)
    reply = rpc(sched, url, scheduler_request(auth, cpu_req_instances=2))
    hostid = int(reply.findtext("hostid"))
    good, bad = [r.findtext("name") for r in reply.findall("result")]
    project_db.execute("update workunit set transition_time = 2000000000")
    reports = (reported_result(good, "out_file") + reported_result(bad, exit_status=1, stderr="Error in f(): boom")
               + reported_result("no_such_result"))
    reply = rpc(sched, url, scheduler_request(auth, hostid=hostid, rpc_seqno=1, reports=reports,
                                              work_req_seconds=0))
    assert sorted(a.findtext("name") for a in reply.findall("result_ack")) == sorted([good, bad, "no_such_result"])
    rows = {r["name"]: r for r in project_db.query("select * from result")}
    assert rows[good]["outcome"] == OUTCOME_SUCCESS and rows[good]["server_state"] == SERVER_STATE_OVER
    assert b"out_file" in rows[good]["xml_doc_out"] and rows[good]["cpu_time"] == 1.5
    assert rows[bad]["outcome"] == OUTCOME_CLIENT_ERROR and rows[bad]["validate_state"] == VALIDATE_STATE_INVALID
    assert b"Error in f(): boom" in rows[bad]["stderr_out"]
    assert b"<![CDATA[" in rows[bad]["stderr_out"]
    assert project_db.scalar("select max(transition_time) from workunit") <= int(time.time())
    # a repeated report (lost ack) is acked again and changes nothing
    again = rpc(sched, url, scheduler_request(auth, hostid=hostid, rpc_seqno=2, reports=reported_result(good),
                                              work_req_seconds=0))
    assert [a.findtext("name") for a in again.findall("result_ack")] == [good]
    assert project_db.scalar("select received_time from result where name = %s", (good,)) == rows[good]["received_time"]


def test_report_from_another_account_is_ignored(project_db, sched, url, make_work):
    make_work(1, replicas=1)
    owner, other = make_user(project_db), make_user(project_db, "other@example.org")
    name = rpc(sched, url, scheduler_request(owner)).find("result").findtext("name")
    reply = rpc(sched, url, scheduler_request(other, host_cpid="e" * 32, reports=reported_result(name),
                                              work_req_seconds=0))
    assert [a.findtext("name") for a in reply.findall("result_ack")] == [name]
    assert project_db.scalar("select server_state from result where name = %s", (name,)) == SERVER_STATE_IN_PROGRESS


def test_bad_account_key_gets_message_and_long_delay(sched, url, app_version):
    reply = rpc(sched, url, scheduler_request("0" * 32))
    assert "account key" in reply.findtext("message")
    assert reply.findtext("request_delay") == "3600"
    assert reply.find("hostid") is None


@pytest.mark.parametrize("body", [b"<scheduler_request><authenticator>x</authentic", b"garbage \x00\xff",
                                  b'<!DOCTYPE x [<!ENTITY a "aaaa">]><scheduler_request>&a;</scheduler_request>'])
def test_malformed_requests_get_a_clear_reply_and_the_server_keeps_serving(project_db, sched, url, app_version,
                                                                          body):
    reply = rpc(sched, url, body)
    assert reply.findtext("message") and reply.findtext("request_delay")
    auth = make_user(project_db)
    assert rpc(sched, url, scheduler_request(auth)).findtext("hostid")


def test_oversized_request_is_refused(sched, url):
    response = sched.post(url, data=b"<scheduler_request>" + b" " * (17 * 1024 * 1024))
    assert response.status_code == 413


def test_unsupported_platform_gets_no_work(project_db, sched, url, make_work):
    make_work(1)
    reply = rpc(sched, url, scheduler_request(make_user(project_db), platform="sparc-sun-solaris"))
    assert reply.findall("result") == [] and "platform" in reply.findtext("message")


def test_newer_account_prefs_are_sent_once(project_db, sched, url, app_version):
    prefs = ("<global_preferences>\n<mod_time>1900000000</mod_time>\n<suspend_cpu_usage>0</suspend_cpu_usage>\n"
             "<run_if_user_active>1</run_if_user_active>\n</global_preferences>")
    auth = make_user(project_db, global_prefs=prefs)
    reply = rpc(sched, url, scheduler_request(auth))
    assert reply.find("global_preferences/suspend_cpu_usage").text == "0"
    again = rpc(sched, url, scheduler_request(auth, hostid=int(reply.findtext("hostid")), rpc_seqno=1,
                                              prefs_mod_time=1900000000))
    assert again.find("global_preferences") is None


def test_stop_sched_file_puts_the_project_down(project, sched, url):
    (project.project_dir / "stop_sched").touch()
    reply = rpc(sched, url, scheduler_request("x"))
    assert reply.find("project_is_down") is not None and reply.findtext("request_delay") == "3600"


def test_concurrent_requests_never_send_a_result_twice(project, project_db, url, make_work):
    make_work(30, replicas=1)
    auths = [make_user(project_db, f"u{i}@example.org") for i in range(6)]
    app = Flask("test")
    databases = ThreadDatabases.for_project(project)
    app.register_blueprint(scheduler_module.create_blueprint(project, databases))
    sent: list[str] = []
    lock = threading.Lock()

    def client(auth, cpid):
        test_client = app.test_client()
        hostid = 0
        for seqno in range(3):
            reply = rpc(test_client, url, scheduler_request(auth, hostid, seqno, cpu_req_instances=2,
                                                            host_cpid=cpid, work_req_seconds=1e6))
            hostid = int(reply.findtext("hostid") or hostid)
            with lock:
                sent.extend(r.findtext("name") for r in reply.findall("result"))

    threads = [threading.Thread(target=client, args=(auth, f"{i:032x}")) for i, auth in enumerate(auths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    databases.close_all()
    assert len(sent) == len(set(sent)) > 0
    assert project_db.scalar("select count(*) from result where server_state = %s", (SERVER_STATE_IN_PROGRESS,)) \
        == len(sent)


def submit_job(db, submitted_at=None):
    """An ext_job the work generator has yet to see."""
    with db.transaction():
        job_store.insert_job(db, name=None, kind="r", userid=1, replication=1, delay_bound=3600, seed=1,
                             now=submitted_at or int(time.time()))


def timed_rpc(client, url, body):
    started = time.monotonic()
    reply = rpc(client, url, body)
    return reply, time.monotonic() - started


def test_request_before_its_work_exists_is_held_and_gets_it(project, project_db, sched, url, make_work, caplog):
    submit_job(project_db)
    auth = make_user(project_db)

    def work_generator_then_transitioner():
        time.sleep(0.6)
        make_work(1, replicas=1, results=False)
        run_transitioner(project)

    maker = threading.Thread(target=work_generator_then_transitioner)
    caplog.set_level("INFO", logger="boinc_ext.server.scheduler")
    maker.start()
    reply, elapsed = timed_rpc(sched, url, scheduler_request(auth))
    maker.join()
    assert len(reply.findall("result")) == 1
    assert 0.6 < elapsed < 3.5
    assert any(EVENT_WORK_HOLD in r.getMessage() and "1 sent" in r.getMessage() for r in caplog.records)


def test_no_hold_when_nothing_is_on_the_way(project_db, sched, url, make_work, caplog):
    make_work(1, replicas=1)
    auth = make_user(project_db)
    rpc(sched, url, scheduler_request(auth, cpu_req_instances=1))      # takes the only result
    stale = int(time.time()) - 600     # waiting on a stalled daemon, not on its way
    submit_job(project_db, submitted_at=stale)
    make_work(1, replicas=1, results=False)
    project_db.execute("update workunit set transition_time = %s", (stale,))
    caplog.set_level("INFO", logger="boinc_ext.server.scheduler")
    reply, elapsed = timed_rpc(sched, url, scheduler_request(make_user(project_db, "other@example.org")))
    assert not reply.findall("result") and elapsed < 1.0
    assert not any(EVENT_WORK_HOLD in r.getMessage() for r in caplog.records)


def test_held_requests_are_bounded_and_end_when_stopped(project_db, sched_app, work_hold, url, app_version):
    work_hold.max_held = 1
    work_hold.seconds = 30
    submit_job(project_db)       # on its way, but no work generator runs
    auths = [make_user(project_db, f"u{i}@example.org") for i in range(2)]
    first: list[float] = []
    held = threading.Thread(target=lambda: first.append(timed_rpc(sched_app.test_client(), url,
                                                                  scheduler_request(auths[0]))[1]))
    held.start()
    deadline = time.monotonic() + 5
    while work_hold.held < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert work_hold.held == 1
    reply, elapsed = timed_rpc(sched_app.test_client(), url, scheduler_request(auths[1], host_cpid="1" * 32))
    assert not reply.findall("result") and elapsed < 1.0
    work_hold.stop()
    held.join(timeout=5)
    assert not held.is_alive() and first[0] < 5 and work_hold.held == 0
