"""Work creation speed: 10,000 workunits with one small input each.

Four runs: batch (one transaction) and one workunit per call, each with inputs staged by
the call (copied into the download hierarchy, .md5 written) and with inputs already staged.
Each is printed beside a baseline measured in this same run on the same database:
  * rows baseline: a bare executemany() INSERT of the same rows (no templates, no checks);
  * staging baseline: shutil.copyfile of the same files into one flat directory.
Stock BOINC's C++ create_work, built from source and measured on this machine kind, is
printed as the reference: 263 WU/s at one process per workunit, 24,100 WU/s in --stdin batch
mode (rows only), staging 15,000-20,000 files/s.

Usage: python bench/create_work.py [--n 10000]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _setup import bench_project  # noqa: E402

from boinc_ext.boinc.db import Database  # noqa: E402
from boinc_ext.boinc.work import _INSERT_WU, WorkCreator, WorkunitRequest  # noqa: E402

STOCK = {"single": 263.0, "batch": 24100.0, "staging": 15000.0}
IN_TEMPLATE = ("<input_template><file_info/><workunit><file_ref><open_name>in</open_name></file_ref>"
               "<rsc_fpops_est>1e10</rsc_fpops_est></workunit></input_template>")
OUT_TEMPLATE = ("<output_template><file_info><name><OUTFILE_0/></name><generated_locally/>"
                "<upload_when_present/><max_nbytes>100000</max_nbytes><url><UPLOAD_URL/></url></file_info>"
                "<result><file_ref><file_name><OUTFILE_0/></file_name><open_name>out</open_name></file_ref>"
                "</result></output_template>")


def make_inputs(directory: Path, prefix: str, n: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = directory / f"{prefix}_{i}.txt"
        path.write_text(f"input {prefix} {i}\n")
        paths.append(path)
    return paths


def progress(label: str, done: int, total: int, started: float) -> None:
    rate = done / max(time.perf_counter() - started, 1e-9)
    print(f"\r  {label}: {done}/{total} ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)


def run_batch(creator, requests) -> float:
    started = time.perf_counter()
    creator.create_many(requests)
    return len(requests) / (time.perf_counter() - started)


def run_single(creator, requests, label) -> float:
    started = time.perf_counter()
    for i, request in enumerate(requests, 1):
        creator.create(request)
        if i % 500 == 0:
            progress(label, i, len(requests), started)
    print(file=sys.stderr)
    return len(requests) / (time.perf_counter() - started)


def plain_rows(db, n: int) -> list[tuple]:
    """Rows like ours (same columns and xml_doc size), built without templates or staging."""
    xml = db.scalar("select xml_doc from workunit order by id desc limit 1")
    now = int(time.time())
    shared = (now, 1, 0, 1e10, 8.64e13, 5e8, 1e9, 0, 0, 0.0, now, 604800, 0, 0, 0, 0, 1, 1, 1, 1, 1,
              "templates/out", 0.0, 0, 0, 0, -1, 0)
    return [(f"base_{i}", xml, 0, 0.0, "") + shared for i in range(n)]


def baseline_rows(db, rows) -> float:
    """A bare executemany() of the same number of rows: the database's own cost plus the driver's."""
    sql = f"{_INSERT_WU} values ({', '.join(['%s'] * len(rows[0]))})"
    started = time.perf_counter()
    with db.transaction():
        db.executemany(sql, rows)
    return len(rows) / (time.perf_counter() - started)


def baseline_copy(paths, target: Path) -> float:
    target.mkdir()
    started = time.perf_counter()
    for path in paths:
        shutil.copyfile(path, target / path.name)
    return len(paths) / (time.perf_counter() - started)


def due_query_seconds(db) -> tuple[float, str]:
    """The transitioner's due-work query, timed, with the index the optimizer picks."""
    sql = "select id from workunit where transition_time < %s limit 1000"
    now = int(time.time()) + 10
    plan = db.query_one("explain " + sql, (now,))
    started = time.perf_counter()
    db.query(sql, (now,))
    return time.perf_counter() - started, str(plan.get("key"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    args = parser.parse_args()
    with bench_project("bench-create-work-", {"in": IN_TEMPLATE, "out": OUT_TEMPLATE}) as (config, work):
        results = run_all(config, work, args.n)
    report(results, args.n)
    return 0


def run_all(config, work: Path, n: int) -> dict[str, float]:
    results: dict[str, float] = {}
    with Database.for_project(config) as db:
        creator = WorkCreator(config, db, "r_job", "templates/in", "templates/out")
        # Baselines first, on the same database.
        creator.create_many([WorkunitRequest(f"stage_only_{i}", [p]) for i, p in
                             enumerate(make_inputs(work / "pre", "prestaged", n))])
        results["baseline_rows"] = baseline_rows(db, plain_rows(db, n))
        results["baseline_copy"] = baseline_copy(make_inputs(work / "cp", "cp", n), work / "flat")

        print("batch, inputs staged by the call ...", file=sys.stderr)
        results["batch_staging"] = run_batch(creator, [WorkunitRequest(f"bs_{i}", [p]) for i, p in
                                                       enumerate(make_inputs(work / "bs", "bs", n))])
        print("batch, inputs already staged ...", file=sys.stderr)
        results["batch_rows"] = run_batch(creator, [WorkunitRequest(f"br_{i}", [f"prestaged_{i}.txt"])
                                                    for i in range(n)])
        results["single_staging"] = run_single(creator, [WorkunitRequest(f"ss_{i}", [p]) for i, p in
                                                         enumerate(make_inputs(work / "ss", "ss", n))],
                                               "one per call, staging")
        results["single_rows"] = run_single(creator, [WorkunitRequest(f"sr_{i}", [f"prestaged_{i}.txt"])
                                                      for i in range(n)], "one per call, pre-staged")
        seconds, index = due_query_seconds(db)
        results["due_query_ms"] = seconds * 1000
        print(f"transitioner due query over {db.scalar('select count(*) from workunit'):,} workunits: "
              f"{seconds * 1000:.1f} ms using index {index}", file=sys.stderr)
    return results


def report(r: dict[str, float], n: int) -> None:
    print(f"\ncreate_work, {n:,} workunits, one small input each (workunits per second)")
    print(f"{'mode':42} {'ours':>10} {'baseline':>10} {'ratio':>7} {'stock':>8} {'vs stock':>9}")
    rows = [
        ("batch, inputs already staged", r["batch_rows"], r["baseline_rows"], STOCK["batch"]),
        ("batch, staging inputs", r["batch_staging"], r["baseline_copy"], STOCK["staging"]),
        ("one per call, inputs already staged", r["single_rows"], r["baseline_rows"], STOCK["single"]),
        ("one per call, staging inputs", r["single_staging"], r["baseline_copy"], STOCK["single"]),
    ]
    for label, ours, base, stock in rows:
        print(f"{label:42} {ours:10,.0f} {base:10,.0f} {ours / base:7.2f} {stock:8,.0f} {ours / stock:8.1f}x")
    print("baseline: bare executemany INSERT of the same rows (rows), plain file copy (staging);"
          " stock: BOINC's C++ create_work measured on this machine kind")


if __name__ == "__main__":
    sys.exit(main())
