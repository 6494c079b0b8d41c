"""The validator's batches (many workunits per transaction): the same outcome as validating
them one by one when they credit the same hosts, users and team; and a daemon SIGKILLed at any moment leaves whole batches, never half of one."""
import sys
import time
from types import SimpleNamespace

import pytest
from daemon_fixture import kill_after_progress
from validator_fixture import RUNTIME_CREDIT, Lab

from boinc_ext.daemons.base import EXIT_OK
from boinc_ext.boinc.states import VALIDATE_STATE_INIT, VALIDATE_STATE_VALID
from boinc_ext.validator import daemon as daemon_module
from boinc_ext.validator.daemon import Validator

GOOD = {"result.rds": b"answer 42\n", "stdout.txt": b"took 3.1 s\n"}
WRONG = {"result.rds": b"answer 41\n"}
NO_RESULT = {"stdout.txt": b"crashed\n"}  # result.rds not uploaded: a validate error


@pytest.fixture
def lab(project, project_db, tmp_path):
    return Lab(project, project_db, tmp_path)


def volunteers(lab):
    """Two teams' worth of people: four hosts, three users (the first two on one team,
    and the first user owns two hosts)."""
    team = lab.team()
    users = [lab.user(team), lab.user(team), lab.user()]
    return team, users, [lab.host(users[0]), lab.host(users[0]), lab.host(users[1]), lab.host(users[2])]


def shared_workload(lab, prefix, hosts, now):
    """Workunits that all land on the same four hosts: agreement, a disagreeing third result,
    a missing output (validate error), a quorum not yet reached; varied run and turnaround
    times so that the order of updates shows in the averages."""
    wu_ids = []
    for i in range(24):
        kind = i % 4
        n_results = 3 if kind == 1 else 2
        wu_id = lab.workunit(f"{prefix}{i}", n_results=n_results, target_nresults=n_results,
                             max_success_results=n_results)
        outputs = [GOOD, WRONG if kind == 1 else GOOD, GOOD][:n_results]
        if kind == 2:
            outputs[1] = NO_RESULT
        for j, content in enumerate(outputs[:1] if kind == 3 else outputs):
            name = f"{prefix}{i}_{j}"
            lab.report(name, hosts[(i + j) % len(hosts)], content, elapsed=1000.0 + 100 * i + j)
            lab.db.execute("update result set sent_time = %s, received_time = %s where name = %s",
                           (now - 7200 - 37 * i - j, now - 60 + j, name))
        wu_ids.append(wu_id)
    return wu_ids


def test_a_batch_crediting_the_same_hosts_equals_one_by_one(lab, monkeypatch):
    batched, one_by_one = volunteers(lab), volunteers(lab)
    now = int(time.time())  # one clock for both: the decaying averages can be compared exactly
    batched_ids = shared_workload(lab, "b", batched[2], now)
    single_ids = shared_workload(lab, "s", one_by_one[2], now)
    sizes = []
    original = Validator._validate_together

    def recording(self, prepared, now):
        sizes.append(len(prepared))
        return original(self, prepared, now)

    monkeypatch.setattr(Validator, "_validate_together", recording)
    monkeypatch.setattr(daemon_module, "time", SimpleNamespace(time=lambda: now + 1.5))
    assert lab.run(min_wu_id=batched_ids[0], max_wu_id=batched_ids[-1]) == EXIT_OK
    assert sizes == [len(batched_ids)]  # one transaction
    monkeypatch.setattr(Validator, "batch_size", 1)
    assert lab.run(min_wu_id=single_ids[0], max_wu_id=single_ids[-1]) == EXIT_OK
    assert sizes[1:] == [1] * len(single_ids)

    for b_id, s_id in zip(batched_ids, single_ids):
        b_results, s_results = lab.results(b_id).values(), lab.results(s_id).values()
        assert [(r["validate_state"], r["outcome"], r["granted_credit"]) for r in b_results] == \
               [(r["validate_state"], r["outcome"], r["granted_credit"]) for r in s_results]
        b_wu, s_wu = lab.wu(b_id), lab.wu(s_id)
        assert (b_wu["need_validate"], b_wu["target_nresults"], b_wu["canonical_credit"], bool(b_wu["canonical_resultid"])) \
            == (s_wu["need_validate"], s_wu["target_nresults"], s_wu["canonical_credit"], bool(s_wu["canonical_resultid"]))
    (b_team, b_users, b_hosts), (s_team, s_users, s_hosts) = batched, one_by_one
    pairs = [("team", b_team, s_team)] + [("user", b, s) for b, s in zip(b_users, s_users)] \
        + [("host", b, s) for b, s in zip(b_hosts, s_hosts)]
    assert lab.row("team", b_team)["total_credit"] > 10 * RUNTIME_CREDIT / 4
    for table, b, s in pairs:
        b_row, s_row = lab.row(table, b), lab.row(table, s)
        assert b_row["total_credit"] == pytest.approx(s_row["total_credit"], rel=1e-12), (table, b)
        assert b_row["expavg_credit"] == pytest.approx(s_row["expavg_credit"], rel=1e-12), (table, b)
        if table == "host":
            assert b_row["avg_turnaround"] == pytest.approx(s_row["avg_turnaround"], rel=1e-12)
    for b, s in zip(b_hosts, s_hosts):
        assert {k: lab.hav(b)[k] for k in ("consecutive_valid", "max_jobs_per_day")} == \
               {k: lab.hav(s)[k] for k in ("consecutive_valid", "max_jobs_per_day")}


def test_one_pass_n_wu_and_dry_run_across_batches(lab, monkeypatch):
    _, _, hosts = volunteers(lab)
    ids = lab.many_reported("n", hosts, 25, GOOD)
    monkeypatch.setattr(Validator, "batch_size", 10)
    assert lab.run(dry_run=True) == EXIT_OK
    assert lab.db.scalar("select count(*) from workunit where need_validate > 0") == 25
    assert lab.row("host", hosts[0])["total_credit"] == 0
    assert lab.run(one_pass_N_WU=13) == EXIT_OK
    assert [lab.wu(i)["need_validate"] for i in ids] == [0] * 13 + [1] * 12


# --- killed at any moment -----------------------------------------------------------------------
def _done_and_untouched(db, n):
    """Counts of workunits fully validated and untouched; asserts there is nothing between,
    and that the credit granted is exactly that of the validated ones."""
    rows = db.query("select wu.id, wu.need_validate, wu.canonical_resultid, "
                    "sum(res.validate_state = %s) as valid, sum(res.validate_state = %s) as init "
                    "from workunit wu join result res on res.workunitid = wu.id group by wu.id",
                    (VALIDATE_STATE_VALID, VALIDATE_STATE_INIT))
    assert len(rows) == n
    done = [r for r in rows if r["need_validate"] == 0 and r["canonical_resultid"] and r["valid"] == 2]
    untouched = [r for r in rows if r["need_validate"] == 1 and not r["canonical_resultid"] and r["init"] == 2]
    assert len(done) + len(untouched) == n, "a workunit is half-done"
    credit = 2 * len(done) * RUNTIME_CREDIT
    assert db.scalar("select sum(total_credit) from host") == pytest.approx(credit)
    assert db.scalar("select sum(total_credit) from user") == pytest.approx(credit)
    assert (db.scalar("select coalesce(sum(consecutive_valid), 0) from host_app_version")) == 2 * len(done)
    return len(done), len(untouched)


def test_sigkill_at_any_moment_leaves_whole_batches(lab, project):
    team = lab.team()
    users = [lab.user(team) for _ in range(3)]
    hosts = [lab.host(users[i % 3]) for i in range(5)]  # every batch credits the same few rows
    n = 2000
    lab.many_reported("k", hosts, n, GOOD)
    command = [sys.executable, "-m", "boinc_ext.validator", "--app", "r_job", "--one_pass",
               "--project_dir", str(project.project_dir)]

    kill_delays = (0.0, 0.015, 0.037, 0.061)  # after a commit: land at different points of a batch
    kills, done = 0, 0
    while kills < len(kill_delays):
        kill_after_progress(command, lambda: lab.db.scalar("select count(*) from workunit where need_validate = 0"),
                            done, kill_delays[kills])
        done, untouched = _done_and_untouched(lab.db, n)
        if untouched == 0:
            break
        assert 0 < done < n and done % Validator.batch_size == 0  # whole batches only
        kills += 1
    assert kills >= 1, "the pass ended before it could be killed"

    assert lab.run() == EXIT_OK
    assert _done_and_untouched(lab.db, n) == (n, 0)
    assert lab.row("team", team)["total_credit"] == pytest.approx(2 * n * RUNTIME_CREDIT)
    assert lab.run() == EXIT_OK  # nothing left, nothing granted twice
    assert lab.row("team", team)["total_credit"] == pytest.approx(2 * n * RUNTIME_CREDIT)
