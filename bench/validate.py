"""Validator speed: 2,000 workunits of quorum 2 (4,000 results), bitwise policy, small outputs.

Every workunit has two successful results from two different hosts, with equal outputs
in the upload hierarchy, and need_validate set: a full validation each (canonical
result, two VALID results, credit to two hosts, their users and team, host_app_version
counters). Printed beside two baselines measured in this same run on the same database:
  * bare SQL: the statements our validator sends per batch of workunits (locking reads,
    one update per table, one commit), with precomputed values: no files, no decisions,
    no Python logic. This is the floor our design can reach on this machine.
  * stock pattern: stock BOINC's validator statement pattern (row lookups and updates in
    autocommit, so about 7.5 statements and 4 commits per result), also bare SQL.
and against the reference: stock validators 710-750 results/s (database-bound: about 7.5
statements and 4 fsyncs per result).

With --policy rds, each output is a small .rds file written by Rscript (a list of a
numeric vector and an integer) and compared as R objects through rpy2.

Usage: python bench/validate.py [--n 2000] [--policy bitwise|rds] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _setup import bench_project

from boinc_ext.boinc.schema import blank_row
from boinc_ext.daemons.base import configure_logging
from boinc_ext.boinc.db import Database
from boinc_ext.boinc.hierarchy import hier_path
from boinc_ext.transitioner.results import create_result_rows
from boinc_ext.boinc.states import OUTCOME_SUCCESS, SERVER_STATE_OVER, VALIDATE_STATE_VALID
from boinc_ext.validator.daemon import BATCH_WORKUNITS, Validator, ValidatorOptions
from boinc_ext.validator.output_files import parse_file_refs
from boinc_ext.boinc.table_updates import RowChanges, update_rows
from boinc_ext.boinc.work import WorkCreator, WorkunitRequest

STOCK_RESULTS_PER_S = (710.0, 750.0)
N_USERS, N_HOSTS = 100, 200
IN_TEMPLATE = ("<input_template><file_info/><workunit><file_ref><open_name>in</open_name></file_ref>"
               "<min_quorum>2</min_quorum><target_nresults>2</target_nresults></workunit></input_template>")
OUT_TEMPLATE = ("<output_template><file_info><name><OUTFILE_0/></name><max_nbytes>100000</max_nbytes>"
                "<url><UPLOAD_URL/></url></file_info><result><file_ref><file_name><OUTFILE_0/></file_name>"
                "<open_name>out</open_name></file_ref></result></output_template>")


# --- setup ---------------------------------------------------------------------------------------
def insert_people(db) -> None:
    now = int(time.time())
    team = blank_row("team") | {"name": "bench", "create_time": now}
    db.execute(f"insert into team ({', '.join(team)}) values ({', '.join(['%s'] * len(team))})", list(team.values()))
    users = [blank_row("user") | {"email_addr": f"u{i}@example.org", "name": f"user{i}", "authenticator": f"{i:032x}",
                                   "teamid": 1, "create_time": now} for i in range(N_USERS)]
    hosts = [blank_row("host") | {"userid": 1 + i % N_USERS, "create_time": now} for i in range(N_HOSTS)]
    for table, rows in (("user", users), ("host", hosts)):
        columns = list(rows[0])
        db.executemany(f"insert into `{table}` ({', '.join(columns)}) values ({', '.join(['%s'] * len(columns))})",
                       [[r[c] for c in columns] for r in rows])


def make_workunits(config, db, work: Path, prefix: str, n: int, output: bytes | None = None) -> list[int]:
    """n workunits, each with two reported successful results and their output files."""
    creator = WorkCreator(config, db, "r_job", "templates/bench_in", "templates/bench_out")
    inputs = work / f"{prefix}_in"
    inputs.mkdir()
    requests = []
    for i in range(n):
        path = inputs / f"{prefix}_{i}.txt"
        path.write_text(f"{i}\n")
        requests.append(WorkunitRequest(f"{prefix}_{i}", [path]))
    ids = creator.create_many(requests)
    now = int(time.time())
    with db.transaction():
        for wu in db.query(f"select * from workunit where id in ({', '.join(map(str, ids))})"):
            create_result_rows(db, wu, 2, 0, now, config, None, OUT_TEMPLATE)
    rows = db.query(f"select id, name, workunitid, xml_doc_in from result where workunitid in "
                    f"({', '.join(map(str, ids))}) order by id")
    for index, row in enumerate(rows):
        for ref in parse_file_refs(row["xml_doc_in"], row["name"]):
            path = hier_path(ref.file_name, config.upload_dir, config.uldl_dir_fanout)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(output or f"answer {row['workunitid']}\n".encode())
    with db.transaction():
        db.executemany("update result set server_state = %s, outcome = %s, hostid = %s, userid = %s, sent_time = %s, "
                       "received_time = %s, elapsed_time = 3600, flops_estimate = 2e9, app_version_id = 1 "
                       "where id = %s",
                       [(SERVER_STATE_OVER, OUTCOME_SUCCESS, 1 + i % N_HOSTS, 1 + (i % N_HOSTS) % N_USERS,
                         now - 7200, now - 60, row["id"]) for i, row in enumerate(rows)])
        db.execute(f"update workunit set need_validate = 1 where id in ({', '.join(map(str, ids))})")
    db.query("analyze table workunit, result, host, user")
    return ids


# --- what is measured ----------------------------------------------------------------------------
def run_validator(config, log_path: Path, profile: bool, policy: str = "bitwise") -> float:
    with open(log_path, "a") as log:  # a log file, as in production
        return _timed_run(config, log, profile, policy, log_path)


def _timed_run(config, log, profile: bool, policy: str, log_path: Path) -> float:
    configure_logging("ext_validator", 2, log)
    options = ValidatorOptions(one_pass=True, app="r_job", policy=policy)
    validator = Validator(config, options)
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    code = validator.run()
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - started
    logging.getLogger().handlers.clear()
    if code != 0:
        raise SystemExit(f"validator failed; see {log_path}")
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(45)
        print(out.getvalue(), file=sys.stderr)
    return elapsed


def baseline_bare_sql(db, wu_ids: list[int]) -> float:
    """Our validator's statements per batch, as precomputed SQL text: the joined locking
    reads (workunits and results; hosts and host_app_version; users; the team), one
    UPDATE per table, the commit. No files, no decisions, no Python logic."""
    db.executemany("insert ignore into host_app_version (host_id, app_version_id, pfc_n, pfc_avg, et_n, et_avg, "
                   "et_var, et_q, max_jobs_per_day, n_jobs_today, turnaround_n, turnaround_avg, turnaround_var, "
                   "turnaround_q, consecutive_valid) values (%s, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)",
                   [(h,) for h in range(1, N_HOSTS + 1)])
    plan = [statements_for(db, wu_ids[i:i + BATCH_WORKUNITS]) for i in range(0, len(wu_ids), BATCH_WORKUNITS)]
    started = time.perf_counter()
    for statements in plan:
        with db.transaction():
            for sql in statements[:4]:
                db.query(sql)
            for sql in statements[4:]:
                db.execute(sql)
    return time.perf_counter() - started


def statements_for(db, wu_ids: list[int]) -> list[str]:
    marks = ", ".join(map(str, wu_ids))
    results = db.query(f"select id, workunitid, hostid from result where workunitid in ({marks}) order by id")
    hosts = sorted({r["hostid"] for r in results})
    users = sorted({1 + (h - 1) % N_USERS for h in hosts})
    canonical = {}
    for r in results:
        canonical.setdefault(r["workunitid"], r["id"])
    h, u = ", ".join(map(str, hosts)), ", ".join(map(str, users))
    credit = {"total_credit": "credit"}
    update = RowChanges  # the daemon's own statement builder renders the same UPDATEs
    changes = [
        update("workunit", ("id",), [{"id": wu_id, "need_validate": 0, "error_mask": 0, "assimilate_state": 1,
                                      "transition_time": 2147483647, "target_nresults": 2,
                                      "canonical_resultid": canonical[wu_id], "canonical_credit": 16.7}
                                     for wu_id in wu_ids],
               ("need_validate", "error_mask", "assimilate_state", "transition_time", "target_nresults",
                "canonical_resultid", "canonical_credit")),
        update("result", ("id",), [{"id": r["id"], "validate_state": 1, "outcome": 1, "server_state": 5,
                                    "granted_credit": 16.7} for r in results],
               ("validate_state", "outcome", "server_state", "granted_credit")),
        update("host", ("id",), [{"id": x, "avg_turnaround": 7140.0, "expavg_credit": 1.5, "expavg_time": 1e9,
                                  "credit": 16.7} for x in hosts], ("avg_turnaround", "expavg_credit", "expavg_time"),
               credit),
        update("host_app_version", ("host_id", "app_version_id"),
               [{"host_id": x, "app_version_id": 1, "max_jobs_per_day": 5, "consecutive_valid": 5} for x in hosts],
               ("max_jobs_per_day", "consecutive_valid")),
        update("user", ("id",), [{"id": x, "expavg_credit": 1.5, "expavg_time": 1e9, "credit": 16.7} for x in users],
               ("expavg_credit", "expavg_time"), credit),
        update("team", ("id",), [{"id": 1, "expavg_credit": 1.5, "expavg_time": 1e9, "credit": 33.4}],
               ("expavg_credit", "expavg_time"), credit),
    ]
    capture = _Capture()
    update_rows(capture, changes)
    return [
        (f"select wu.id, wu.name, wu.need_validate, wu.canonical_resultid, wu.transition_time, res.id, res.name, "
         f"res.server_state, res.outcome, res.validate_state, res.xml_doc_in, res.hostid, res.sent_time, "
         f"res.received_time from workunit wu left join result res on res.workunitid = wu.id "
         f"where wu.id in ({marks}) and wu.need_validate > 0 for update"),
        (f"select h.id, h.userid, h.total_credit, h.expavg_credit, h.expavg_time, h.avg_turnaround, hav.host_id, "
         f"hav.app_version_id, hav.max_jobs_per_day, hav.consecutive_valid from host h left join host_app_version "
         f"hav on hav.host_id = h.id and hav.app_version_id in (1) where h.id in ({h}) for update"),
        f"select id, teamid, total_credit, expavg_credit, expavg_time from user where id in ({u}) order by id for update",
        "select id, total_credit, expavg_credit, expavg_time from team where id in (1) order by id for update",
        *capture.statements,
    ]


class _Capture:
    """Stands in for the database to keep the statement text update_rows would send."""

    def __init__(self):
        self.statements: list[str] = []

    def execute(self, sql: str) -> int:
        self.statements.append(sql)
        return 1


def baseline_stock_pattern(db, wu_ids: list[int]) -> float:
    """Stock validator's pattern, bare: autocommit lookups and updates per result (host,
    host_app_version, user, team), one update per result row, one per workunit."""
    rows = db.query(f"select id, workunitid, hostid from result where workunitid in ({', '.join(map(str, wu_ids))}) "
                    f"order by workunitid, id")
    by_wu: dict[int, list] = {}
    for row in rows:
        by_wu.setdefault(row["workunitid"], []).append(row)
    started = time.perf_counter()
    for wu_id in wu_ids:
        db.query("select wu.id, res.id from workunit wu join result res on wu.id = res.workunitid "
                 "where wu.id = %s", (wu_id,))
        for res in by_wu[wu_id]:
            host = db.query_one("select * from host where id = %s", (res["hostid"],))
            db.query_one("select * from host_app_version where host_id = %s and app_version_id = 1", (res["hostid"],))
            user = db.query_one("select * from user where id = %s", (host["userid"],))
            db.execute("update user set total_credit = total_credit + 16.7, expavg_credit = 1, expavg_time = 1 "
                       "where id = %s", (user["id"],))
            db.query_one("select * from team where id = %s", (user["teamid"],))
            db.execute("update team set total_credit = total_credit + 16.7, expavg_credit = 1, expavg_time = 1 "
                       "where id = %s", (user["teamid"],))
            db.execute("update host_app_version set consecutive_valid = consecutive_valid + 1 "
                       "where host_id = %s and app_version_id = 1", (res["hostid"],))
            db.execute("update host set total_credit = total_credit + 16.7 where id = %s", (res["hostid"],))
            db.execute("update result set validate_state = 1, granted_credit = 16.7 where id = %s", (res["id"],))
        db.execute("update workunit set need_validate = 0, canonical_resultid = 1, transition_time = 2147483647 "
                   "where id = %s", (wu_id,))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="workunits (two results each)")
    parser.add_argument("--policy", choices=("bitwise", "rds"), default="bitwise")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the validator run")
    args = parser.parse_args()
    report(measure(args.n, args.policy, args.profile), args.n, args.policy)
    return 0


def measure(n: int = 2000, policy: str = "bitwise", profile: bool = False) -> dict[str, float]:
    """The whole benchmark on its own private MariaDB and project; returns the figures
    (results/s for "ours", "bare_sql", "stock_pattern"; "statements" per result)."""
    with bench_project("bench-validate-", {"bench_in": IN_TEMPLATE, "bench_out": OUT_TEMPLATE}) as (config, work):
        return run_all(config, work, n, profile, policy)


def rds_output(work: Path) -> bytes:
    path = work / "out.rds"
    code = "saveRDS(list(estimate = c(1.5, 2.25, 1e-3), n = 10L), commandArgs(trailingOnly = TRUE)[1])"
    subprocess.run(["Rscript", "--vanilla", "-e", code, str(path.absolute())],
                   check=True, capture_output=True, timeout=120)
    return path.read_bytes()


def run_all(config, work: Path, n: int, profile: bool, policy: str) -> dict[str, float]:
    output = rds_output(work) if policy == "rds" else None
    with Database.for_project(config) as db:
        insert_people(db)
        print(f"setting up 3 x {n:,} workunits with 2 results each ...", file=sys.stderr)
        base_ids = make_workunits(config, db, work, "base", n)
        stock_ids = make_workunits(config, db, work, "stock", n)
        ours_ids = make_workunits(config, db, work, "ours", n, output)
        figures = {"bare_sql": 2 * n / baseline_bare_sql(db, base_ids),
                   "stock_pattern": 2 * n / baseline_stock_pattern(db, stock_ids)}
        # the baselines cleared their workunits' need_validate: the validator sees only its own
        figures["ours"] = 2 * n / run_validator(config, work / "validator.log", profile, policy)
        valid = db.scalar(f"select count(*) from result where validate_state = {VALIDATE_STATE_VALID} and "
                          f"workunitid in ({', '.join(map(str, ours_ids))})")
        if valid != 2 * n:
            raise SystemExit(f"expected {2 * n} valid results, found {valid}")
        figures["statements"], figures["commits"] = statements_per_result(db, config, work, n, output, policy)
    return figures


def statements_per_result(db, config, work: Path, n: int, output: bytes | None,
                          policy: str) -> tuple[float, float]:
    """Statements and commits the server executed per result during a validator run of
    n/10 workunits (server-wide counters: nothing else uses this private server then)."""
    small = max(n // 10, 1)
    make_workunits(config, db, work, "count", small, output)
    before = _server_counters(db)
    run_validator(config, work / "count.log", False, policy)
    after = _server_counters(db)
    statements = after["Questions"] - before["Questions"] - 1  # the second status query itself
    return statements / (2 * small), (after["Com_commit"] - before["Com_commit"]) / (2 * small)


def _server_counters(db) -> dict[str, int]:
    rows = db.query("show global status where variable_name in ('Questions', 'Com_commit')")
    return {row["Variable_name"]: int(row["Value"]) for row in rows}


def report(f: dict[str, float], n: int, policy: str) -> None:
    low, high = STOCK_RESULTS_PER_S
    print(f"\nvalidator, {n:,} workunits of quorum 2 ({2 * n:,} results), {policy} policy (results per second)")
    print(f"{'':40} {'results/s':>10} {'ours/this':>10}")
    print(f"{'ours (ext_validator, one pass)':40} {f['ours']:10,.0f} {1.0:10.2f}")
    print(f"{'baseline: bare SQL, our statements':40} {f['bare_sql']:10,.0f} {f['ours'] / f['bare_sql']:10.2f}")
    print(f"{'baseline: bare SQL, stock pattern':40} {f['stock_pattern']:10,.0f} {f['ours'] / f['stock_pattern']:10.2f}")
    print(f"stock validators {low:.0f}-{high:.0f} results/s (database-bound: about 7.5 statements and 4 fsyncs "
          f"per result): ours is {f['ours'] / high:.2f}-{f['ours'] / low:.2f}x")
    print(f"ours: {f['statements']:.3f} statements and {f['commits']:.3f} commits per result (server-side "
          f"counts, BEGIN and COMMIT included; {BATCH_WORKUNITS} workunits per transaction), against stock's "
          f"about 7.5 and 4")


if __name__ == "__main__":
    sys.exit(main())
