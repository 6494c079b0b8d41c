"""Work creation against a real database: stock layout, staging, batches, and bad input."""
import subprocess
import sys
import time

import pytest

from boinc_ext.boinc.hierarchy import hier_path, md5_file
from boinc_ext.boinc.templates import TemplateError
from boinc_ext.boinc.work import WorkCreator, WorkError, WorkunitRequest
from boinc_ext.boinc.xmlutil import XmlError

from job_templates import IN_TEMPLATE, OUT_TEMPLATE



@pytest.fixture
def templates(project):
    (project.project_dir / "templates" / "r_in").write_text(IN_TEMPLATE)
    (project.project_dir / "templates" / "r_out").write_text(OUT_TEMPLATE)
    return "templates/r_in", "templates/r_out"


@pytest.fixture
def inputs(tmp_path):
    script = tmp_path / "job.R"
    script.write_text("x <- 1\n")
    data = tmp_path / "data_1.csv"
    data.write_text("a,b\n1,2\n")
    return script, data


def _creator(project, project_db, templates, **kw):
    return WorkCreator(project, project_db, "r_job", *templates, **kw)


def _staged(project):
    root = project.download_dir
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _app_files(project):
    """What `project create` staged: the signed app-version files (the r_job wrapper)."""
    return sorted(p.name for p in project.download_dir.glob("*.pyz"))


def test_xml_doc_row_and_staging_match_stock(project, project_db, templates, inputs):
    script, data = inputs
    before = int(time.time())
    wu_id = _creator(project, project_db, templates).create(
        WorkunitRequest("wu_a", [script, data], command_line="--n 1"))
    row = project_db.query_one("select * from workunit where id = %s", (wu_id,))
    s_md5, s_size = md5_file(script)
    d_md5, d_size = md5_file(data)
    s_path = hier_path("job.R", project.download_dir, 1024)
    d_url = f"{project.download_url}/{s_path.parent.name}/job.R"
    expected = (
        "<file_info>\n<sticky/>\n"
        f"    <name>job.R</name>\n    <url>{d_url}</url>\n"
        f"    <md5_cksum>{s_md5}</md5_cksum>\n    <nbytes>{s_size}</nbytes>\n</file_info>\n"
        "<file_info>\n"
        f"    <name>data_1.csv</name>\n"
        f"    <url>{project.download_url}/{hier_path('data_1.csv', project.download_dir, 1024).parent.name}"
        f"/data_1.csv</url>\n"
        f"    <md5_cksum>{d_md5}</md5_cksum>\n    <nbytes>{d_size}</nbytes>\n</file_info>\n"
        "<workunit>\n<command_line>\n--n 1\n</command_line>\n"
        "<file_ref>\n    <file_name>job.R</file_name>\n    <open_name>script.R</open_name>\n</file_ref>\n"
        "<file_ref>\n    <file_name>data_1.csv</file_name>\n    <open_name>data.csv</open_name>\n"
        "    <copy_file/>\n</file_ref>\n"
        "<credit>5</credit>\n"
        "</workunit>")
    assert row["xml_doc"].decode() == expected
    assert row["rsc_fpops_est"] == 2e12 and row["rsc_fpops_bound"] == 86400e9
    assert (row["min_quorum"], row["target_nresults"], row["max_error_results"],
            row["max_total_results"], row["max_success_results"], row["delay_bound"]) == (2, 2, 3, 6, 4, 3600)
    assert row["result_template_file"] == "templates/r_out"
    assert before <= row["transition_time"] <= int(time.time())  # the transitioner picks it up now
    assert (row["need_validate"], row["assimilate_state"], row["file_delete_state"], row["error_mask"],
            row["canonical_resultid"], row["transitioner_flags"]) == (0, 0, 0, 0, 0, 0)
    assert project_db.scalar("select count(*) from result") == 0  # create_work makes no results
    assert s_path.read_bytes() == script.read_bytes()
    assert s_path.with_name("job.R.md5").read_text() == f"{s_md5} {s_size}\n"


def test_overrides_and_target_raise_limits(project, project_db, templates, inputs):
    creator = _creator(project, project_db, templates, defaults={"delay_bound": 100})
    wu_id = creator.create(WorkunitRequest("wu_b", list(inputs), params={"target_nresults": 8},
                                           priority=7, opaque=3.5))
    row = project_db.query_one("select * from workunit where id = %s", (wu_id,))
    assert (row["target_nresults"], row["max_total_results"], row["max_success_results"]) == (8, 8, 8)
    assert (row["delay_bound"], row["priority"], row["opaque"]) == (100, 7, 3.5)



def test_open_names_per_request(project, project_db, templates, inputs):
    creator = _creator(project, project_db, templates)
    wu_id = creator.create(WorkunitRequest("wu_named", list(inputs), open_names=["main.R", "table.csv"]))
    xml_doc = project_db.scalar("select xml_doc from workunit where id = %s", (wu_id,)).decode()
    assert "<open_name>main.R</open_name>" in xml_doc and "<open_name>table.csv</open_name>\n    <copy_file/>" in xml_doc
    assert "script.R" not in xml_doc and "data.csv" not in xml_doc
    plain = creator.create(WorkunitRequest("wu_plain", list(inputs)))  # the template's names stay
    assert "<open_name>data.csv</open_name>" in project_db.scalar(
        "select xml_doc from workunit where id = %s", (plain,)).decode()
    for names, message in ((["main.R"], "1 open names for 2 input files"), (["main.R", "../x"], "open name")):
        with pytest.raises(WorkError, match=message):
            creator.create(WorkunitRequest("wu_bad", list(inputs), open_names=names))

def test_batch_is_one_transaction(project, project_db, templates, tmp_path):
    files = []
    for i in range(50):
        f = tmp_path / f"in_{i}.csv"
        f.write_text(f"{i}\n")
        files.append(f)
    script = tmp_path / "job.R"
    script.write_text("1\n")
    creator = _creator(project, project_db, templates)
    ids = creator.create_many([WorkunitRequest(f"b_{i}", [script, files[i]]) for i in range(50)])
    assert len(ids) == 50 and len(set(ids)) == 50
    assert project_db.scalar("select count(*) from workunit") == 50
    # one bad request in a batch: nothing of the batch remains
    staged = _staged(project)
    bad = [WorkunitRequest(f"c_{i}", [script, tmp_path / f"new_{i}.csv"]) for i in range(3)]
    for i in range(2):
        (tmp_path / f"new_{i}.csv").write_text("x\n")
    with pytest.raises(WorkError, match="new_2.csv: no such file"):
        creator.create_many(bad)
    assert project_db.scalar("select count(*) from workunit") == 50
    assert _staged(project) == staged


def test_staged_name_and_top_level_download_file(project, project_db, templates, inputs):
    script, data = inputs
    creator = _creator(project, project_db, templates)
    creator.create(WorkunitRequest("wu_1", [script, data]))
    (project.download_dir / "top.csv").write_text("top\n")
    creator.create(WorkunitRequest("wu_2", ["job.R", "top.csv"]))  # names, not paths
    assert hier_path("top.csv", project.download_dir, 1024).is_file()


# --- bad input: a clear error and nothing left behind -----------------------------------
def _assert_nothing_left(project, project_db, staged_before):
    assert project_db.scalar("select count(*) from workunit") == 0
    assert _staged(project) == staged_before


def test_missing_input_file(project, project_db, templates, inputs, tmp_path):
    with pytest.raises(WorkError, match="nope.csv: no such file"):
        _creator(project, project_db, templates).create(
            WorkunitRequest("wu_x", [inputs[0], tmp_path / "nope.csv"]))
    _assert_nothing_left(project, project_db, _app_files(project))


def test_missing_staged_name(project, project_db, templates, inputs):
    with pytest.raises(WorkError, match="not in the download hierarchy"):
        _creator(project, project_db, templates).create(WorkunitRequest("wu_x", [inputs[0], "ghost.csv"]))
    _assert_nothing_left(project, project_db, _app_files(project))


def test_unknown_app(project, project_db, templates):
    with pytest.raises(WorkError, match="unknown app 'nope'"):
        WorkCreator(project, project_db, "nope", *templates)


@pytest.mark.parametrize("text, message", [
    ("<input_template><file_info/>", "malformed XML"),
    ("<input_template><workunit/></input_template><x/>", "malformed XML"),
    ("<other/>", "root element must be <input_template>"),
    ("<input_template><file_info/></input_template>", "exactly one <workunit>"),
    ("<input_template><file_info/><workunit/></input_template>", "1 <file_info> but 0 <file_ref>"),
    ("<input_template><file_info/><workunit><file_ref/></workunit></input_template>", "open_name"),
    ("<input_template><workunit><rsc_fpops_est>lots</rsc_fpops_est></workunit></input_template>",
     "must be a number"),
    ("<input_template><file_info><gzip/></file_info><workunit><file_ref><open_name>a</open_name>"
     "</file_ref></workunit></input_template>", "not supported"),
    ('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><input_template><workunit>'
     '<command_line>&e;</command_line></workunit></input_template>', None),
])
def test_malformed_input_template(project, project_db, templates, text, message):
    (project.project_dir / "templates" / "bad_in").write_text(text)
    if message is None:  # entities are never expanded
        creator = WorkCreator(project, project_db, "r_job", "templates/bad_in", templates[1])
        assert creator.input_template.command_line == ""
        return
    with pytest.raises((TemplateError, XmlError), match=message):
        WorkCreator(project, project_db, "r_job", "templates/bad_in", templates[1])


@pytest.mark.parametrize("text, message", [
    ("<output_template><file_info><name>x</name></file_info><result/>", "malformed XML"),
    ("<output_template><file_info><name>x</name></file_info><result><file_ref/></result>"
     "</output_template>", "max_nbytes"),
    ("<output_template></output_template>", "no <result>"),
])
def test_malformed_result_template(project, project_db, templates, text, message):
    (project.project_dir / "templates" / "bad_out").write_text(text)
    with pytest.raises((TemplateError, XmlError), match=message):
        WorkCreator(project, project_db, "r_job", templates[0], "templates/bad_out")


def test_missing_template(project, project_db, templates):
    with pytest.raises(WorkError, match="no such file"):
        WorkCreator(project, project_db, "r_job", "templates/none", templates[1])


def test_duplicate_workunit_name(project, project_db, templates, inputs, tmp_path):
    creator = _creator(project, project_db, templates)
    creator.create(WorkunitRequest("dup", list(inputs)))
    staged = _staged(project)
    other = tmp_path / "other.csv"
    other.write_text("o\n")
    with pytest.raises(WorkError, match="already exists: dup"):
        creator.create(WorkunitRequest("dup", [inputs[0], other]))
    with pytest.raises(WorkError, match="repeated in the batch"):
        creator.create_many([WorkunitRequest("n1", list(inputs)), WorkunitRequest("n1", list(inputs))])
    assert project_db.scalar("select count(*) from workunit") == 1
    assert _staged(project) == staged


def test_bad_names_and_limits(project, project_db, templates, inputs, tmp_path):
    creator = _creator(project, project_db, templates)
    with pytest.raises(WorkError, match="workunit name"):
        creator.create(WorkunitRequest("../evil", list(inputs)))
    with pytest.raises(ValueError, match="input file name"):
        creator.create(WorkunitRequest("ok", [inputs[0], "../../etc/passwd"]))
    with pytest.raises(WorkError, match="1 input files given, but the template has 2"):
        creator.create(WorkunitRequest("ok", [inputs[0]]))
    with pytest.raises(WorkError, match="min_quorum exceeds"):
        creator.create(WorkunitRequest("ok", list(inputs), params={"min_quorum": 5}))
    with pytest.raises(WorkError, match="rsc_fpops_bound must be positive"):
        creator.create(WorkunitRequest("ok", list(inputs), params={"rsc_fpops_bound": 0}))
    with pytest.raises(WorkError, match="limit"):
        creator.create(WorkunitRequest("ok", list(inputs), additional_xml="<x>" + "y" * 70000 + "</x>"))
    _assert_nothing_left(project, project_db, _app_files(project))


def test_changed_input_with_a_staged_name_is_refused(project, project_db, templates, inputs, tmp_path):
    creator = _creator(project, project_db, templates)
    creator.create(WorkunitRequest("wu_1", list(inputs)))
    changed_dir = tmp_path / "changed"
    changed_dir.mkdir()
    changed = changed_dir / inputs[1].name
    changed.write_text("different\n")
    with pytest.raises(WorkError, match="immutable"):
        creator.create(WorkunitRequest("wu_2", [inputs[0], changed]))
    assert project_db.scalar("select count(*) from workunit") == 1


def test_link_inputs(project, project_db, templates, inputs):
    _creator(project, project_db, templates, link_inputs=True).create(WorkunitRequest("wu_l", list(inputs)))
    staged = hier_path(inputs[1].name, project.download_dir, 1024)
    assert staged.stat().st_ino == inputs[1].stat().st_ino


# --- the CLI ------------------------------------------------------------------------------
def _cli(project, *args, stdin=None):
    return subprocess.run([sys.executable, "-m", "boinc_ext.cli", "create-work", "--project",
                           str(project.project_dir), *args], capture_output=True, text=True, input=stdin)


def test_cli_single_and_stdin_batch(project, project_db, templates, inputs):
    script, data = inputs
    out = _cli(project, "--app", "r_job", "--wu-template", templates[0], "--result-template", templates[1],
               "--wu-name", "cli_1", "--min-quorum", "1", "--target_nresults", "3", str(script), str(data))
    assert out.returncode == 0, out.stderr
    row = project_db.query_one("select * from workunit where name = 'cli_1'")
    assert (row["min_quorum"], row["target_nresults"]) == (1, 3)
    lines = "".join(f"--wu_name s_{i} --command_line 'run {i}' job.R {data}\n" for i in range(5))
    out = _cli(project, "--appname", "r_job", "--wu_template", templates[0], "--result_template", templates[1],
               "--stdin", stdin=lines)
    assert out.returncode == 0, out.stderr
    assert "created 5 workunits" in out.stdout
    assert "<command_line>\nrun 3\n</command_line>" in project_db.scalar(
        "select xml_doc from workunit where name = 's_3'").decode()


def test_cli_bad_input_messages(project, project_db, templates, inputs, tmp_path):
    out = _cli(project, "--app", "nope", "--wu-template", templates[0], "--result-template", templates[1],
               "--wu-name", "x", *map(str, inputs))
    assert out.returncode == 1 and "unknown app 'nope'" in out.stderr
    out = _cli(project, "--app", "r_job", "--wu-template", templates[0], "--result-template", templates[1],
               "--wu-name", "x", str(inputs[0]), str(tmp_path / "missing.csv"))
    assert out.returncode == 1 and "missing.csv: no such file" in out.stderr
    assert "Traceback" not in out.stderr
    assert project_db.scalar("select count(*) from workunit") == 0
