"""`boinc-ext demo`: the main job.

A private MariaDB, a project served by the embedded server with all its daemons, three real
BOINC clients that create accounts and attach through the web RPCs, and a handful of real R
jobs (a bootstrap, a Monte Carlo integral, a regression on a data file, a long loop with
checkpoints), each run on two volunteers. It shows progress while they run, checks every
result against the same script run here, prints a summary and stops everything it started.
Exit status 0 only if every job came back right.
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from boinc_ext.boinc.db import Database
from boinc_ext.local.mariadb import MariaDBServer
from boinc_ext.jobs.status import JobStatus
from boinc_ext.local.grid import LocalGrid, run_locally, same_r_value

MARKER = ".boinc-ext-demo"
REPLICATION = 2
TIMEOUT = 900

JOBS = {
    "bootstrap.R": (
        "# Bootstrap standard error of a mean\n"
        "x <- c(2.1, 3.4, 1.9, 5.6, 4.4, 3.3, 2.8, 4.9, 3.7, 4.1)\n"
        "boot <- replicate(5000, mean(sample(x, replace = TRUE)))\n"
        "c(estimate = mean(x), se = sd(boot), lower = unname(quantile(boot, 0.025)),\n"
        "  upper = unname(quantile(boot, 0.975)))\n"),
    "monte_carlo_pi.R": (
        "# Monte Carlo integral of 4*sqrt(1-u^2) over [0,1] (= pi)\n"
        "u <- runif(200000)\n"
        "est <- mean(4 * sqrt(1 - u^2))\n"
        "c(pi_estimate = est, error = est - pi)\n"),
    "regression.R": (
        "# Linear regression on a data file shipped with the job\n"
        "d <- read.csv('measurements.csv')\n"
        "fit <- lm(y ~ x, data = d)\n"
        "print(summary(fit))\n"
        "coef(fit)\n"),
    "long_loop.R": (
        "# A long loop that checkpoints between iterations and reports progress\n"
        "walks <- numeric(0)\n"
        "boinc_for(i, 1:20, {\n"
        "  Sys.sleep(0.5)\n"
        "  walks[i] <- sum(rnorm(1000))\n"
        "})\n"
        "summary(walks)\n"),
}


def run_demo(base: Path) -> int:
    base = base.resolve()
    _fresh(base)
    server = MariaDBServer(base / "db")
    say(f"[1/6] private MariaDB in {server.base_dir}")
    server.init()
    server.start()
    grid = LocalGrid(base, server.settings("demo"), n_volunteers=3, name="demo", checkpoint_period=5)
    try:
        config = grid.create_project()
        say(f"[2/6] project '{config.long_name}' at {config.project_dir}, served at {config.master_url}")
        grid.start_daemons()
        say("[3/6] embedded server and daemons started: " + ", ".join(d.program for d in config.daemons))
        grid.start_volunteers()
        say(f"[4/6] {len(grid.volunteers)} BOINC clients started, accounts created and attached via the web RPCs")
        jobs = _submit(grid, base / "jobs")
        say(f"[5/6] submitted {len(jobs)} R jobs, each on {REPLICATION} volunteers; waiting for results")
        started = time.monotonic()
        statuses = grid.wait(list(jobs), TIMEOUT, _progress_printer(grid, started), poll=2.0)
        say("[6/6] checking every result against the same script run here")
        ok = _verify(grid, jobs, statuses, base / "check")
        _summary(grid, jobs, statuses)
    finally:
        say("stopping the clients, daemons and database")
        grid.stop()
        server.stop()
    say("demo passed: every job came back right" if ok else "demo FAILED: see above")
    return 0 if ok else 1


def say(text: str) -> None:
    print(text, flush=True)


def _fresh(base: Path) -> None:
    """Each run starts clean; only a directory an earlier demo made is ever removed."""
    if base.exists():
        if not (base / MARKER).exists():
            raise SystemExit(f"{base} exists and is not a demo directory; choose another --dir")
        shutil.rmtree(base)
    base.mkdir(parents=True)
    (base / MARKER).touch()


def _submit(grid: LocalGrid, directory: Path) -> dict[int, tuple[Path, list[Path]]]:
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "measurements.csv"
    data.write_text("x,y\n" + "".join(f"{x},{2.5 * x + 1 + ((x * 7) % 5 - 2) * 0.3:.3f}\n" for x in range(1, 41)))
    jobs = {}
    for name, text in JOBS.items():
        script = directory / name
        script.write_text(text)
        inputs = [data] if "measurements.csv" in text else []
        job_id = grid.submit(script, inputs, replication=REPLICATION, name=Path(name).stem)
        jobs[job_id] = (script, inputs)
        say(f"      job {job_id}: {name}" + (f" with {inputs[0].name}" if inputs else ""))
    return jobs


def _progress_printer(grid: LocalGrid, started: float):
    last = [""]

    def show(statuses: dict[int, JobStatus]) -> None:
        states = [s.state for s in statuses.values()]
        running = sum(s.results.in_progress for s in statuses.values())
        valid = sum(s.results.valid for s in statuses.values())
        line = (f"{states.count('done')} done, {states.count('failed')} failed, "
                f"{len(states) - states.count('done') - states.count('failed')} waiting; "
                f"{running} tasks on volunteers, {valid} results validated")
        if line != last[0]:
            say(f"      {time.monotonic() - started:5.0f} s: {line}")
            last[0] = line
    return show


def _verify(grid: LocalGrid, jobs, statuses: dict[int, JobStatus], directory: Path) -> bool:
    from boinc_ext.jobs.result import fetch_result
    ok = True
    for job_id, (script, inputs) in jobs.items():
        status = statuses[job_id]
        if status.state != "done":
            say(f"      job {job_id} ({script.name}): {status.state.upper()} {status.error or ''}")
            ok = False
            continue
        with grid.database() as db:
            files = fetch_result(grid.config, db, job_id, directory / f"job_{job_id}")
        remote = next(p for p in files if p.name == "result.rds")
        local = run_locally(script, inputs, status.seed, directory / f"local_{job_id}")
        same = same_r_value(remote, local)
        ok = ok and same
        say(f"      job {job_id} ({script.name}): {'matches' if same else 'DIFFERS FROM'} the local run "
            f"(result in {remote})")
    return ok


def _summary(grid: LocalGrid, jobs, statuses: dict[int, JobStatus]) -> None:
    say("\nsummary")
    say(f"  {'job':28} {'state':8} {'valid results':>13} {'turnaround':>11}")
    for job_id, (script, _) in jobs.items():
        s = statuses[job_id]
        turnaround = f"{s.finish_time - s.create_time} s" if s.finish_time else "-"
        say(f"  {job_id:>3} {script.name:24} {s.state:8} {s.results.valid:>13} {turnaround:>11}")
    with Database.for_project(grid.config) as db:
        users = db.query("select name, total_credit from user order by id")
        hosts = db.scalar("select count(*) from host")
    say(f"  {hosts} hosts; credit granted: " + ", ".join(f"{u['name']} {u['total_credit']:.2f}" for u in users))
    sys.stdout.flush()
