"""Submitting R jobs, their status and their results, against a real MariaDB project."""
from __future__ import annotations

import json
import logging

import pytest

from boinc_ext import cli
from boinc_ext.assimilator.daemon import Assimilator
from boinc_ext.boinc.hierarchy import hier_path, md5_file, read_md5_info
from boinc_ext.jobs import (JobFailedError, JobInputError, JobNotFinishedError, UnknownJobError, fetch_result,
                            job_status, store, submit_job)
from boinc_ext.jobs.model import SEED_LIMIT
from boinc_ext.jobs.result_store import result_path
from boinc_ext.jobs.submit import EVENT_JOB_SUBMITTED
from boinc_ext.transitioner.daemon import Transitioner

from jobs_support import (R_ERROR, make_due, report_error, results_of, run_once, running_job, valid_job,
                          write_inputs)


def staged_files(project) -> list[str]:
    """Every file under download/, hidden ones included. (The hierarchy's directories are made
    on demand and stay, as in stock BOINC; a refused submission may leave an empty one.)"""
    root = project.download_dir
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def job_rows(db) -> tuple[int, int]:
    return db.scalar("select count(*) from ext_job"), db.scalar("select count(*) from ext_job_file")


# --- submit ----------------------------------------------------------------------------------
def test_submit_stages_inputs_content_addressed_and_inserts_rows(project, project_db, tmp_path, caplog):
    script, data = write_inputs(tmp_path / "in", data={"data.csv": "a,b\n1,2\n", "more.rds": "xyz"})
    with caplog.at_level(logging.INFO, "boinc_ext.jobs"):
        job_id = submit_job(project, project_db, script, data, replication=2, deadline=3600)

    job = store.load_job(project_db, job_id)
    assert (job.name, job.kind, job.state, job.replication, job.deadline, job.workunit_id) == (
        f"job_{job_id}", "r_job", "submitted", 2, 3600, 0)
    assert 0 <= job.seed < SEED_LIMIT
    files = store.job_files(project_db, job_id)
    assert [(f.role, f.logical_name) for f in files] == [
        ("script", "script.R"), ("data", "data.csv"), ("data", "more.rds")]
    for f, source in zip(files, [script, *data], strict=True):
        md5, nbytes = md5_file(source)
        assert (f.md5, f.nbytes, f.physical_name) == (md5, nbytes, f"rjob_{md5}_{f.logical_name}")
        staged = hier_path(f.physical_name, project.download_dir, project.uldl_dir_fanout)
        assert staged.read_bytes() == source.read_bytes()
        assert read_md5_info(staged) == (md5, nbytes)
    assert not list(project.download_dir.glob(".rjob_incoming_*"))  # snapshots cleaned up
    assert any(EVENT_JOB_SUBMITTED in r.getMessage() and f"[JOB#{job_id} job_{job_id}]" in r.getMessage()
               for r in caplog.records)


def test_inputs_are_shared_between_jobs_and_seed_and_name_are_kept(project, project_db, tmp_path):
    script, data = write_inputs(tmp_path / "a")
    first = submit_job(project, project_db, script, data, seed=7, name="first-run")
    before = staged_files(project)
    script2, data2 = write_inputs(tmp_path / "b")  # the same bytes elsewhere
    second = submit_job(project, project_db, script2, data2)
    assert staged_files(project) == before
    assert [f.physical_name for f in store.job_files(project_db, first)] == [
        f.physical_name for f in store.job_files(project_db, second)]
    job = store.load_job(project_db, first)
    assert (job.name, job.seed) == ("first-run", 7)


@pytest.mark.parametrize("case, message", [
    ("missing script", "no such file"),
    ("missing data", "no such file"),
    ("bad data name", "letters, digits"),
    ("data named script.R", "taken by the job itself"),
    ("data named result.rds", "taken by the job itself"),
    ("duplicate data names", "same name"),
    ("replication 0", "--replication 0"),
    ("deadline 0", "--deadline 0"),
    ("deadline negative", "--deadline -5"),
    ("seed too big", "--seed"),
    ("automatic name", "job_<number>"),
    ("bad name", "--name"),
    ("taken name", "already exists"),
])
def test_bad_input_is_refused_and_leaves_nothing(project, project_db, tmp_path, case, message):
    script, data = write_inputs(tmp_path / "in")
    existing = submit_job(project, project_db, script, data, name="taken")
    before_files, before_rows = staged_files(project), job_rows(project_db)
    other = tmp_path / "other"
    other.mkdir()
    kwargs = {}
    if case == "missing script":
        script = tmp_path / "nope.R"
    elif case == "missing data":
        data = data + [tmp_path / "absent.csv"]
    elif case == "bad data name":
        (other / "my data.csv").write_text("1")
        data = data + [other / "my data.csv"]
    elif case in ("data named script.R", "data named result.rds"):
        name = case.split()[-1]
        (other / name).write_text("1")
        data = data + [other / name]
    elif case == "duplicate data names":
        (other / "data.csv").write_text("other bytes")
        data = data + [other / "data.csv"]
    elif case == "replication 0":
        kwargs["replication"] = 0
    elif case == "deadline 0":
        kwargs["deadline"] = 0
    elif case == "deadline negative":
        kwargs["deadline"] = -5
    elif case == "seed too big":
        kwargs["seed"] = SEED_LIMIT
    elif case == "automatic name":
        kwargs["name"] = "job_99"
    elif case == "bad name":
        kwargs["name"] = "../etc"
    elif case == "taken name":
        kwargs["name"] = "taken"
    if script.exists():  # new bytes, so that a half-done submission would leave a new file behind
        script.write_text("y <- 2\n")
    with pytest.raises(JobInputError, match=message if case != "deadline negative" else "--deadline"):
        submit_job(project, project_db, script, data, **kwargs)
    assert staged_files(project) == before_files
    assert job_rows(project_db) == before_rows
    assert store.load_job(project_db, existing).name == "taken"


def test_failed_insert_removes_the_files_it_staged(project, project_db, tmp_path, monkeypatch):
    script, data = write_inputs(tmp_path / "in")
    submit_job(project, project_db, script, data, name="dup")
    before_files, before_rows = staged_files(project), job_rows(project_db)
    script.write_text("z <- 3\n")  # a new file to stage
    # Another submission takes the name between the check and the insert.
    monkeypatch.setattr(store, "job_name_taken", lambda db, name: False)
    with pytest.raises(JobInputError, match="already exists"):
        submit_job(project, project_db, script, data, name="dup")
    assert staged_files(project) == before_files
    assert job_rows(project_db) == before_rows


# --- status and result -----------------------------------------------------------------------
def test_status_follows_the_job(project, project_db, tmp_path):
    script, data = write_inputs(tmp_path / "in")
    submitted = submit_job(project, project_db, script, data)
    status = job_status(project, project_db, submitted)
    assert (status.state, status.workunit_id, status.workunit_name, status.inputs) == (
        "submitted", 0, None, ("script.R", "data.csv"))

    job_id, wu_id = running_job(project, project_db, tmp_path / "run", replication=2)
    status = job_status(project, project_db, job_id)
    assert (status.state, status.workunit_id, status.workunit_name) == ("running", wu_id, f"rjob_{job_id}")
    assert status.start_time >= status.create_time > 0
    assert (status.results.unsent, status.results.in_progress, status.results.success) == (2, 0, 0)

    with pytest.raises(UnknownJobError):
        job_status(project, project_db, 999999)


def test_fetch_result_of_a_done_job(project, project_db, tmp_path):
    job_id, _ = valid_job(project, project_db, tmp_path / "in", rds=b"the rds")
    with pytest.raises(JobNotFinishedError, match="running"):
        fetch_result(project, project_db, job_id, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert run_once(Assimilator, project) == 0

    paths = fetch_result(project, project_db, job_id, tmp_path / "out")
    assert sorted(p.name for p in paths) == ["result.rds", "stdout.txt"]
    assert (tmp_path / "out" / "result.rds").read_bytes() == b"the rds"
    fetch_result(project, project_db, job_id, tmp_path / "out")  # same bytes again: fine
    (tmp_path / "out" / "result.rds").write_bytes(b"the user's own file")
    with pytest.raises(Exception, match="other content"):
        fetch_result(project, project_db, job_id, tmp_path / "out")
    assert (tmp_path / "out" / "result.rds").read_bytes() == b"the user's own file"
    with pytest.raises(UnknownJobError):
        fetch_result(project, project_db, 424242, tmp_path / "out")


def test_fetch_result_of_a_failed_job_gives_its_error(project, project_db, tmp_path):
    job_id, _ = failed_job(project, project_db, tmp_path)
    with pytest.raises(JobFailedError, match="object 'undefined_var' not found"):
        fetch_result(project, project_db, job_id, tmp_path / "out")
    assert not result_path(project, job_id, "result.rds").exists()


def failed_job(project, db, tmp_path):
    """A job whose script fails on every volunteer, until the workunit has too many errors."""
    job_id, wu_id = running_job(project, db, tmp_path / "in")
    for _ in range(10):
        for result in results_of(db, wu_id):
            if result["server_state"] != 5:
                report_error(db, result)
        make_due(db, wu_id)
        run_once(Transitioner, project)
        if db.scalar("select error_mask from workunit where id = %s", (wu_id,)):
            break
    assert run_once(Assimilator, project) == 0
    return job_id, wu_id


# --- the CLI ---------------------------------------------------------------------------------
def test_cli_submit_status_result(project, project_db, tmp_path, capsys):
    script, data = write_inputs(tmp_path / "in", data={"data.csv": "a\n1\n", "w.csv": "w\n2\n"})
    assert cli.main(["job", "submit", str(project.project_dir), str(script), "--data", str(data[0]),
                     "--data", str(data[1]), "--replication", "1", "--deadline", "7200", "--seed", "5",
                     "--name", "cli-job"]) == 0
    job_id = int(capsys.readouterr().out.strip())
    job = store.load_job(project_db, job_id)
    assert (job.name, job.seed, job.deadline) == ("cli-job", 5, 7200)
    assert [f.logical_name for f in store.job_files(project_db, job_id)] == ["script.R", "data.csv", "w.csv"]

    assert cli.main(["job", "status", str(project.project_dir), str(job_id)]) == 0
    out = capsys.readouterr().out
    assert f"job {job_id} (cli-job): submitted" in out and "workunit: none yet" in out
    assert cli.main(["job", "status", str(project.project_dir), str(job_id), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["id"], status["state"], status["seed"], status["results"]["unsent"]) == (
        job_id, "submitted", 5, 0)

    assert cli.main(["job", "result", str(project.project_dir), str(job_id), "--out", str(tmp_path / "o")]) == 1
    assert "not finished yet" in capsys.readouterr().err
    assert cli.main(["job", "status", str(project.project_dir), "31337"]) == 1
    assert "no job with id 31337" in capsys.readouterr().err


def test_cli_refuses_bad_submissions_clearly(project, project_db, tmp_path, capsys):
    script, _ = write_inputs(tmp_path / "in")
    assert cli.main(["job", "submit", str(project.project_dir), str(script), "--replication", "0"]) == 1
    assert "job submit: error: --replication 0" in capsys.readouterr().err
    assert cli.main(["job", "submit", str(project.project_dir), str(tmp_path / "none.R")]) == 1
    assert "none.R: no such file" in capsys.readouterr().err
    assert job_rows(project_db) == (0, 0)


def test_cli_result_and_status_of_done_and_failed_jobs(project, project_db, tmp_path, capsys):
    done_id, _ = valid_job(project, project_db, tmp_path / "ok", rds=b"rds!")
    assert run_once(Assimilator, project) == 0
    failed_id, _ = failed_job(project, project_db, tmp_path / "bad")
    capsys.readouterr()

    out_dir = tmp_path / "fetched"
    assert cli.main(["job", "result", str(project.project_dir), str(done_id), "--out", str(out_dir)]) == 0
    assert str(out_dir / "result.rds") in capsys.readouterr().out
    assert (out_dir / "result.rds").read_bytes() == b"rds!"
    assert cli.main(["job", "status", str(project.project_dir), str(done_id)]) == 0
    out = capsys.readouterr().out
    assert ": done" in out and "1 success (1 valid)" in out

    assert cli.main(["job", "result", str(project.project_dir), str(failed_id), "--out", str(out_dir)]) == 1
    assert "object 'undefined_var' not found" in capsys.readouterr().err
    assert cli.main(["job", "status", str(project.project_dir), str(failed_id)]) == 0
    out = capsys.readouterr().out
    assert ": failed" in out and "too many tasks failed" in out and R_ERROR.splitlines()[0] in out
