"""The file deleter against a real project: real files in the hierarchies, real BOINC rows."""
from __future__ import annotations

import logging
import os
import subprocess
import time

import pytest

from boinc_ext.daemons.base import EVENT_STARTED
from boinc_ext.daemons.file_deleter import (FILE_DELETE_DONE, FILE_DELETE_ERROR, FILE_DELETE_READY, FileDeleter,
                                            FileDeleterOptions)
from boinc_ext.boinc.hierarchy import hier_path

_WU_DEFAULTS = dict(
    create_time=0, appid=0, name="", xml_doc="", batch=0, rsc_fpops_est=1e9, rsc_fpops_bound=1e10,
    rsc_memory_bound=1e8, rsc_disk_bound=1e8, need_validate=0, canonical_resultid=0, canonical_credit=0,
    transition_time=2147483647, delay_bound=3600, error_mask=0, file_delete_state=0, assimilate_state=2,
    hr_class=0, opaque=0, min_quorum=1, target_nresults=1, max_error_results=3, max_total_results=5,
    max_success_results=3, result_template_file="templates/r_job_out", priority=0, rsc_bandwidth_bound=0,
    fileset_id=0, app_version_id=0, transitioner_flags=0, size_class=-1, keywords="", app_version_num=0,
)
_RESULT_DEFAULTS = dict(
    create_time=0, workunitid=0, server_state=5, outcome=1, client_state=5, hostid=0, userid=0,
    report_deadline=0, sent_time=0, received_time=0, name="", cpu_time=0, xml_doc_in="", xml_doc_out="",
    stderr_out="", batch=0, file_delete_state=0, validate_state=1, claimed_credit=0, granted_credit=0,
    opaque=0, random=0, app_version_num=0, appid=0, exit_status=0, teamid=0, priority=0, elapsed_time=0,
    flops_estimate=0, app_version_id=0, runtime_outlier=0, size_class=-1, peak_working_set_size=0,
    peak_swap_size=0, peak_disk_usage=0,
)


def insert(db, table: str, defaults: dict, **values) -> int:
    row = {**defaults, "create_time": int(time.time()), **values}
    with db.transaction():
        return db.insert(f"insert into {table} ({', '.join(row)}) values ({', '.join(['%s'] * len(row))})",
                         list(row.values()))


def file_infos(*names: str, no_delete: tuple[str, ...] = ()) -> str:
    return "".join(f"<file_info>\n    <name>{n}</name>\n{'    <no_delete/>' if n in no_delete else ''}"
                   f"</file_info>\n" for n in names)


def add_wu(db, name: str, *files: str, no_delete=(), state=FILE_DELETE_READY, appid=0) -> int:
    xml = file_infos(*files, no_delete=no_delete) + f"<workunit>\n    <name>{name}</name>\n</workunit>\n"
    return insert(db, "workunit", _WU_DEFAULTS, name=name, xml_doc=xml, file_delete_state=state, appid=appid)


def add_result(db, name: str, *files: str, no_delete=(), state=FILE_DELETE_READY, appid=0) -> int:
    xml = file_infos(*files, no_delete=no_delete) + f"<result>\n    <name>{name}</name>\n</result>\n"
    return insert(db, "result", _RESULT_DEFAULTS, name=name, xml_doc_in=xml, file_delete_state=state,
                  appid=appid)


def make_file(root, name: str, fanout: int, text: str = "data"):
    path = hier_path(name, root, fanout)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def state(db, table: str, row_id: int) -> int:
    with db.transaction():
        return db.scalar(f"select file_delete_state from {table} where id = %s", (row_id,))


def deleter(project, *argv: str) -> FileDeleter:
    return FileDeleter(project, FileDeleterOptions.parse(list(argv), FileDeleter.name))


def set_up(project, *argv: str) -> FileDeleter:
    """A deleter ready for do_pass() (run() calls setup() itself)."""
    daemon = deleter(project, *argv)
    daemon.setup()
    return daemon


def upload(project, name):
    return make_file(project.upload_dir, name, project.uldl_dir_fanout)


def download(project, name, suffixes=("", ".md5", ".gz")):
    """A staged input with its .md5 and .gz siblings (which sit next to it)."""
    base = make_file(project.download_dir, name, project.uldl_dir_fanout)
    paths = [base.with_name(base.name + suffix) for suffix in suffixes]
    for path in paths:
        path.write_text("data")
    return paths


def test_one_pass_deletes_output_and_input_files(project, project_db, caplog):
    caplog.set_level(logging.DEBUG)
    out = [upload(project, "wu1_0_r0"), upload(project, "wu1_0_r1")]
    kept_out = upload(project, "wu1_0_keep")
    result_id = add_result(project_db, "wu1_0", "wu1_0_r0", "wu1_0_r1", "wu1_0_keep", no_delete=("wu1_0_keep",))
    inputs = download(project, "in_a")
    shared = download(project, "shared_vm", suffixes=("",))
    wu_id = add_wu(project_db, "wu1", "in_a", "shared_vm", no_delete=("shared_vm",))

    assert deleter(project, "--one_pass").run() == 0
    assert not any(p.exists() for p in out + inputs)
    assert kept_out.exists() and shared[0].exists()
    assert state(project_db, "result", result_id) == FILE_DELETE_DONE
    assert state(project_db, "workunit", wu_id) == FILE_DELETE_DONE
    logged = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"[RESULT#{result_id} wu1_0] deleted ") for m in logged)
    assert any(m.startswith(f"[WU#{wu_id} wu1] deleted ") and m.endswith("in_a.md5") for m in logged)

    # A second pass finds nothing to do.
    assert set_up(project, "--one_pass").do_pass() is False


def test_nodelete_workunit_keeps_its_files(project, project_db):
    inputs = download(project, "in_nd")
    wu_id = add_wu(project_db, "batch_nodelete_7", "in_nd")
    assert set_up(project).do_pass() is True
    assert all(p.exists() for p in inputs)
    assert state(project_db, "workunit", wu_id) == FILE_DELETE_DONE


@pytest.mark.parametrize("bad_name", ["../../x", "../x", "/etc/x", "a/b", ""])
def test_path_trick_name_gives_error_and_deletes_nothing(project, project_db, bad_name):
    outside = project.project_dir / "x"
    outside.write_text("must survive")
    good = upload(project, "good_out")
    result_id = add_result(project_db, "trick_0", "good_out", bad_name)
    inputs = download(project, "good_in")
    wu_id = add_wu(project_db, "trick", bad_name, "good_in")

    assert deleter(project, "--one_pass").run() == 0
    assert outside.read_text() == "must survive"
    assert good.exists() and all(p.exists() for p in inputs)
    assert state(project_db, "result", result_id) == FILE_DELETE_ERROR
    assert state(project_db, "workunit", wu_id) == FILE_DELETE_ERROR


def test_malformed_xml_gives_error(project, project_db):
    wu_id = insert(project_db, "workunit", _WU_DEFAULTS, name="broken", xml_doc="<file_info><name>a",
                   file_delete_state=FILE_DELETE_READY)
    assert set_up(project).do_pass() is True
    assert state(project_db, "workunit", wu_id) == FILE_DELETE_ERROR


def test_missing_files_still_count_as_deleted(project, project_db):
    result_id = add_result(project_db, "gone_0", "never_uploaded")
    wu_id = add_wu(project_db, "gone", "never_staged")
    assert set_up(project).do_pass() is True
    assert state(project_db, "result", result_id) == FILE_DELETE_DONE
    assert state(project_db, "workunit", wu_id) == FILE_DELETE_DONE


def test_other_states_are_left_alone(project, project_db):
    kept = upload(project, "init_out")
    result_id = add_result(project_db, "init_0", "init_out", state=0)
    assert set_up(project).do_pass() is False
    assert kept.exists() and state(project_db, "result", result_id) == 0


def test_mod_and_app_select_rows(project, project_db):
    with project_db.transaction():
        r_job = project_db.scalar("select id from app where name = 'r_job'")
        mr_map = project_db.scalar("select id from app where name = 'mr_map'")
    ids = {app: [add_wu(project_db, f"w_{app}_{i}", f"f_{app}_{i}", appid=app) for i in range(4)]
           for app in (r_job, mr_map)}
    assert set_up(project, "--app", "mr_map", "--mod", "2", "1").do_pass() is True
    for app, wu_ids in ids.items():
        for wu_id in wu_ids:
            expected = FILE_DELETE_DONE if app == mr_map and wu_id % 2 == 1 else FILE_DELETE_READY
            assert state(project_db, "workunit", wu_id) == expected

    assert deleter(project, "--one_pass", "--app", "no_such_app").run() == 1


def test_error_rows_are_retried_unless_told_not_to(project, project_db):
    inputs = download(project, "retry_in")
    wu_id = add_wu(project_db, "retry", "retry_in", state=FILE_DELETE_ERROR)
    assert set_up(project, "--dont_retry_errors").do_pass() is False
    assert state(project_db, "workunit", wu_id) == FILE_DELETE_ERROR
    assert set_up(project).do_pass() is True
    assert state(project_db, "workunit", wu_id) == FILE_DELETE_DONE
    assert not any(p.exists() for p in inputs)


def test_launcher_in_bin_runs_one_pass(project, project_db):
    out = upload(project, "cli_out")
    result_id = add_result(project_db, "cli_0", "cli_out")
    env = dict(os.environ, BOINC_PROJECT_DIR=str(project.project_dir))
    run = subprocess.run([str(project.project_dir / "bin" / "ext_file_deleter"), "-one_pass", "-d", "3"],
                         cwd=project.tmp_dir, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert f"[ext_file_deleter] INFO {EVENT_STARTED}" in run.stderr
    assert f"[RESULT#{result_id} cli_0] deleted {out}" in run.stderr
    assert not out.exists() and state(project_db, "result", result_id) == FILE_DELETE_DONE
