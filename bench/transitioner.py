"""Transitioner speed: creating the results of 10,000 due single-replica workunits.

Each workunit needs one new result: an output template filled in, one upload certificate
signed, the result row inserted, the workunit's transition_time moved. Printed beside:
  * baseline, measured in this same run on the same database: the bare multi-row INSERT of
    the very rows our transitioner wrote (same statement and commit sizes, into an empty copy
    of the result table): no reads, no decisions, no signing, no workunit updates;
  * the reference: stock BOINC's C++ transitioner, about 1,900 WU/s on this machine kind.
and where our time goes: signing per workunit, time inside database calls and commits, statements and
commits per workunit (from the server's own counters), and the rest (Python logic). The
transitioner logs as the daemon does by default (-d 2: one line per workunit), to a file.

Usage: python bench/transitioner.py [--n 10000] [--batch 100]
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import MySQLdb.connections

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _setup import bench_project

from boinc_ext.boinc import crypto
from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.daemons.base import configure_logging
from boinc_ext.daemons.options import DaemonOptions
from boinc_ext.boinc.db import Database
from boinc_ext.transitioner import results as results_module
from boinc_ext.transitioner.daemon import Transitioner
from boinc_ext.boinc.work import WorkCreator, WorkunitRequest

STOCK_WU_PER_S = 1900.0
IN_TEMPLATE = ("<input_template><file_info/><workunit><file_ref><open_name>in</open_name></file_ref>"
               "<rsc_fpops_est>1e10</rsc_fpops_est><delay_bound>86400</delay_bound></workunit></input_template>")
OUT_TEMPLATE = ("<output_template><file_info><name><OUTFILE_0/></name><generated_locally/>"
                "<upload_when_present/><max_nbytes>100000</max_nbytes><url><UPLOAD_URL/></url></file_info>"
                "<result><file_ref><file_name><OUTFILE_0/></file_name><open_name>out</open_name></file_ref>"
                "</result></output_template>")
_COUNTERS = ("Questions", "Com_select", "Com_insert", "Com_update", "Com_commit")


@dataclass
class TransitionerRun:
    n: int
    seconds: float
    signing_seconds: float
    signatures: int
    db_seconds: float
    counters: dict[str, int]

    @property
    def rate(self) -> float:
        return self.n / self.seconds


# --- setup ---------------------------------------------------------------------------------------
def create_due_workunits(config: ProjectConfig, n: int, base: Path) -> None:
    """`n` single-replica workunits of app r_job, all due for the transitioner."""
    (config.project_dir / "templates" / "b_in").write_text(IN_TEMPLATE)
    (config.project_dir / "templates" / "b_out").write_text(OUT_TEMPLATE)
    data = base / "input.txt"
    data.write_text("x\n")
    with Database.for_project(config) as db:
        creator = WorkCreator(config, db, "r_job", "templates/b_in", "templates/b_out")
        creator.create_many([WorkunitRequest(f"bench_{i}", [data]) for i in range(n)])
        db.execute("update workunit set transition_time = %s", (int(time.time()) - 1,))


# --- measuring -----------------------------------------------------------------------------------
class _Stopwatch:
    """Wraps functions so that the time spent inside them adds up."""

    def __init__(self):
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, function):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1
        return timed


def _server_counters(db: Database) -> dict[str, int]:
    marks = ", ".join(["%s"] * len(_COUNTERS))
    rows = db.query(f"show global status where variable_name in ({marks})", _COUNTERS)
    return {row["Variable_name"]: int(row["Value"]) for row in rows}


def _timed_calls(stack: contextlib.ExitStack, stopwatch: _Stopwatch, target, names: tuple[str, ...]) -> None:
    for name in names:
        stack.enter_context(mock.patch.object(target, name, stopwatch.wrap(getattr(target, name))))


def run_transitioner(config: ProjectConfig, n: int, batch: int | None = None) -> TransitionerRun:
    """One timed pass over `n` due workunits, with signing and database time accounted."""
    signing, database = _Stopwatch(), _Stopwatch()
    transitioner = Transitioner(config, DaemonOptions(one_pass=True))
    if batch:
        transitioner.batch_size = batch
    with Database.for_project(config) as counters_db:
        before = _server_counters(counters_db)
        with contextlib.ExitStack() as stack:
            _timed_calls(stack, signing, results_module, ("sign_upload_certificate",))
            _timed_calls(stack, database, Database, ("query", "execute", "insert_rows"))
            _timed_calls(stack, database, MySQLdb.connections.Connection, ("begin", "commit"))
            started = time.perf_counter()
            transitioner.run()
            seconds = time.perf_counter() - started
        after = _server_counters(counters_db)
    counters = {name: after[name] - before[name] - (1 if name in ("Questions", "Com_select") else 0)
                for name in _COUNTERS}  # less our own "show status" (counted as a select)
    return TransitionerRun(n, seconds, signing.seconds, signing.calls, database.seconds, counters)


def baseline_insert_rate(config: ProjectConfig, batch: int) -> tuple[int, float]:
    """(rows, rows/s): the result rows just created, inserted again `batch` per statement and
    commit into an empty copy of the result table."""
    with Database.for_project(config) as db:
        db.execute("create table result_baseline like result")
        columns = ", ".join(results_module._RESULT_COLUMNS)
        rows = [tuple(row[c] for c in results_module._RESULT_COLUMNS)
                for row in db.query(f"select {columns} from result order by id")]
        prefix = f"insert into result_baseline ({columns})"
        started = time.perf_counter()
        for i in range(0, len(rows), batch):
            with db.transaction():
                db.insert_rows(prefix, rows[i:i + batch])
        seconds = time.perf_counter() - started
        db.execute("drop table result_baseline")
    return len(rows), len(rows) / seconds


def print_transitioner_report(run: TransitionerRun, baseline_rows: int, baseline_rate: float) -> None:
    per_wu = 1e6 / run.n
    total_us = run.seconds * per_wu
    signing_us, db_us = run.signing_seconds * per_wu, run.db_seconds * per_wu
    c = run.counters
    print(f"transitioner: {run.n:,} WUs in {run.seconds:.2f} s = {run.rate:,.0f} WU/s")
    print(f"  baseline (bare multi-row INSERT of the same {baseline_rows:,} result rows, same batches): "
          f"{baseline_rate:,.0f} rows/s; ours/baseline {run.rate / baseline_rate:.2f}")
    print(f"  stock BOINC transitioner (reference, same machine kind): {STOCK_WU_PER_S:,.0f} WU/s; "
          f"ours/stock {run.rate / STOCK_WU_PER_S:.2f}")
    print(f"  per WU: {total_us:.0f} us = signing {signing_us:.0f} us ({run.signatures / run.n:.2f} certificates, "
          f"{crypto.private_key_backend()}) + database calls and commits {db_us:.0f} us "
          f"+ Python logic {total_us - signing_us - db_us:.0f} us")
    print(f"  statements per WU: {c['Questions'] / run.n:.3f} (select {c['Com_select'] / run.n:.3f}, "
          f"insert {c['Com_insert'] / run.n:.3f}, update {c['Com_update'] / run.n:.3f}); "
          f"commits per WU: {c['Com_commit'] / run.n:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=Transitioner.batch_size, help="workunits per transaction")
    args = parser.parse_args()
    print(f"setting up: private MariaDB, project, {args.n:,} due workunits ...", flush=True)
    with bench_project("bench-transitioner-", {}) as (config, work):
        create_due_workunits(config, args.n, work)
        with open(work / "transitioner.log", "w") as log:
            configure_logging(Transitioner.name, 2, log)
            run = run_transitioner(config, args.n, args.batch)
        rows, rate = baseline_insert_rate(config, args.batch)
        print_transitioner_report(run, rows, rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
