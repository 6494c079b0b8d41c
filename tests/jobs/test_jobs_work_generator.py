"""The work generator against a real MariaDB project: the workunit it makes for a job, its
templates, and safety when killed between creating the workunit and linking the job."""
from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from boinc_ext.daemons.options import DaemonOptions
from boinc_ext.jobs import store, submit_job
from boinc_ext.apps.r_job import OUTPUT_TEMPLATE, input_template_file, install_templates
from boinc_ext.jobs.work_generator import EVENT_WU_CREATED, EVENT_WU_LINKED, WorkGenerator
from boinc_ext.transitioner.daemon import Transitioner
from boinc_ext.boinc.templates import InputTemplate, OutputTemplate
from boinc_ext.boinc.xmlutil import parse_fragment

from jobs_support import make_due, results_of, run_once, write_inputs


class Killed(BaseException):
    """Stands for the process dying: nothing after it runs, the open transaction is lost."""


def wu_of(db, name):
    return db.query_one("select * from workunit where name = %s", (name,))


def test_workunit_carries_the_job(project, project_db, tmp_path, caplog):
    script, data = write_inputs(tmp_path / "in", data={"data.csv": "a,b\n1,2\n", "w.txt": "w"})
    job_id = submit_job(project, project_db, script, data, replication=2, deadline=7200, seed=1234)
    files = store.job_files(project_db, job_id)
    with caplog.at_level(logging.INFO, "boinc_ext.daemon"):
        assert run_once(WorkGenerator, project) == 0

    job = store.load_job(project_db, job_id)
    wu = wu_of(project_db, f"rjob_{job_id}")
    assert (job.state, job.workunit_id) == ("running", wu["id"])
    assert (wu["min_quorum"], wu["target_nresults"], wu["delay_bound"]) == (2, 2, 7200)
    assert wu["max_error_results"] >= 1 and wu["max_success_results"] >= 2
    assert wu["max_total_results"] >= max(wu["max_error_results"], wu["max_success_results"])
    assert wu["rsc_fpops_bound"] > wu["rsc_fpops_est"] > 0
    assert wu["rsc_memory_bound"] > 0 and wu["rsc_disk_bound"] > sum(f.nbytes for f in files)
    assert wu["opaque"] == job_id and wu["result_template_file"] == OUTPUT_TEMPLATE
    app = project_db.scalar("select name from app where id = %s", (wu["appid"],))
    assert app == "r_job"

    elements = parse_fragment(wu["xml_doc"].decode(), "xml_doc")
    infos = [e for e in elements if e.tag == "file_info"]
    assert [i.findtext("name").strip() for i in infos] == [f.physical_name for f in files]
    assert all(i.find("no_delete") is not None for i in infos)
    assert [i.findtext("md5_cksum").strip() for i in infos] == [f.md5 for f in files]
    workunit = next(e for e in elements if e.tag == "workunit")
    refs = [(r.findtext("file_name").strip(), r.findtext("open_name").strip()) for r in workunit.findall("file_ref")]
    assert refs == [(files[0].physical_name, "script.R"), (files[1].physical_name, "data.csv"),
                    (files[2].physical_name, "w.txt")]
    assert workunit.findtext("command_line").strip() == "--seed 1234"
    assert any(EVENT_WU_CREATED in r.getMessage() and f"[JOB#{job_id} job_{job_id}]" in r.getMessage()
               for r in caplog.records)

    # Templates: one per number of data files, and the fixed output template.
    templates = project.project_dir / "templates"
    assert InputTemplate.load(templates / "r_job_in_2").n_variable_inputs == 3
    assert InputTemplate.load(templates / "r_job_in_0").n_variable_inputs == 1
    assert OutputTemplate.load(project.project_dir / OUTPUT_TEMPLATE).n_outputs == 2


def test_each_job_gets_its_own_open_names(project, project_db, tmp_path):
    a = submit_job(project, project_db, *write_inputs(tmp_path / "a", data={"x.csv": "1", "y.csv": "2"}))
    b = submit_job(project, project_db, *write_inputs(tmp_path / "b", data={"p.csv": "3", "q.csv": "4"}))
    c = submit_job(project, project_db, *write_inputs(tmp_path / "c", data={}))
    assert run_once(WorkGenerator, project) == 0
    for job_id, names in ((a, ["script.R", "x.csv", "y.csv"]), (b, ["script.R", "p.csv", "q.csv"]),
                          (c, ["script.R"])):
        xml = wu_of(project_db, f"rjob_{job_id}")["xml_doc"].decode()
        workunit = next(e for e in parse_fragment(xml, "x") if e.tag == "workunit")
        assert [r.findtext("open_name").strip() for r in workunit.findall("file_ref")] == names


def test_results_carry_the_output_template_verbatim(project, project_db, tmp_path):
    """templates.py and results.py must pass <no_validate/> and <copy_file/> through into xml_doc_in."""
    job_id = submit_job(project, project_db, *write_inputs(tmp_path / "in"))
    run_once(WorkGenerator, project)
    wu_id = store.load_job(project_db, job_id).workunit_id
    make_due(project_db, wu_id)
    run_once(Transitioner, project)
    (result,) = results_of(project_db, wu_id)
    elements = parse_fragment(result["xml_doc_in"].decode(), "xml_doc_in")
    infos = {e.findtext("name").strip(): e for e in elements if e.tag == "file_info"}
    refs = {r.findtext("open_name").strip(): r for r in next(e for e in elements if e.tag == "result")}
    assert set(refs) == {"result.rds", "stdout.txt"}
    assert refs["stdout.txt"].find("no_validate") is not None
    assert refs["result.rds"].find("no_validate") is None
    assert all(r.find("copy_file") is not None for r in refs.values())
    rds_info = infos[refs["result.rds"].findtext("file_name").strip()]
    stdout_info = infos[refs["stdout.txt"].findtext("file_name").strip()]
    assert (int(rds_info.findtext("max_nbytes")), int(stdout_info.findtext("max_nbytes"))) == (64 << 20, 16 << 20)


def test_killed_after_creating_the_workunit_links_it_next_time(project, project_db, tmp_path, monkeypatch,
                                                                caplog):
    job_id = submit_job(project, project_db, *write_inputs(tmp_path / "in"))

    def die(*args, **kwargs):
        raise Killed
    monkeypatch.setattr(store, "mark_running", die)
    generator = WorkGenerator(project, DaemonOptions(one_pass=True))
    generator.setup()
    with pytest.raises(Killed):
        generator.do_pass()
    assert wu_of(project_db, f"rjob_{job_id}") is not None
    assert store.load_job(project_db, job_id).state == "submitted"

    monkeypatch.undo()
    with caplog.at_level(logging.INFO, "boinc_ext.daemon"):
        assert run_once(WorkGenerator, project) == 0
    job = store.load_job(project_db, job_id)
    assert project_db.scalar("select count(*) from workunit") == 1
    assert (job.state, job.workunit_id) == ("running", wu_of(project_db, f"rjob_{job_id}")["id"])
    assert any(EVENT_WU_LINKED in r.getMessage() for r in caplog.records)
    assert run_once(WorkGenerator, project) == 0  # nothing left to do
    assert project_db.scalar("select count(*) from workunit") == 1


def test_a_foreign_workunit_of_that_name_fails_the_job(project, project_db, tmp_path):
    first = submit_job(project, project_db, *write_inputs(tmp_path / "a"))
    run_once(WorkGenerator, project)
    second = submit_job(project, project_db, *write_inputs(tmp_path / "b"))
    # Someone made a workunit with the name the second job's would get, by hand.
    project_db.execute("update workunit set name = %s where name = %s", (f"rjob_{second}", f"rjob_{first}"))
    assert run_once(WorkGenerator, project) == 0
    job = store.load_job(project_db, second)
    assert job.state == "failed" and "not made for this job" in job.error
    assert project_db.scalar("select count(*) from workunit") == 1


def test_an_input_gone_from_the_download_hierarchy_fails_the_job(project, project_db, tmp_path):
    from boinc_ext.boinc.hierarchy import hier_path
    job_id = submit_job(project, project_db, *write_inputs(tmp_path / "in", data={"gone.csv": "bye"}))
    gone = store.job_files(project_db, job_id)[1].physical_name
    path = hier_path(gone, project.download_dir, project.uldl_dir_fanout)
    path.unlink()
    path.with_name(path.name + ".md5").unlink()
    assert run_once(WorkGenerator, project) == 0
    job = store.load_job(project_db, job_id)
    assert job.state == "failed" and gone in job.error
    assert project_db.scalar("select count(*) from workunit") == 0


def test_mod_splits_jobs_between_generators(project, project_db, tmp_path):
    ids = [submit_job(project, project_db, *write_inputs(tmp_path / str(i), script=f"{i}\n")) for i in range(4)]
    WorkGenerator(project, DaemonOptions(one_pass=True, mod=(2, 0))).run()
    assert {i: store.load_job(project_db, i).state for i in ids} == {
        i: "running" if i % 2 == 0 else "submitted" for i in ids}
    WorkGenerator(project, DaemonOptions(one_pass=True, mod=(2, 1))).run()
    assert {store.load_job(project_db, i).state for i in ids} == {"running"}


def test_install_templates_is_idempotent_and_keeps_edits(project, project_db, tmp_path):
    install_templates(project)
    path = project.project_dir / input_template_file(0)
    edited = path.read_text().replace("<no_delete/>", "<no_delete/>\n        <sticky/>", 1)
    path.write_text(edited)
    install_templates(project)
    assert path.read_text() == edited
    assert not list((project.project_dir / "templates").glob(".*"))
    # An admin's addition reaches the workunits.
    job_id = submit_job(project, project_db, *write_inputs(tmp_path / "in", data={}))
    run_once(WorkGenerator, project)
    (info,) = [e for e in parse_fragment(wu_of(project_db, f"rjob_{job_id}")["xml_doc"].decode(), "x")
               if e.tag == "file_info"]
    assert info.find("sticky") is not None and info.find("no_delete") is not None


def test_runs_as_a_module(project, project_db, tmp_path):
    job_id = submit_job(project, project_db, *write_inputs(tmp_path / "in"))
    run = subprocess.run([sys.executable, "-m", "boinc_ext.jobs.work_generator", "--one_pass", "-d", "3",
                          "--project_dir", str(project.project_dir)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert f"[JOB#{job_id} job_{job_id}] {EVENT_WU_CREATED}" in run.stderr
    assert store.load_job(project_db, job_id).state == "running"
