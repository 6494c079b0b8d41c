"""The validator never makes others wait on it, nor stops on one workunit: outputs are
prepared with no lock held (a client reporting meanwhile is not blocked, and the workunit
is validated again with the new result), and a policy that fails unexpectedly on one
workunit costs only that workunit: retried, then its results marked as stock marks them."""
import threading
import time

import pytest
from validator_fixture import RUNTIME_CREDIT, Lab

from boinc_ext.boinc.states import (
    OUTCOME_SUCCESS,
    OUTCOME_VALIDATE_ERROR,
    VALIDATE_STATE_INIT,
    VALIDATE_STATE_INVALID,
    VALIDATE_STATE_VALID,
)
from boinc_ext.daemons.base import EXIT_OK
from boinc_ext.validator import events
from boinc_ext.validator.bitwise import BitwisePolicy
from boinc_ext.validator.policy_failures import ATTEMPTS

GOOD = {"result.rds": b"answer 42\n", "stdout.txt": b"took 3.1 s\n"}
LOCK_WAIT_TIMEOUT = 1  # seconds the reporting connection waits for a row lock


@pytest.fixture
def lab(project, project_db, tmp_path):
    return Lab(project, project_db, tmp_path)


def hosts_of(lab, n):
    team = lab.team()
    return [lab.host(lab.user(team)) for _ in range(n)]


def outcomes(lab, wu_id):
    return [(r["validate_state"], r["outcome"]) for r in lab.results(wu_id).values()]


# --- no poison pill -------------------------------------------------------------------------------
def test_a_policy_bug_on_one_workunit_costs_only_that_workunit(lab, caplog):
    hosts = hosts_of(lab, 3)
    ids = lab.many_reported("p", hosts, 100, GOOD)
    bad = ids[41]
    for name in lab.results(bad):
        lab.output_path(name, "result.rds").write_bytes(b"explode\n")
    # a project's own policy, by --policy module:Class; one daemon, so that attempts are counted
    validator = lab.validator(policy_spec="validator_fixture:ExplodingPolicy")

    for attempt in range(1, ATTEMPTS):
        caplog.clear()
        assert validator.run() == EXIT_OK
        assert [lab.wu(i)["need_validate"] for i in ids] == [0] * 41 + [1] + [0] * 58
        assert outcomes(lab, bad) == [(VALIDATE_STATE_INIT, OUTCOME_SUCCESS)] * 2
        failure = next(r for r in caplog.records if events.POLICY_FAILED in r.getMessage())
        assert f"[WU#{bad} p_41]" in failure.getMessage() and f"attempt {attempt} of {ATTEMPTS}" in failure.getMessage()
        assert "RuntimeError: policy bug" in caplog.text  # with the traceback
    validated = [i for i in ids if i != bad]
    assert all(outcomes(lab, i) == [(VALIDATE_STATE_VALID, OUTCOME_SUCCESS)] * 2 for i in validated)
    assert lab.db.scalar("select sum(total_credit) from host") == pytest.approx(2 * 99 * RUNTIME_CREDIT)

    caplog.clear()
    assert validator.run() == EXIT_OK  # the last attempt: as stock's init_result error
    assert lab.wu(bad)["need_validate"] == 0 and not lab.wu(bad)["canonical_resultid"]
    assert outcomes(lab, bad) == [(VALIDATE_STATE_INVALID, OUTCOME_VALIDATE_ERROR)] * 2
    assert "taken as a permanent error" in caplog.text and "RuntimeError: policy bug" in caplog.text
    assert lab.db.scalar("select sum(total_credit) from host") == pytest.approx(2 * 99 * RUNTIME_CREDIT)


# --- no lock held while outputs are prepared ------------------------------------------------------
class BlockingPolicy(BitwisePolicy):
    """Bitwise, but the first prepare() waits until the test lets it go."""

    def __init__(self):
        super().__init__()
        self.preparing = threading.Event()
        self.go = threading.Event()

    def prepare(self, files):
        if not self.preparing.is_set():
            self.preparing.set()
            if not self.go.wait(60):
                raise TimeoutError("the test never let prepare() go")
        return super().prepare(files)


def test_a_result_reported_during_preparation_waits_for_no_lock(lab):
    hosts = hosts_of(lab, 3)
    wu_id = lab.workunit("r", n_results=3, min_quorum=2, target_nresults=3, max_success_results=3)
    lab.report("r_0", hosts[0], GOOD)
    lab.report("r_1", hosts[1], GOOD)
    lab.send("r_2", hosts[2])
    policy = BlockingPolicy()
    codes = []
    validator = threading.Thread(target=lambda: codes.append(lab.run(policy=policy)))
    validator.start()
    try:
        assert policy.preparing.wait(60)
        lab.db.execute(f"set session innodb_lock_wait_timeout = {LOCK_WAIT_TIMEOUT}")
        started = time.monotonic()
        lab.report("r_2", hosts[2], GOOD)  # as the scheduler would: the result's row, then its workunit's
        assert time.monotonic() - started < LOCK_WAIT_TIMEOUT
        assert policy.go.is_set() is False  # prepare() was still waiting
    finally:
        policy.go.set()
        validator.join(60)
    assert codes == [EXIT_OK]
    # The locked rows show a result that was not prepared: left for the next pass, untouched.
    assert lab.wu(wu_id)["need_validate"] == 1 and not lab.wu(wu_id)["canonical_resultid"]
    assert outcomes(lab, wu_id) == [(VALIDATE_STATE_INIT, OUTCOME_SUCCESS)] * 3

    assert lab.run() == EXIT_OK
    wu = lab.wu(wu_id)
    assert wu["need_validate"] == 0 and wu["canonical_resultid"]
    assert [(r["validate_state"], r["granted_credit"]) for r in lab.results(wu_id).values()] == \
        [(VALIDATE_STATE_VALID, pytest.approx(RUNTIME_CREDIT))] * 3
