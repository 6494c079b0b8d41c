"""The daemons, run against a database created from stock BOINC's own schema, behave the same.

One R job goes through the whole pipeline: submitted, taken up by the work generator, given
a result by the transitioner, sent to a host by a scheduler RPC (the embedded server's WSGI
app, with a request shaped like boinc-client 7.20.5's), its outputs uploaded through the
upload handler and reported by a second RPC, then the transitioner, validator, assimilator,
transitioner again and file deleter. Nothing pokes rows: each daemon runs one real pass.

It runs on two databases: ours (what `project create` makes) and one made from stock
BOINC's db/schema.sql and db/constraints.sql, to which `project create --existing` added our
ext_ tables, apps and app versions, as it does for a stock BOINC project. The row states
after every step must be the same on both.

Stock BOINC's database is made from the facts in tests/data/stock_schema_columns.json (its
columns, types, defaults and indexes; see tests/stock_schema.py), so both variants run every time.
"""
from __future__ import annotations

import datetime
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from jobs_support import write_inputs
from sched_client import reported_result, scheduler_request
from sched_client import make_user
from stock_schema import create_stock_tables
from upload_client import upload_body

from boinc_ext.boinc import crypto
from boinc_ext.assimilator.daemon import Assimilator
from boinc_ext.daemons.base import EXIT_OK
from boinc_ext.boinc.db import Database
from boinc_ext.daemons.file_deleter import FileDeleter
from boinc_ext.jobs.result_store import result_dir
from boinc_ext.jobs.submit import submit_job
from boinc_ext.jobs.work_generator import WorkGenerator
from boinc_ext.project.create import ProjectSpec, create_project, extend_existing_project
from boinc_ext.server.app import create_app
from boinc_ext.server.scheduler.handler import scheduler_url
from boinc_ext.transitioner.daemon import Transitioner
from boinc_ext.boinc.states import (
    ASSIMILATE_DONE,
    FILE_DELETE_DONE,
    OUTCOME_SUCCESS,
    SERVER_STATE_IN_PROGRESS,
    SERVER_STATE_OVER,
    SERVER_STATE_UNSENT,
    VALIDATE_STATE_VALID,
)
from boinc_ext.validator.daemon import Validator
from boinc_ext.boinc.xmlutil import parse_xml

SCHEMAS = ["ours", "stock"]
STEPS = ("submitted", "work generator", "transitioner: result created", "scheduler: sent", "uploaded",
         "scheduler: reported", "transitioner: need_validate", "validator", "assimilator",
         "transitioner: file_delete_state", "file deleter")
RDS = b"RDS bytes (the bitwise policy does not read them)"
STDOUT = b"[1] 5.5\n"


# --- the two projects ----------------------------------------------------------------------------
def make_project(schema: str, tmp_path: Path, db_settings):
    """A project whose database has our schema, or stock BOINC's plus `--existing`'s additions."""
    spec = ProjectSpec(project_dir=tmp_path / f"proj_{schema}", master_url="http://127.0.0.1:8999/test/",
                       name="test", db=db_settings)
    config = create_project(spec)
    if schema == "ours":
        return config
    # The same project directory (keys, config.xml, templates), its database replaced by one
    # made as stock BOINC's schema makes it; then what `boinc-ext project create --existing` does.
    with Database(db_settings, with_database=False) as server:
        server.execute(f"drop database `{db_settings.name}`")
        server.execute(f"create database `{db_settings.name}` character set utf8mb4")
    with Database(db_settings) as db:
        create_stock_tables(db)
        assert db.scalar("select count(*) from app") == 0   # really the stock, empty database
    return extend_existing_project(config.project_dir)


@pytest.fixture
def other_db_settings(mariadb, db_settings):
    """A second database name, dropped afterwards (db_settings gives one per test)."""
    settings = db_settings.with_name(db_settings.name + "_b")
    yield settings
    with Database(settings, with_database=False) as server:
        server.execute(f"drop database if exists `{settings.name}`")


# --- one job through the pipeline ------------------------------------------------------------------
def run_daemon(daemon_class, config, *args: str) -> None:
    options = daemon_class.options_class.parse(["--one_pass", *args], daemon_class.name)
    assert daemon_class(config, options).run() == EXIT_OK, f"{daemon_class.name} failed"


def wait_until_due(db, wu_id: int) -> None:
    """The transitioner takes workunits strictly due (transition_time < now, as stock): wait
    for the clock rather than touch the row."""
    due = db.scalar("select transition_time from workunit where id = %s", (wu_id,))
    while int(time.time()) <= due:
        time.sleep(0.05)


_VOLATILE = {"authenticator", "cross_project_id", "passwd_hash", "login_token", "mod_time", "host_cpid",
             "external_ip_addr", "last_ip_addr", "random"}
_RANDOM_SUFFIX = re.compile(r"_r\d+_(\d+)")
_SIGNATURE = re.compile(r"<xml_signature>.*?</xml_signature>", re.DOTALL)
_TIME_ELEMENT = re.compile(r"<(sent_time|received_time|report_deadline|create_time|mod_time)>[0-9.]+<")


def normalized(row: dict | None) -> dict | None:
    """A row without what differs from run to run (times, random names, secrets)."""
    if row is None:
        return None
    out = {}
    for column, value in row.items():
        if column in _VOLATILE or isinstance(value, (datetime.datetime, datetime.date)):
            continue
        if column.startswith("expavg_") and column != "expavg_time":
            value = "<positive>" if value > 0 else value   # decays with the seconds since the work started
        elif isinstance(value, (int, float)) and value > 1e9 and column != "id" \
                and column.endswith(("time", "deadline")):
            value = "<time>" if value < 2**31 - 1 else value
        if isinstance(value, (str, bytes)):
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            text = _RANDOM_SUFFIX.sub(r"_rN_\1", text)
            text = _SIGNATURE.sub("<xml_signature>S</xml_signature>", text)   # each project its own keys
            value = _TIME_ELEMENT.sub(r"<\1>T<", text)
        out[column] = value
    return out


def snapshot(db, job_id: int) -> dict:
    job = db.query_one("select * from ext_job where id = %s", (job_id,))
    wu_id = job["workunitid"]
    return {
        "job": normalized(job),
        "workunit": normalized(db.query_one("select * from workunit where id = %s", (wu_id,))) if wu_id else None,
        "results": [normalized(r) for r in db.query("select * from result where workunitid = %s order by id",
                                                    (wu_id,))],
        "hosts": [normalized(r) for r in db.query("select * from host order by id")],
        "users": [normalized(r) for r in db.query("select * from user order by id")],
        "host_app_versions": [normalized(r) for r in db.query("select * from host_app_version")],
    }


def run_pipeline(config, tmp_path: Path) -> tuple[int, dict[str, dict]]:
    """One R job through every daemon; returns its id and the rows after each step."""
    steps: dict[str, dict] = {}
    app = create_app(config)
    client = app.test_client()
    sched_path = urlsplit(scheduler_url(config)).path
    upload_key = crypto.read_private_key(config.key_dir / "upload_private")

    def rpc(body: bytes):
        response = client.post(sched_path, data=body, content_type="application/x-www-form-urlencoded")
        assert response.status_code == 200, response.data
        return parse_xml(response.data, "reply")

    try:
        with Database.for_project(config) as db:
            script, data = write_inputs(tmp_path / f"inputs_{config.db_name}", script="x <- 1:10\nmean(x)\n",
                                        data={})
            job_id = submit_job(config, db, script, data, replication=1, seed=42, name="pipeline")
            steps["submitted"] = snapshot(db, job_id)

            run_daemon(WorkGenerator, config)
            steps["work generator"] = snapshot(db, job_id)
            wu_id = db.scalar("select workunitid from ext_job where id = %s", (job_id,))
            wait_until_due(db, wu_id)
            run_daemon(Transitioner, config)
            steps["transitioner: result created"] = snapshot(db, job_id)

            auth = make_user(db, "volunteer@example.org")
            reply = rpc(scheduler_request(auth))
            hostid = int(reply.findtext("hostid"))
            [result] = reply.findall("result")
            steps["scheduler: sent"] = snapshot(db, job_id)

            outputs = [f for f in reply.findall("file_info") if f.find("xml_signature") is not None]
            assert len(outputs) == 2
            contents = [RDS, STDOUT]   # the output template's order: result.rds, stdout.txt
            for info, content in zip(outputs, contents):
                name, max_nbytes = info.findtext("name"), int(float(info.findtext("max_nbytes")))
                response = client.post(urlsplit(info.findtext("url")).path,
                                       data=upload_body(name, content, upload_key, max_nbytes=max_nbytes))
                assert response.status_code == 200 and b"<status>0</status>" in response.data, response.data
            steps["uploaded"] = snapshot(db, job_id)

            # the scheduler caps a reported elapsed time at the time since sending (as stock
            # does): let the task's 2 s pass so that it earns credit
            sent = db.scalar("select sent_time from result where name = %s", (result.findtext("name"),))
            while int(time.time()) < sent + 2:
                time.sleep(0.05)
            reports = reported_result(result.findtext("name"), outputs[0].findtext("name"), stderr="[1] 5.5")
            reply = rpc(scheduler_request(auth, hostid, 1, with_key=True, reports=reports, work_req_seconds=0))
            assert [a.findtext("name") for a in reply.findall("result_ack")] == [result.findtext("name")]
            steps["scheduler: reported"] = snapshot(db, job_id)

            wait_until_due(db, wu_id)
            run_daemon(Transitioner, config)
            steps["transitioner: need_validate"] = snapshot(db, job_id)
            run_daemon(Validator, config, "--app", "r_job", "--policy", "bitwise")
            steps["validator"] = snapshot(db, job_id)
            run_daemon(Assimilator, config, "--app", "r_job")
            steps["assimilator"] = snapshot(db, job_id)
            wait_until_due(db, wu_id)
            run_daemon(Transitioner, config)
            steps["transitioner: file_delete_state"] = snapshot(db, job_id)
            run_daemon(FileDeleter, config)
            steps["file deleter"] = snapshot(db, job_id)
    finally:
        app.extensions["boinc_ext.databases"].close_all()
    assert tuple(steps) == STEPS
    return job_id, steps


# --- the tests ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("schema", SCHEMAS)
def test_one_job_through_every_daemon(schema, tmp_path, db_settings):
    config = make_project(schema, tmp_path, db_settings)
    job_id, steps = run_pipeline(config, tmp_path)

    def at(step):
        s = steps[step]
        return s["job"], s["workunit"], s["results"]

    job, wu, results = at("work generator")
    assert job["state"] == "running" and wu is not None and results == []
    _, wu, [res] = at("transitioner: result created")
    assert res["server_state"] == SERVER_STATE_UNSENT and wu["transition_time"] == "<time>"
    _, _, [res] = at("scheduler: sent")
    assert res["server_state"] == SERVER_STATE_IN_PROGRESS and res["hostid"] > 0 and res["sent_time"] == "<time>"
    _, wu, [res] = at("scheduler: reported")
    assert (res["server_state"], res["outcome"], res["received_time"]) == (SERVER_STATE_OVER, OUTCOME_SUCCESS,
                                                                           "<time>")
    assert wu["need_validate"] == 0
    _, wu, _ = at("transitioner: need_validate")
    assert wu["need_validate"] == 1
    _, wu, [res] = at("validator")
    assert res["validate_state"] == VALIDATE_STATE_VALID and res["granted_credit"] > 0
    assert wu["canonical_resultid"] == res["id"] and wu["need_validate"] == 0
    assert steps["validator"]["users"][0]["total_credit"] > 0 and steps["validator"]["hosts"][0]["total_credit"] > 0
    job, wu, _ = at("assimilator")
    assert wu["assimilate_state"] == ASSIMILATE_DONE and job["state"] == "done"
    assert {p.name: p.read_bytes() for p in result_dir(config, job_id).iterdir()} == {"result.rds": RDS,
                                                                                     "stdout.txt": STDOUT}
    _, wu, [res] = at("file deleter")
    assert wu["file_delete_state"] == FILE_DELETE_DONE and res["file_delete_state"] == FILE_DELETE_DONE
    assert not [p for p in config.upload_dir.rglob("*") if p.is_file()]


def test_stock_schema_rows_equal_ours_after_every_step(tmp_path, db_settings, other_db_settings):
    _, ours = run_pipeline(make_project("ours", tmp_path, db_settings), tmp_path)
    _, stock = run_pipeline(make_project("stock", tmp_path, other_db_settings), tmp_path)
    differences = [f"after {step}: {what}" for step in STEPS for what in differing(stock[step], ours[step])]
    assert not differences, "stock schema vs ours:\n" + "\n".join(differences)


def differing(stock: dict, ours: dict) -> list[str]:
    """'table[i].column: stock value != our value' for every difference between two snapshots."""
    out = []
    for part, b in ours.items():
        a = stock[part]
        rows = list(zip(a, b)) if isinstance(b, list) else [(a, b)]
        if isinstance(b, list) and len(a) != len(b):
            out.append(f"{part}: {len(a)} rows != {len(b)} rows")
        for i, (x, y) in enumerate(rows):
            if x is None or y is None:
                if x is not y:
                    out.append(f"{part}[{i}]: {x!r} != {y!r}")
                continue
            out += [f"{part}[{i}].{c}: {x.get(c)!r} != {y.get(c)!r}" for c in sorted(set(x) | set(y))
                    if x.get(c) != y.get(c)]
    return out
