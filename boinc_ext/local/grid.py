"""A whole volunteer grid on one machine: a project served by the embedded server with all
its daemons, and real BOINC clients attached to it through the web RPCs.

The demo and the end-to-end tests both run on this. Everything it starts it stops, by the
pids it holds.
"""
from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from wrapper.build import build_zipapp

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.daemons.control import FAILED, start_daemons, stop_daemons
from boinc_ext.boinc.db import Database, DbSettings
from boinc_ext.jobs.status import JobStatus, job_status
from boinc_ext.jobs.submit import submit_job
from boinc_ext.project.create import ProjectSpec, create_project
from boinc_ext.local.volunteer import Volunteer, free_port

log = logging.getLogger("boinc_ext.local.grid")

FINAL_STATES = ("done", "failed")
VOLUNTEER_PASSWORD = "volunteer-pw"


def volunteer_prefs(checkpoint_period: float = 60.0) -> str:
    """Global preferences for the grid's accounts: compute even while this machine is busy
    with other work (the client's default suspends above 25 % foreign CPU load), and
    checkpoint every `checkpoint_period` seconds. A prefs document replaces all prefs."""
    return ("<global_preferences>\n"
            f"<mod_time>{int(time.time())}</mod_time>\n"
            "<run_on_batteries>1</run_on_batteries>\n<run_if_user_active>1</run_if_user_active>\n"
            "<suspend_cpu_usage>0</suspend_cpu_usage>\n<max_ncpus_pct>100</max_ncpus_pct>\n"
            "<cpu_usage_limit>100</cpu_usage_limit>\n"
            f"<disk_interval>{checkpoint_period:g}</disk_interval>\n"
            "<work_buf_min_days>0</work_buf_min_days>\n<work_buf_additional_days>0.01</work_buf_additional_days>\n"
            "<disk_max_used_pct>90</disk_max_used_pct>\n<disk_min_free_gb>0.1</disk_min_free_gb>\n"
            "<ram_max_used_busy_pct>90</ram_max_used_busy_pct>\n<ram_max_used_idle_pct>90</ram_max_used_idle_pct>\n"
            "</global_preferences>\n")


@dataclass
class LocalGrid:
    base: Path
    db: DbSettings
    n_volunteers: int = 3
    name: str = "demo"
    checkpoint_period: float = 60.0
    config: ProjectConfig | None = None
    volunteers: list[Volunteer] = field(default_factory=list)
    authenticators: list[str] = field(default_factory=list, repr=False)

    @property
    def url(self) -> str:
        assert self.config is not None
        return self.config.master_url

    def create_project(self) -> ProjectConfig:
        self.base.mkdir(parents=True, exist_ok=True)
        url = f"http://127.0.0.1:{free_port()}/{self.name}/"
        self.config = create_project(ProjectSpec(project_dir=self.base / "project", master_url=url,
                                                 name=self.name, db=self.db))
        return self.config

    def start_daemons(self) -> None:
        failed = [r for r in start_daemons(self.config) if r.state == FAILED]
        if failed:
            raise RuntimeError("daemons failed to start: " + "; ".join(f"{r.name}: {r.message}" for r in failed))
        self._wait_for_server()

    def stop_daemons(self) -> None:
        if self.config is not None:
            stop_daemons(self.config, timeout=30.0, force=True)

    def start_volunteers(self) -> None:
        for i in range(self.n_volunteers):
            volunteer = Volunteer(self.base / "volunteers" / f"v{i + 1}", network_test_url=self.url).start()
            self.volunteers.append(volunteer)
            email = f"volunteer{i + 1}@example.org"
            auth = volunteer.create_account(self.url, email, VOLUNTEER_PASSWORD, f"volunteer{i + 1}")
            self._set_prefs(auth)
            volunteer.attach(self.url, auth)
            self.authenticators.append(auth)
            log.info("volunteer %d: client on GUI port %d attached as %s", i + 1, volunteer.port, email)

    def stop_volunteers(self) -> None:
        for volunteer in self.volunteers:
            volunteer.stop()

    def start(self) -> "LocalGrid":
        self.create_project()
        self.start_daemons()
        self.start_volunteers()
        return self

    def stop(self) -> None:
        self.stop_volunteers()
        self.stop_daemons()

    def database(self) -> Database:
        return Database.for_project(self.config)

    def submit(self, script: Path, data=(), **options) -> int:
        with self.database() as db:
            return submit_job(self.config, db, script, data, **options)

    def status(self, job_id: int) -> JobStatus:
        with self.database() as db:
            return job_status(self.config, db, job_id)

    def wait(self, job_ids: list[int], timeout: float, on_progress=None, poll: float = 1.0) -> dict[int, JobStatus]:
        """Waits until every job is done or failed (or the timeout passes); returns their status."""
        deadline = time.monotonic() + timeout
        while True:
            with self.database() as db:
                statuses = {job_id: job_status(self.config, db, job_id) for job_id in job_ids}
            if on_progress is not None:
                on_progress(statuses)
            if all(s.state in FINAL_STATES for s in statuses.values()) or time.monotonic() >= deadline:
                return statuses
            time.sleep(poll)

    def _set_prefs(self, authenticator: str) -> None:
        with self.database() as db:
            db.execute("update user set global_prefs = %s where authenticator = %s",
                       (volunteer_prefs(self.checkpoint_period), authenticator))

    def _wait_for_server(self, timeout: float = 30.0) -> None:
        port = urlsplit(self.url).port
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the embedded server did not listen on port {port} within {timeout:g} s "
                           f"(see {self.config.log_dir / 'ext_server.log'})")


def run_locally(script: Path, data: list[Path], seed: int, workdir: Path) -> Path:
    """Runs a job's script on this machine the way a volunteer's wrapper runs it (the same
    wrapper, standalone, same seed); returns the result.rds it wrote."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(script, workdir / "script.R")
    for path in data:
        shutil.copyfile(path, workdir / Path(path).name)
    program = build_zipapp(workdir / "bin")
    completed = subprocess.run([sys.executable, str(program), "--seed", str(seed)], cwd=workdir,
                               capture_output=True, text=True, timeout=600)
    if completed.returncode != 0:
        raise RuntimeError(f"local run of {script} failed: {completed.stderr[-2000:]}")
    return workdir / "result.rds"


# Paths come in as arguments, never spliced into the code (a quote in a path would break it).
_SAME_R_VALUE = ("args <- commandArgs(trailingOnly = TRUE); "
                 "a <- readRDS(args[1]); b <- readRDS(args[2]); "
                 "quit(status = if (isTRUE(all.equal(a, b, tolerance = as.numeric(args[3])))) 0 else 1)")


def same_r_value(a: Path, b: Path, tolerance: float = 1e-9) -> bool:
    """True if the two .rds files hold equal R values (numbers within `tolerance`)."""
    arguments = [str(Path(a).absolute()), str(Path(b).absolute()), repr(float(tolerance))]
    completed = subprocess.run(["Rscript", "--vanilla", "-e", _SAME_R_VALUE, *arguments],
                               capture_output=True, timeout=120)
    return completed.returncode == 0
