"""Pieces of the validator that need no database: credit arithmetic, xml_doc_in parsing,
output location and the policy registry."""
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from boinc_ext.boinc.hierarchy import hier_path
from boinc_ext.boinc.result_files import ResultFilesError, output_paths, parse_file_refs
from boinc_ext.validator.credit import (
    CREDIT_HALF_LIFE,
    CreditConfigError,
    CreditMode,
    CreditRules,
    credit_in_xml_doc,
    low_average,
    runtime_credit,
    update_average,
)
from boinc_ext.validator.errors import (
    PermanentValidationError,
    PolicyConfigError,
    TransientValidationError,
)
from boinc_ext.validator.output_files import OutputLocator
from boinc_ext.validator.policy import load_policy

XML_DOC_IN = """<file_info>
    <name>wu_0_r1_0</name>
</file_info>
<file_info>
    <name>wu_0_r1_1</name>
</file_info>
<result>
<file_ref>
    <file_name>wu_0_r1_0</file_name>
    <open_name>result.rds</open_name>
</file_ref>
<file_ref>
    <file_name>wu_0_r1_1</file_name>
    <open_name>stdout.txt</open_name>
    <no_validate/>
    <optional>1</optional>
</file_ref>
</result>"""


def test_update_average_halves_in_a_half_life():
    avg, when = update_average(now=10 * 86400, work_start_time=9 * 86400, work=100.0, avg=0.0, avg_time=0.0)
    assert (avg, when) == (100.0, 10 * 86400)  # first work: per day since it started
    decayed, _ = update_average(10 * 86400 + CREDIT_HALF_LIFE, 0, 0.0, avg, when)
    assert decayed == pytest.approx(50.0)
    again, _ = update_average(when, 0, 10.0, avg, when)  # no time passed: the limit form
    assert again == pytest.approx(100.0 + math.log(2) * 10.0 * 86400 / CREDIT_HALF_LIFE)


def test_low_average_and_runtime_credit():
    assert low_average([7.0]) == 7.0
    assert low_average([1.0, 3.0]) == pytest.approx(1.5)  # (1*3 + 3*1) / 4
    result = {"flops_estimate": 1e9, "elapsed_time": 86400.0}
    assert runtime_credit(result, 1e20) == pytest.approx(4.3e9 * 86400 * 200 / 86400e9)  # 1e9 means "unknown"
    assert runtime_credit({"flops_estimate": 1e12, "elapsed_time": 1e6}, 1e10) == pytest.approx(1e10 * 200 / 86400e9)


def test_credit_rules():
    wu = {"canonical_credit": 0.0, "xml_doc": "<workunit>\n<credit>12.5</credit>\n</workunit>", "rsc_fpops_bound": 1e15}
    assert CreditRules(CreditMode.FROM_WU).workunit_credit(wu, []) == 12.5
    assert CreditRules(CreditMode.FROM_WU).workunit_credit({**wu, "canonical_credit": 3.0}, []) == 3.0
    assert CreditRules(CreditMode.NONE).workunit_credit(wu, []) == 0.0
    assert credit_in_xml_doc("<workunit><credit>nan</credit></workunit>") == 0.0
    with pytest.raises(CreditConfigError):
        CreditRules(CreditMode.RUNTIME, max_granted_credit=0)


def test_file_refs():
    refs = parse_file_refs(XML_DOC_IN.encode(), "wu_0")
    assert [(r.file_name, r.open_name, r.optional, r.no_validate) for r in refs] == [
        ("wu_0_r1_0", "result.rds", False, False), ("wu_0_r1_1", "stdout.txt", True, True)]
    with pytest.raises(ResultFilesError, match="no <file_info>"):
        parse_file_refs("<result><file_ref><file_name>x</file_name></file_ref></result>", "r")
    with pytest.raises(ResultFilesError, match="malformed"):
        parse_file_refs("<result><file_ref>", "r")



def test_output_paths_check_open_names(tmp_path):
    config = SimpleNamespace(upload_dir=tmp_path, uldl_dir_fanout=1024)
    result = {"name": "wu_0", "xml_doc_in": XML_DOC_IN}
    assert output_paths(config, result) == {"result.rds": hier_path("wu_0_r1_0", tmp_path, 1024),
                                            "stdout.txt": hier_path("wu_0_r1_1", tmp_path, 1024)}
    escaping = {**result, "xml_doc_in": XML_DOC_IN.replace("result.rds", "../result.rds")}
    with pytest.raises(ResultFilesError, match="open name"):
        output_paths(config, escaping)

def test_locator(tmp_path):
    upload = tmp_path / "upload"
    locator = OutputLocator(upload, 1024)
    with pytest.raises(TransientValidationError, match="upload directory"):
        locator.files_to_validate(XML_DOC_IN, "wu_0")
    upload.mkdir()
    with pytest.raises(PermanentValidationError, match="result.rds"):
        locator.files_to_validate(XML_DOC_IN, "wu_0")
    target = hier_path("wu_0_r1_0", upload, 1024)
    target.parent.mkdir()
    target.write_text("x")
    files = locator.files_to_validate(XML_DOC_IN, "wu_0")
    assert [(f.open_name, Path(f.path), f.present) for f in files] == [("result.rds", target, True)]  # no_validate skipped
    for fanout in (0, 7, 1024):
        assert Path(OutputLocator(upload, fanout)._path("some_file_9")) == hier_path("some_file_9", upload, fanout)
    escaping = XML_DOC_IN.replace("wu_0_r1_0", "../../etc/passwd")
    with pytest.raises(PermanentValidationError, match="file name"):
        locator.files_to_validate(escaping, "wu_0")


def test_policy_registry():
    assert load_policy("bitwise").name == "bitwise"
    for spec, message in (("nosuch", "use bitwise"), ("no.such.module:X", "cannot import"),
                          ("boinc_ext.validator.bitwise:file_digest", "not a ValidationPolicy")):
        with pytest.raises(PolicyConfigError, match=message):
            load_policy(spec)
    with pytest.raises(PolicyConfigError, match="unknown option"):
        load_policy("bitwise", {"rel_tolerance": "1"})


def test_bitwise_validator_never_imports_r():
    code = ("import sys; import boinc_ext.validator.daemon; from boinc_ext.validator.policy import load_policy; "
            "load_policy('bitwise'); sys.exit('rpy2' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60, check=False).returncode == 0


def test_settled_prepared_results_answer_without_outputs():
    from boinc_ext.validator.quorum import NotPrepared, PreparedResults, check_set
    prepared_ids, released = [], []

    def prepare(result):
        prepared_ids.append(result["id"])
        if result["id"] == 3:
            raise PermanentValidationError("no output")
        return result["value"]

    results = [{"id": 1, "name": "r1", "value": 5}, {"id": 2, "name": "r2", "value": 5},
               {"id": 3, "name": "r3", "value": 5}]
    prepared = PreparedResults(prepare, lambda a, b: a == b, released.append)
    assert check_set(results, 2, prepared).canonical_id == 1
    prepared.settle()
    assert released == [5, 5] and prepared.permanent == {}  # a new decision starts
    again = check_set(results, 2, prepared)  # from the answers alone
    assert (again.canonical_id, again.valid, list(prepared.permanent)) == (1, [1, 2], [3])
    assert prepared_ids == [1, 2, 3]
    with pytest.raises(NotPrepared):
        check_set(results + [{"id": 4, "name": "r4", "value": 5}], 2, prepared)


def test_guarded_policy_call_turns_a_bug_into_a_permanent_error(caplog):
    import logging

    from boinc_ext.validator.policy_failures import PolicyFailures, guarded

    def buggy(result):
        raise ZeroDivisionError("bug")

    log = logging.LoggerAdapter(logging.getLogger("test.guard"), {})
    with pytest.raises(PermanentValidationError, match="ZeroDivisionError: bug"):
        guarded(buggy, log, lambda r: f"result {r}")("r1")
    assert "on result r1 (last attempt)" in caplog.text and "Traceback" in caplog.text
    failures = PolicyFailures(attempts=2)
    assert not failures.is_last_attempt(7)
    assert failures.failed(7) == 1 and failures.is_last_attempt(7)
    failures.forget(7)
    assert not failures.is_last_attempt(7)
