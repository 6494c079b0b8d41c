"""Turnaround of a trivial R job through the embedded server and a real BOINC client, against
running the same script here; then the server's scheduler and validator throughput.

1. Local baseline: the script (`mean(1:10)`) run with plain `Rscript`, and through our wrapper
   standalone (`run_locally`: the same zipapp a volunteer runs, same seed), each --jobs times.
2. The grid: a private MariaDB, a project served by the embedded server with all its daemons,
   one real BOINC client attached through the web RPCs and left idle, then --jobs jobs with
   replication 1, one after another (each submitted when the one before is done). Nobody
   pokes the client (`boinccmd --project ... update`): it comes back on its own when the
   server's next_rpc_delay (boinc_ext/server/steering.py) says so. Each job's turnaround is
   broken down from polling the database every 0.1 s (and its own timestamps) and from the
   client's log: submit -> workunit created (work generator) -> result created (transitioner)
   -> sent (scheduler) -> client got it -> task started -> computation finished -> uploaded
   -> reported (result.received_time) -> validated -> assimilated -> job done.
   Target: at most 20 s added over the local Rscript run.
3. Scheduler requests/s with 10,000 unsent results (bench/scheduler.py's functions) and
   validator results/s (bench/validate.py's), beside stock BOINC's reference figures.

Usage: python bench/turnaround.py [--quick] [--jobs 5] [--skip-throughput]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from boinc_ext.boinc.db import Database
from boinc_ext.local.mariadb import MariaDBServer
from boinc_ext.local.grid import LocalGrid, run_locally
from boinc_ext.boinc.states import (
    ASSIMILATE_DONE,
    SERVER_STATE_IN_PROGRESS,
    SERVER_STATE_OVER,
    VALIDATE_STATE_VALID,
)

SCRIPT = "mean(1:10)\n"
TARGET_ADDED_SECONDS = 20.0
JOB_TIMEOUT = 300.0
POLL = 0.1
RPC_CYCLE = 7.0       # an idle client's scheduler RPCs come this often (steering.py)
STOCK_SCHEDULER = {"no work": (212.0, 362.0), "one job": (73.0, 133.0)}
STOCK_VALIDATOR = (710.0, 750.0)
STOCK_TRANSITIONER = 1900.0

# (stage, who moves the job into it); the order of a job's life.
STAGES = [
    ("submitted", ""),
    ("workunit created", "work generator"),
    ("result created", "transitioner"),
    ("sent", "scheduler: the client's next RPC"),
    ("client got task", "scheduler reply reaches the client"),
    ("task started", "client: downloads, starts the wrapper"),
    ("computation finished", "wrapper + R on the volunteer"),
    ("uploaded", "client uploads the output"),
    ("reported", "client reports (its next RPC)"),
    ("validated", "validator"),
    ("assimilated", "assimilator"),
    ("job done", "assimilator: job marked done"),
]


def say(text: str) -> None:
    print(text, flush=True)


# --- local baseline ------------------------------------------------------------------------
def local_baseline(script: Path, runs: int, work: Path) -> tuple[list[float], list[float]]:
    rscript, wrapper = [], []
    for i in range(runs):
        started = time.perf_counter()
        subprocess.run(["Rscript", str(script)], check=True, capture_output=True, timeout=120)
        rscript.append(time.perf_counter() - started)
        started = time.perf_counter()
        run_locally(script, [], 12345 + i, work / f"local_{i}")
        wrapper.append(time.perf_counter() - started)
        say(f"  local run {i + 1}/{runs}: Rscript {rscript[-1]:.2f} s, wrapper standalone {wrapper[-1]:.2f} s")
    return rscript, wrapper


# --- the grid --------------------------------------------------------------------------------
@dataclass
class JobTimes:
    job_id: int
    submitted: float                                        # wall clock, this process
    seen: dict[str, float] = field(default_factory=dict)    # stage -> wall clock first seen (polling)
    db: dict[str, float] = field(default_factory=dict)      # stage -> database timestamp (whole s)
    client: dict[str, float] = field(default_factory=dict)  # stage -> client log timestamp (whole s)
    state: str = "submitted"
    result_name: str = ""

    @property
    def turnaround(self) -> float:
        return self.seen.get("job done", float("nan")) - self.submitted

    def at(self, stage: str) -> float | None:
        """Best time for a stage: polled (0.1 s) where the database shows it, else the client log."""
        if stage == "submitted":
            return self.submitted
        return self.seen.get(stage, self.client.get(stage))


_POLL_QUERY = """select j.state, j.finish_time, w.id wu_id, w.create_time wu_create, w.assimilate_state,
    r.id res_id, r.name res_name, r.create_time res_create, r.server_state, r.sent_time, r.received_time,
    r.validate_state from ext_job j left join workunit w on w.id = j.workunitid
    left join result r on r.workunitid = w.id where j.id = %s order by r.id limit 1"""


def observe(row: dict, times: JobTimes, now: float) -> None:
    def mark(stage: str, condition: bool, db_time=None) -> None:
        if condition and stage not in times.seen:
            times.seen[stage] = now
            if db_time:
                times.db[stage] = float(db_time)
    mark("workunit created", row["wu_id"] is not None, row["wu_create"])
    mark("result created", row["res_id"] is not None, row["res_create"])
    mark("sent", row["server_state"] in (SERVER_STATE_IN_PROGRESS, SERVER_STATE_OVER), row["sent_time"])
    mark("reported", row["server_state"] == SERVER_STATE_OVER, row["received_time"])
    mark("validated", row["validate_state"] == VALIDATE_STATE_VALID)
    mark("assimilated", row["assimilate_state"] == ASSIMILATE_DONE)
    mark("job done", row["state"] in ("done", "failed"), row["finish_time"])
    times.state = row["state"]
    times.result_name = row["res_name"] or times.result_name


def run_job(grid: LocalGrid, db: Database, script: Path) -> JobTimes:
    submitted = time.time()
    job_id = grid.submit(script, replication=1)
    times = JobTimes(job_id, submitted)
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        row = db.query_one(_POLL_QUERY, (job_id,))
        observe(row, times, time.time())
        if row["state"] in ("done", "failed"):
            break
        time.sleep(POLL)
    else:
        raise SystemExit(f"job {job_id} not done after {JOB_TIMEOUT:g} s (state {times.state})")
    if times.state != "done":
        raise SystemExit(f"job {job_id} failed; see {grid.config.log_dir}")
    return times


_CLIENT_LINE = re.compile(r"^(\d{2}-\w{3}-\d{4} \d{2}:\d{2}:\d{2}) \[[^\]]*\] (.*)$")


def client_log_events(log_path: Path, times: JobTimes) -> None:
    """Fills times.client from the client's stdoutdae.txt (whole-second local timestamps)."""
    name = times.result_name
    after_sent = times.seen.get("sent", times.submitted) - 1
    patterns = [
        ("client got task", lambda m: re.search(r"Scheduler request completed: got [1-9]\d* new tasks", m)),
        ("task started", lambda m: m.startswith(f"Starting task {name}")),
        ("computation finished", lambda m: m.startswith(f"Computation for task {name} finished")),
        ("uploaded", lambda m: m.startswith(f"Finished upload of {name}")),
    ]
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return
    for line in lines:
        match = _CLIENT_LINE.match(line)
        if not match:
            continue
        # the log truncates to whole seconds: the middle of the second is the unbiased guess
        stamp = datetime.strptime(match.group(1), "%d-%b-%Y %H:%M:%S").timestamp() + 0.5
        if stamp < after_sent - 1:
            continue
        for stage, test in patterns:
            # the first of each after sent; the last upload of this result
            if test(match.group(2)) and (stage == "uploaded" or stage not in times.client):
                times.client[stage] = stamp


def wait_until_idle(grid: LocalGrid, timeout: float = 120.0) -> float:
    """Waits until the client has registered its host and made a later, no-work RPC; returns
    the seconds that took."""
    started = time.monotonic()
    with grid.database() as db:
        while time.monotonic() - started < timeout:
            row = db.query_one("select id, rpc_seqno from host order by id limit 1")
            if row and row["rpc_seqno"] >= 2:
                return time.monotonic() - started
            time.sleep(0.5)
    raise SystemExit(f"the client made no second scheduler RPC within {timeout:g} s")


def daemon_cpu_seconds(config) -> dict[str, float]:
    """user + system CPU seconds of each running daemon, from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid_file in config.pid_dir.glob("*.pid"):
        try:
            fields = Path(f"/proc/{int(pid_file.read_text())}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue
        out[pid_file.stem] = (int(fields[11]) + int(fields[12])) / ticks   # utime, stime
    return out


def run_grid(base: Path, n_jobs: int, script: Path, idle_seconds: float) -> tuple[list[JobTimes], Path]:
    server = MariaDBServer(base / "db")
    say("grid: private MariaDB ...")
    server.init()
    server.start()
    grid = LocalGrid(base / "grid", server.settings("turnaround"), n_volunteers=1, name="turnaround")
    try:
        grid.create_project()
        grid.start_daemons()
        say(f"grid: project and daemons up ({', '.join(d.program for d in grid.config.daemons)})")
        grid.start_volunteers()
        waited = wait_until_idle(grid)
        say(f"grid: 1 BOINC client attached; its second scheduler RPC after {waited:.0f} s; "
            f"leaving it idle {idle_seconds:g} s")
        before, started = daemon_cpu_seconds(grid.config), time.monotonic()
        time.sleep(idle_seconds)
        after, elapsed = daemon_cpu_seconds(grid.config), time.monotonic() - started
        say("grid: CPU of the idle daemons (% of one CPU): " + ", ".join(
            f"{name} {100 * (after[name] - before[name]) / elapsed:.1f}" for name in sorted(after) if name in before))
        client_log = grid.volunteers[0].directory / "stdoutdae.txt"
        jobs = []
        with grid.database() as db:
            for i in range(n_jobs):
                times = run_job(grid, db, script)
                client_log_events(client_log, times)
                jobs.append(times)
                say(f"  job {i + 1}/{n_jobs} (id {times.job_id}): {times.turnaround:5.1f} s submit to done")
                if i + 1 < n_jobs:
                    # The client goes idle again. A job's end is locked to the client's RPC cycle
                    # (~7 s idle: 5 s poll + the RPC), so equal gaps would submit every job at one
                    # phase of it; extra waits spread evenly over a cycle sample all phases.
                    time.sleep(idle_seconds + RPC_CYCLE * i / max(n_jobs - 1, 1))
        log_dir = grid.config.log_dir
    finally:
        say("grid: stopping the client, daemons and database")
        grid.stop()
        server.stop()
    return jobs, log_dir


# --- reporting ---------------------------------------------------------------------------------
def print_turnaround(jobs: list[JobTimes], rscript: list[float], wrapper: list[float]) -> float:
    turnarounds = [j.turnaround for j in jobs]
    ours, local, local_wrapper = (statistics.median(x) for x in (turnarounds, rscript, wrapper))
    say("\nturnaround of a trivial R job (mean(1:10)), seconds")
    say(f"  {'':34} {'median':>7}   each")
    say(f"  {'Rscript here':34} {local:7.2f}   " + " ".join(f"{x:.2f}" for x in rscript))
    say(f"  {'wrapper standalone here':34} {local_wrapper:7.2f}   " + " ".join(f"{x:.2f}" for x in wrapper))
    say(f"  {'grid: 1 idle client, replication 1':34} {ours:7.2f}   " + " ".join(f"{x:.1f}" for x in turnarounds))
    added = ours - local
    say(f"  added over Rscript: {added:.1f} s (over the wrapper standalone: {ours - local_wrapper:.1f} s); "
        f"target at most {TARGET_ADDED_SECONDS:g} s: {'MET' if added <= TARGET_ADDED_SECONDS else 'MISSED'}")

    say("\nbreakdown, seconds after submit (polled every 0.1 s; client stages from its log, whole seconds + 0.5)")
    header = f"  {'stage':22} {'by':40} " + " ".join(f"{'job ' + str(i + 1):>6}" for i in range(len(jobs)))
    say(header + f" {'median step':>12}")
    previous = [j.submitted for j in jobs]
    for stage, who in STAGES[1:]:
        cells, steps = [], []
        for k, job in enumerate(jobs):
            t = job.at(stage)
            if t is None:
                cells.append(f"{'-':>6}")
                continue
            cells.append(f"{t - job.submitted:6.1f}")
            steps.append(t - previous[k])
            previous[k] = t
        step = f"{statistics.median(steps):+12.1f}" if steps else f"{'-':>12}"
        say(f"  {stage:22} {who:40} " + " ".join(cells) + step)
    groups = [("server daemons before sending (work generator, transitioner)", "submitted", "result created"),
              ("waiting for the client's next scheduler RPC", "result created", "sent"),
              ("the client: sent to reported (its own 1 s and 5 s steps)", "sent", "reported"),
              ("server daemons after the report (transitioner, validator, assimilator)", "reported", "job done")]
    say("  in four parts (median s):")
    for label, start, end in groups:
        spans = [j.at(end) - j.at(start) for j in jobs if j.at(start) is not None and j.at(end) is not None]
        if spans:
            say(f"    {label:72} {statistics.median(spans):5.1f}   " + " ".join(f"{x:.1f}" for x in spans))
    say("  database timestamps (whole s after submit): " + "; ".join(
        f"job {k + 1}: " + ", ".join(f"{s.split()[0]} {v - j.submitted:.0f}" for s, v in j.db.items())
        for k, j in enumerate(jobs)))
    return added


def where_the_time_goes(jobs: list[JobTimes]) -> list[tuple[str, float]]:
    """Median seconds per step, largest first."""
    steps: dict[str, list[float]] = {}
    for job in jobs:
        previous = job.submitted
        for stage, who in STAGES[1:]:
            t = job.at(stage)
            if t is None:
                continue
            steps.setdefault(f"{stage} ({who})", []).append(t - previous)
            previous = t
    return sorted(((k, statistics.median(v)) for k, v in steps.items()), key=lambda kv: -kv[1])


def throughput(quick: bool) -> None:
    import scheduler as sched_bench
    import validate as validate_bench

    n_results = 2000 if quick else 10000
    seconds = 3.0 if quick else 10.0
    say(f"\nscheduler: setting up a private MariaDB, a project and {n_results:,} unsent results ...")
    with tempfile.TemporaryDirectory(prefix="bench-turnaround-sched-") as tmp:
        dbserver, config, transitioner_rate = sched_bench.set_up(Path(tmp), n_results)
        try:
            sched = sched_bench.measure_scheduler(config, seconds)
        finally:
            dbserver.stop()
    n_wus = 500 if quick else 2000
    say(f"\nvalidator: {n_wus:,} workunits of quorum 2 ({2 * n_wus:,} results), bitwise policy ...")
    validator = validate_bench.measure(n_wus, "bitwise")

    say("\nthroughput, ours beside stock BOINC (stock figures measured on this machine kind)")
    say(f"  {'':44} {'ours':>9} {'stock':>9} {'ours/stock':>10}")
    for (label, clients), (rate, _) in sched.items():
        stock = STOCK_SCHEDULER[label][clients - 1]
        what = f"scheduler, {label}, {clients} at a time (req/s)"
        say(f"  {what:44} {rate:9.1f} {stock:9.0f} {rate / stock:10.2f}")
    low, high = STOCK_VALIDATOR
    say(f"  {'validator (results/s)':44} {validator['ours']:9.0f} {f'{low:.0f}-{high:.0f}':>9} "
        f"{validator['ours'] / high:4.2f}-{validator['ours'] / low:.2f}")
    say(f"  {'  same run, bare SQL in stock pattern':44} {validator['stock_pattern']:9.0f} "
        f"{'':9} (this machine now: ours / stock pattern {validator['ours'] / validator['stock_pattern']:.2f})")
    say(f"  {'transitioner (WU/s, during setup)':44} {transitioner_rate:9.0f} {STOCK_TRANSITIONER:9.0f} "
        f"{transitioner_rate / STOCK_TRANSITIONER:10.2f}")
    say(f"  (scheduler with {n_results:,} unsent results, {seconds:g} s per figure; validator also "
        f"{validator['statements']:.1f} statements per result)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="2 jobs, shorter idle waits, 2,000 results and 3 s per scheduler figure")
    parser.add_argument("--jobs", type=int, help="jobs run one after another (default 5, 2 with --quick)")
    parser.add_argument("--idle", type=float, help="seconds the client is left idle before each job "
                                                   "(default 15, 5 with --quick)")
    parser.add_argument("--skip-throughput", action="store_true", help="turnaround only")
    parser.add_argument("--keep", type=Path, help="work in this new directory and keep it (logs, client dir)")
    args = parser.parse_args()
    n_jobs = args.jobs or (2 if args.quick else 5)
    idle = args.idle if args.idle is not None else (5.0 if args.quick else 15.0)
    with tempfile.TemporaryDirectory(prefix="bench-turnaround-") as tmp:
        base = Path(tmp)
        if args.keep:
            base = args.keep.resolve()
            base.mkdir(parents=True)  # a new directory: nothing of anyone else's is touched
        script = base / "trivial.R"
        script.write_text(SCRIPT)
        say(f"local baseline: {SCRIPT.strip()} with Rscript and with the wrapper standalone, {n_jobs} times each")
        rscript, wrapper = local_baseline(script, n_jobs, base / "local")
        say(f"grid: {n_jobs} jobs, one after another, on 1 idle BOINC client (replication 1)")
        jobs, _ = run_grid(base, n_jobs, script, idle)
        added = print_turnaround(jobs, rscript, wrapper)
        if added > TARGET_ADDED_SECONDS:
            say(f"\nabove the {TARGET_ADDED_SECONDS:g} s target; where the seconds go (median per step):")
            for step, seconds in where_the_time_goes(jobs)[:5]:
                say(f"  {seconds:6.1f} s  {step}")
    if not args.skip_throughput:
        throughput(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
