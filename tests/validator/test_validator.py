"""The validator daemon against a real MariaDB project with the bitwise policy: quorums,
canonical selection, credit and bookkeeping, replication on disagreement, late results,
errors, flags, and crash safety (an exception before commit, and SIGKILL mid-workunit)."""
import signal
import subprocess
import sys
import time

import pytest

from boinc_ext.project import ext_schema
from boinc_ext.daemons.base import EXIT_FAILED, EXIT_OK
from boinc_ext.project.project_xml import ProjectXml, register
from boinc_ext.boinc.states import (
    ASSIMILATE_READY,
    INT_MAX,
    OUTCOME_DIDNT_NEED,
    OUTCOME_SUCCESS,
    OUTCOME_VALIDATE_ERROR,
    SERVER_STATE_IN_PROGRESS,
    SERVER_STATE_OVER,
    VALIDATE_STATE_INCONCLUSIVE,
    VALIDATE_STATE_INIT,
    VALIDATE_STATE_INVALID,
    VALIDATE_STATE_VALID,
    WU_ERROR_TOO_MANY_SUCCESS_RESULTS,
)
from boinc_ext.validator import events
from boinc_ext.validator.credit import CreditMode
from boinc_ext.validator.daemon import Validator, ValidatorOptions
from boinc_ext.validator.decision import RETRY_DELAY

from stock_schema import stock_db  # noqa: F401 (a fixture)
from validator_fixture import RUNTIME_CREDIT, Lab, subprocess_env, wait_for

GOOD = {"result.rds": b"answer 42\n", "stdout.txt": b"took 3.1 s\n"}
OTHER_STDOUT = {"result.rds": b"answer 42\n", "stdout.txt": b"took 9.9 s\n"}
WRONG = {"result.rds": b"answer 41\n", "stdout.txt": b"took 3.1 s\n"}


@pytest.fixture
def lab(project, project_db, tmp_path):
    return Lab(project, project_db, tmp_path)


@pytest.fixture
def volunteers(lab):
    """Three hosts of three users; the first two users share a team."""
    team = lab.team()
    users = [lab.user(team), lab.user(team), lab.user()]
    return {"team": team, "users": users, "hosts": [lab.host(u) for u in users]}


def states(lab, wu_id):
    return {name: (r["validate_state"], r["outcome"]) for name, r in lab.results(wu_id).items()}


def test_quorum_of_one(lab, volunteers):
    wu_id = lab.workunit("q1", min_quorum=1, target_nresults=1)
    host = volunteers["hosts"][2]
    lab.report("q1_0", host, GOOD)
    before = time.time()
    assert lab.run() == EXIT_OK

    wu = lab.wu(wu_id)
    result = lab.result("q1_0")
    assert result["validate_state"] == VALIDATE_STATE_VALID
    assert (wu["canonical_resultid"], wu["need_validate"], wu["assimilate_state"]) == (result["id"], 0,
                                                                                       ASSIMILATE_READY)
    assert wu["transition_time"] == INT_MAX
    assert result["granted_credit"] == pytest.approx(RUNTIME_CREDIT)
    assert wu["canonical_credit"] == pytest.approx(RUNTIME_CREDIT)
    host = lab.row("host", host)
    assert host["total_credit"] == pytest.approx(RUNTIME_CREDIT)
    assert host["expavg_credit"] > 0 and host["expavg_time"] >= before
    assert host["avg_turnaround"] == result["received_time"] - result["sent_time"]
    user = lab.row("user", volunteers["users"][2])
    assert user["total_credit"] == pytest.approx(RUNTIME_CREDIT) and user["expavg_credit"] > 0
    hav = lab.hav(volunteers["hosts"][2])
    assert (hav["consecutive_valid"], hav["max_jobs_per_day"]) == (1, 1)


def test_missing_host_app_version_rows_are_got_as_stock_hav_lookup_does(lab, volunteers):
    """A host's row for an older version of the same app, platform and plan class is taken
    over; a host without one gets a zeroed row; an unknown app version gets none, and the
    result is credited all the same."""
    h0, h1, h2 = volunteers["hosts"]
    older = lab._insert("app_version", appid=lab.creator.app_id, version_num=50, platformid=1,
                        plan_class="validator_test", xml_doc="")
    lab._insert("host_app_version", host_id=h0, app_version_id=older, max_jobs_per_day=5, consecutive_valid=3)
    for index, host in enumerate(volunteers["hosts"]):
        lab.workunit(f"hl{index}", min_quorum=1, target_nresults=1)
        lab.report(f"hl{index}_0", host, GOOD)
    lab.db.execute("update result set app_version_id = 999999 where name = 'hl2_0'")
    assert lab.run() == EXIT_OK

    assert lab.db.query_one("select 1 from host_app_version where app_version_id = %s", (older,)) is None
    assert (lab.hav(h0)["consecutive_valid"], lab.hav(h0)["max_jobs_per_day"]) == (4, 6)
    assert (lab.hav(h1)["consecutive_valid"], lab.hav(h1)["max_jobs_per_day"]) == (1, 1)
    assert lab.db.query("select * from host_app_version where host_id = %s", (h2,)) == []
    assert lab.result("hl2_0")["validate_state"] == VALIDATE_STATE_VALID
    assert lab.row("host", h2)["total_credit"] == pytest.approx(RUNTIME_CREDIT)


def test_two_agreeing_results_credit_once(lab, volunteers):
    wu_id = lab.workunit("agree")
    h0, h1, _ = volunteers["hosts"]
    lab.report("agree_0", h0, GOOD)
    lab.report("agree_1", h1, OTHER_STDOUT)  # stdout.txt is <no_validate/>
    assert lab.run() == EXIT_OK

    results = lab.results(wu_id)
    assert {n: r["validate_state"] for n, r in results.items()} == {"agree_0": VALIDATE_STATE_VALID,
                                                                   "agree_1": VALIDATE_STATE_VALID}
    assert lab.wu(wu_id)["canonical_resultid"] == results["agree_0"]["id"]
    team_credit = lab.row("team", volunteers["team"])["total_credit"]
    assert team_credit == pytest.approx(2 * RUNTIME_CREDIT)

    # Re-running, even with need_validate set again by hand, grants nothing more.
    assert lab.run() == EXIT_OK
    lab.db.execute("update workunit set need_validate = 1 where id = %s", (wu_id,))
    assert lab.run() == EXIT_OK
    assert lab.wu(wu_id)["need_validate"] == 0
    for host in (h0, h1):
        assert lab.row("host", host)["total_credit"] == pytest.approx(RUNTIME_CREDIT)
        assert lab.hav(host)["consecutive_valid"] == 1
    assert lab.row("team", volunteers["team"])["total_credit"] == pytest.approx(team_credit)


def test_disagreement_asks_for_another_replica_then_majority_decides(lab, volunteers):
    wu_id = lab.workunit("split")
    h0, h1, h2 = volunteers["hosts"]
    lab.report("split_0", h0, GOOD)
    lab.report("split_1", h1, WRONG)
    before = int(time.time())
    assert lab.run() == EXIT_OK

    wu = lab.wu(wu_id)
    assert states(lab, wu_id) == {"split_0": (VALIDATE_STATE_INCONCLUSIVE, OUTCOME_SUCCESS),
                                  "split_1": (VALIDATE_STATE_INCONCLUSIVE, OUTCOME_SUCCESS)}
    assert (wu["target_nresults"], wu["canonical_resultid"], wu["need_validate"]) == (3, 0, 0)
    assert before <= wu["transition_time"] <= time.time()
    assert lab.row("host", h0)["total_credit"] == 0

    third = lab.add_result(wu_id)  # what the transitioner does next
    lab.report(third, h2, GOOD)
    assert lab.run() == EXIT_OK
    assert states(lab, wu_id) == {"split_0": (VALIDATE_STATE_VALID, OUTCOME_SUCCESS),
                                  "split_1": (VALIDATE_STATE_INVALID, OUTCOME_SUCCESS),
                                  "split_2": (VALIDATE_STATE_VALID, OUTCOME_SUCCESS)}
    wu = lab.wu(wu_id)
    assert wu["canonical_resultid"] == lab.result("split_0")["id"]
    assert lab.result("split_1")["granted_credit"] == 0
    assert lab.row("host", h1)["total_credit"] == 0
    assert lab.hav(h1)["consecutive_valid"] == 0
    assert lab.hav(h2)["consecutive_valid"] == 1


def test_too_many_successes_sets_the_error_bit(lab, volunteers):
    wu_id = lab.workunit("many", target_nresults=3, max_success_results=3)
    for i, content in enumerate((GOOD, WRONG, {"result.rds": b"third\n"})):
        lab.report(f"many_{i}", volunteers["hosts"][i], content)
    fourth = lab.add_result(wu_id)
    lab.report(fourth, volunteers["hosts"][0], {"result.rds": b"fourth\n"})
    assert lab.run() == EXIT_OK
    wu = lab.wu(wu_id)
    assert wu["error_mask"] & WU_ERROR_TOO_MANY_SUCCESS_RESULTS
    assert wu["target_nresults"] == 5  # 4 viable >= 3: one more, as stock does even then


def test_late_results_are_checked_against_the_canonical(lab, volunteers):
    wu_id = lab.workunit("late", target_nresults=4, max_success_results=4)
    h0, h1, h2 = volunteers["hosts"]
    lab.send("late_2", h2)                     # still running when the quorum is met
    lab.report("late_0", h0, GOOD)
    lab.report("late_1", h1, GOOD)
    assert lab.run() == EXIT_OK
    results = lab.results(wu_id)
    assert (results["late_3"]["server_state"], results["late_3"]["outcome"]) == (SERVER_STATE_OVER,
                                                                                 OUTCOME_DIDNT_NEED)
    assert results["late_2"]["server_state"] == SERVER_STATE_IN_PROGRESS
    canonical_credit = results["late_0"]["granted_credit"]

    lab.report("late_2", h2, GOOD, elapsed=50000.0)  # claims more time: still gets the canonical's credit
    before = int(time.time())
    assert lab.run() == EXIT_OK
    late = lab.result("late_2")
    assert late["validate_state"] == VALIDATE_STATE_VALID
    assert late["granted_credit"] == canonical_credit
    assert lab.row("host", h2)["total_credit"] == pytest.approx(canonical_credit)
    wu = lab.wu(wu_id)
    assert before <= wu["transition_time"] <= time.time() and wu["need_validate"] == 0
    assert wu["canonical_resultid"] == results["late_0"]["id"]


def test_late_result_that_disagrees(lab, volunteers):
    wu_id = lab.workunit("late_bad", target_nresults=3, max_success_results=3)
    h0, h1, h2 = volunteers["hosts"]
    lab.send("late_bad_2", h2)
    lab.report("late_bad_0", h0, GOOD)
    lab.report("late_bad_1", h1, GOOD)
    lab.run()
    lab.report("late_bad_2", h2, WRONG)
    lab.run()
    assert lab.result("late_bad_2")["validate_state"] == VALIDATE_STATE_INVALID
    assert lab.result("late_bad_2")["granted_credit"] == 0
    assert lab.hav(h2)["consecutive_valid"] == 0
    assert lab.wu(wu_id)["need_validate"] == 0


def test_missing_output_file_is_a_validate_error(lab, volunteers):
    wu_id = lab.workunit("missing")
    h0, h1, _ = volunteers["hosts"]
    lab.report("missing_0", h0, GOOD)
    lab.report("missing_1", h1, {"stdout.txt": b"no result\n"})
    before = int(time.time())
    assert lab.run() == EXIT_OK
    assert states(lab, wu_id) == {"missing_0": (VALIDATE_STATE_INCONCLUSIVE, OUTCOME_SUCCESS),
                                  "missing_1": (VALIDATE_STATE_INVALID, OUTCOME_VALIDATE_ERROR)}
    wu = lab.wu(wu_id)
    assert wu["canonical_resultid"] == 0 and wu["target_nresults"] == 2  # one viable: no bump
    assert before <= wu["transition_time"] <= time.time()  # the transitioner makes a replacement


def test_optional_file_missing_on_both_sides_agrees(lab, volunteers):
    wu_id = lab.workunit("opt")
    lab.report("opt_0", volunteers["hosts"][0], GOOD)
    lab.report("opt_1", volunteers["hosts"][1], GOOD)
    lab.run()
    assert lab.wu(wu_id)["canonical_resultid"] == lab.result("opt_0")["id"]

    wu2 = lab.workunit("opt2")
    lab.report("opt2_0", volunteers["hosts"][0], GOOD)
    lab.report("opt2_1", volunteers["hosts"][1], {**GOOD, "extra.txt": b""})  # empty is not absent
    lab.run()
    assert lab.wu(wu2)["canonical_resultid"] == 0


def test_unreadable_upload_dir_is_retried_later(lab, volunteers, project):
    wu_id = lab.workunit("nfs")
    lab.report("nfs_0", volunteers["hosts"][0], GOOD)
    lab.report("nfs_1", volunteers["hosts"][1], GOOD)
    moved = project.upload_dir.with_name("upload_away")
    project.upload_dir.rename(moved)
    try:
        before = int(time.time())
        assert lab.run() == EXIT_OK
    finally:
        moved.rename(project.upload_dir)
    wu = lab.wu(wu_id)
    assert states(lab, wu_id) == {"nfs_0": (VALIDATE_STATE_INIT, OUTCOME_SUCCESS),
                                  "nfs_1": (VALIDATE_STATE_INIT, OUTCOME_SUCCESS)}
    assert wu["need_validate"] == 0 and wu["target_nresults"] == 2
    assert wu["transition_time"] <= before + RETRY_DELAY + 1

    lab.db.execute("update workunit set need_validate = 1 where id = %s", (wu_id,))  # the transitioner
    lab.run()
    assert lab.wu(wu_id)["canonical_resultid"] == lab.result("nfs_0")["id"]


def test_credit_modes(lab, volunteers):
    h0, h1, _ = volunteers["hosts"]
    wu, none = CreditMode.FROM_WU, CreditMode.NONE
    for name, extra, expected in (("from_wu", {"credit_mode": wu}, 5.0),  # <credit>5</credit> in the template
                                  ("capped", {"credit_mode": wu, "max_granted_credit": 3.0}, 3.0),
                                  # runtime claims above the maximum are ignored as implausible (stock)
                                  ("implausible", {"max_granted_credit": RUNTIME_CREDIT / 2}, 0.0),
                                  ("none", {"credit_mode": none}, 0.0)):
        wu_id = lab.workunit(name)
        lab.report(f"{name}_0", h0, GOOD)
        lab.report(f"{name}_1", h1, GOOD)
        before = lab.row("host", h0)["total_credit"]
        assert lab.run(**extra) == EXIT_OK
        assert lab.wu(wu_id)["canonical_credit"] == pytest.approx(expected), name
        assert lab.result(f"{name}_1")["granted_credit"] == pytest.approx(expected), name
        assert lab.row("host", h0)["total_credit"] - before == pytest.approx(expected), name


def test_runtime_credit_is_a_low_average_of_the_claims(lab, volunteers):
    wu_id = lab.workunit("claims")
    lab.report("claims_0", volunteers["hosts"][0], GOOD, elapsed=1000.0)
    lab.report("claims_1", volunteers["hosts"][1], GOOD, elapsed=3000.0)
    lab.run()
    c = [2e9 * t * 200 / 86400e9 for t in (1000.0, 3000.0)]
    expected = (c[0] * c[1] + c[1] * c[0]) / sum(c)  # each weighted by the other
    assert lab.wu(wu_id)["canonical_credit"] == pytest.approx(expected)


def test_credited_job(lab, volunteers):
    lab.workunit("cj", opaque=777.0)
    lab.report("cj_0", volunteers["hosts"][0], GOOD)
    lab.report("cj_1", volunteers["hosts"][2], GOOD)
    lab.run(update_credited_job=True)
    rows = lab.db.query("select userid, workunitid from credited_job order by userid")
    assert [(r["userid"], r["workunitid"]) for r in rows] == [(volunteers["users"][0], 777),
                                                              (volunteers["users"][2], 777)]


def test_dry_run_writes_nothing(lab, volunteers):
    wu_id = lab.workunit("dry")
    lab.report("dry_0", volunteers["hosts"][0], GOOD)
    lab.report("dry_1", volunteers["hosts"][1], GOOD)
    assert lab.run(dry_run=True) == EXIT_OK
    assert lab.wu(wu_id)["need_validate"] == 1 and lab.wu(wu_id)["canonical_resultid"] == 0
    assert states(lab, wu_id)["dry_0"] == (VALIDATE_STATE_INIT, OUTCOME_SUCCESS)
    assert lab.hav(volunteers["hosts"][0]) is None


def _options(app="r_job", **kwargs):
    return ValidatorOptions(one_pass=True, app=app, **kwargs)


def test_wu_id_mod_and_other_apps(lab, volunteers, project):
    ids = [lab.workunit(f"sel{i}") for i in range(4)]
    for i in range(4):
        lab.report(f"sel{i}_0", volunteers["hosts"][0], GOOD)
        lab.report(f"sel{i}_1", volunteers["hosts"][1], GOOD)
    assert lab.run(wu_id=ids[1]) == EXIT_OK
    assert [lab.wu(i)["need_validate"] for i in ids] == [1, 0, 1, 1]
    assert Validator(project, _options(app="mr_map")).run() == EXIT_OK  # another app's validator
    assert [lab.wu(i)["need_validate"] for i in ids] == [1, 0, 1, 1]
    assert Validator(project, _options(mod=(2, ids[0] % 2))).run() == EXIT_OK  # ids are consecutive
    assert [lab.wu(i)["need_validate"] for i in ids] == [0, 0, 0, 1]
    assert lab.run(one_pass_N_WU=1) == EXIT_OK
    assert lab.wu(ids[3])["need_validate"] == 0


def test_wu_id_range(lab, volunteers):
    ids = [lab.workunit(f"range{i}") for i in range(4)]
    for i in range(4):
        lab.report(f"range{i}_0", volunteers["hosts"][0], GOOD)
        lab.report(f"range{i}_1", volunteers["hosts"][1], GOOD)
    assert lab.run(min_wu_id=ids[1], max_wu_id=ids[2]) == EXIT_OK
    assert [lab.wu(i)["need_validate"] for i in ids] == [1, 0, 0, 1]


def test_unknown_app_and_missing_app_fail_clearly(lab, project):
    assert Validator(project, _options(app="nope")).run() == EXIT_FAILED
    assert Validator(project, _options(app=None)).run() == EXIT_FAILED


def test_exception_before_commit_leaves_nothing(lab, volunteers, monkeypatch):
    wu_id = lab.workunit("crash")
    lab.report("crash_0", volunteers["hosts"][0], GOOD)
    lab.report("crash_1", volunteers["hosts"][1], GOOD)
    original = Validator._write

    def write_then_crash(self, validation):
        original(self, validation)
        raise RuntimeError("simulated crash after every write, before commit")

    monkeypatch.setattr(Validator, "_write", write_then_crash)
    assert lab.run() == EXIT_FAILED
    assert lab.wu(wu_id)["need_validate"] == 1
    assert states(lab, wu_id)["crash_0"] == (VALIDATE_STATE_INIT, OUTCOME_SUCCESS)
    assert lab.row("host", volunteers["hosts"][0])["total_credit"] == 0
    assert lab.hav(volunteers["hosts"][0]) is None

    monkeypatch.setattr(Validator, "_write", original)
    assert lab.run() == EXIT_OK
    assert lab.row("host", volunteers["hosts"][0])["total_credit"] == pytest.approx(RUNTIME_CREDIT)


def _daemon_command(project, *args):
    return [sys.executable, "-m", "boinc_ext.validator", "--app", "r_job", "--project_dir",
            str(project.project_dir), *args]


def test_sigkill_mid_workunit_then_restart(lab, volunteers, project, tmp_path):
    """A real daemon process killed while it holds a workunit (inside same()), then run
    again: the workunit is validated once, credit granted once, nothing lost."""
    first, second = lab.workunit("kill_a"), lab.workunit("kill_b")
    for name in ("kill_a", "kill_b"):
        lab.report(f"{name}_0", volunteers["hosts"][0], GOOD)
        lab.report(f"{name}_1", volunteers["hosts"][1], GOOD)
    marker = tmp_path / "in_same"
    process = subprocess.Popen(
        _daemon_command(project, "--one_pass", "--policy", "validator_fixture:SlowBitwisePolicy",
                        "--policy_option", "delay=60", "--policy_option", f"marker={marker}"),
        env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(marker)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert [lab.wu(i)["need_validate"] for i in (first, second)] == [1, 1]
    assert states(lab, first)["kill_a_0"] == (VALIDATE_STATE_INIT, OUTCOME_SUCCESS)
    assert lab.row("host", volunteers["hosts"][0])["total_credit"] == 0

    out = subprocess.run(_daemon_command(project, "--one_pass", "-d", "3"), env=subprocess_env(),
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == EXIT_OK, out.stderr
    assert f"[WU#{first} kill_a] {events.CANONICAL_FOUND}" in out.stderr
    out = subprocess.run(_daemon_command(project, "--one_pass"), capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == EXIT_OK, out.stderr
    for wu_id in (first, second):
        assert lab.wu(wu_id)["need_validate"] == 0 and lab.wu(wu_id)["canonical_resultid"]
    assert lab.row("host", volunteers["hosts"][0])["total_credit"] == pytest.approx(2 * RUNTIME_CREDIT)
    assert lab.hav(volunteers["hosts"][0])["consecutive_valid"] == 2


def test_module_entry_point_and_usage_errors(project):
    out = subprocess.run([sys.executable, "-m", "boinc_ext.validator.daemon", "--project_dir",
                          str(project.project_dir), "--one_pass"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == EXIT_FAILED and "--app NAME is required" in out.stderr
    out = subprocess.run(_daemon_command(project, "--no_credit", "--credit_from_wu"),
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2 and "not allowed with" in out.stderr
    out = subprocess.run(_daemon_command(project, "--one_pass", "--policy", "bitwise", "--rel_tolerance", "1e-3"),
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == EXIT_FAILED and "unknown option 'rel_tolerance'" in out.stderr
    out = subprocess.run(_daemon_command(project, "--one_pass", "--policy", "nosuch"),
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == EXIT_FAILED and "--policy nosuch" in out.stderr


def test_on_a_database_made_from_stock_boinc_schema(stock_db, project, tmp_path):  # noqa: F811
    """The same validation on tables made exactly as stock BOINC's schema.sql and constraints.sql make them."""
    ext_schema.migrate(stock_db)
    register(stock_db, ProjectXml.load())
    lab = Lab(project, stock_db, tmp_path)
    team = lab.team()
    hosts = [lab.host(lab.user(team)) for _ in range(3)]
    wu_id = lab.workunit("stock", target_nresults=3, max_success_results=3)
    lab.report("stock_0", hosts[0], GOOD)
    lab.report("stock_1", hosts[1], WRONG)
    lab.report("stock_2", hosts[2], GOOD)
    assert lab.run(database=stock_db, update_credited_job=True) == EXIT_OK
    assert states(lab, wu_id) == {"stock_0": (VALIDATE_STATE_VALID, OUTCOME_SUCCESS),
                                  "stock_1": (VALIDATE_STATE_INVALID, OUTCOME_SUCCESS),
                                  "stock_2": (VALIDATE_STATE_VALID, OUTCOME_SUCCESS)}
    assert lab.row("team", team)["total_credit"] == pytest.approx(2 * RUNTIME_CREDIT)
    assert lab.hav(hosts[1])["consecutive_valid"] == 0
    assert stock_db.scalar("select count(*) from credited_job") == 2


def test_results_of_vanished_hosts_and_users(lab, volunteers):
    """A host merged away (row gone) or a user deleted: the results are still decided;
    only the bookkeeping for the missing rows is skipped."""
    wu_id = lab.workunit("gone", target_nresults=3, max_success_results=3)
    h0, h1, h2 = volunteers["hosts"]
    lab.report("gone_0", h0, GOOD)
    lab.report("gone_1", h1, GOOD)
    lab.report("gone_2", h2, WRONG)
    lab.db.execute("delete from host where id in (%s, %s)", (h1, h2))
    lab.db.execute("delete from user where id = %s", (volunteers["users"][0],))
    assert lab.run() == EXIT_OK
    assert states(lab, wu_id) == {"gone_0": (VALIDATE_STATE_VALID, OUTCOME_SUCCESS),
                                  "gone_1": (VALIDATE_STATE_VALID, OUTCOME_SUCCESS),
                                  "gone_2": (VALIDATE_STATE_INVALID, OUTCOME_SUCCESS)}
    assert lab.row("host", h0)["total_credit"] == pytest.approx(RUNTIME_CREDIT)
    assert lab.row("team", volunteers["team"])["total_credit"] == 0  # its user is gone
    assert lab.hav(h1) is None and lab.hav(h2) is None


def test_two_validators_side_by_side_share_hosts_users_and_team(lab, project):
    """--mod 2 0 and --mod 2 1 at once, on workunits whose hosts, users and team are all
    shared: the locking order keeps them from losing or double-counting any credit."""
    team = lab.team()
    users = [lab.user(team), lab.user(team)]
    hosts = [lab.host(users[i % 2]) for i in range(4)]
    n = 120
    for i in range(n):
        lab.workunit(f"par{i}")
        lab.report(f"par{i}_0", hosts[i % 4], GOOD)
        lab.report(f"par{i}_1", hosts[(i + 1) % 4], GOOD)
    daemons = [subprocess.Popen(_daemon_command(project, "--one_pass", "--mod", "2", str(r)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    outputs = [d.communicate(timeout=300)[1] for d in daemons]
    assert [d.returncode for d in daemons] == [EXIT_OK, EXIT_OK], outputs
    assert lab.db.scalar("select count(*) from workunit where need_validate > 0") == 0
    assert lab.db.scalar("select count(*) from result where validate_state = %s", (VALIDATE_STATE_VALID,)) == 2 * n
    total = 2 * n * RUNTIME_CREDIT
    assert lab.row("team", team)["total_credit"] == pytest.approx(total)
    assert sum(lab.row("user", u)["total_credit"] for u in users) == pytest.approx(total)
    assert sum(lab.row("host", h)["total_credit"] for h in hosts) == pytest.approx(total)
    assert sum(lab.hav(h)["consecutive_valid"] for h in hosts) == 2 * n
