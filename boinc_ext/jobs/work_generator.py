"""Work generator: turns submitted R jobs into r_job workunits.

For each submitted job (a bounded batch per pass) it creates the workunit `rjob_<job id>`
with WorkCreator (inputs script.R and the data files under their own open names, command
line `--seed N`, quorum = replication, opaque = job id) and then moves the job to
`running`. Creating the workunit and linking the job are two transactions, so the name is
the link: a generator killed between them finds the workunit by name on its next pass and
only links it. A job is never given two workunits.

    python -m boinc_ext.jobs.work_generator [--one_pass] [--mod N R] [-d N] [--sleep_interval S]
"""
from __future__ import annotations

import sys
import time

from boinc_ext.daemons.base import Daemon, DaemonConfigError, main_for
from boinc_ext.boinc.templates import TemplateError
from boinc_ext.boinc.work import WorkCreator, WorkError, WorkunitRequest
from boinc_ext.jobs import store
from boinc_ext.jobs.model import KIND_R_JOB, STATE_SUBMITTED, Job, JobFile, workunit_name
from boinc_ext.apps.r_job import OUTPUT_TEMPLATE, ensure_input_template, input_template_file, install_templates
from boinc_ext.jobs.sizing import workunit_params

JOBS_PER_PASS = 100

EVENT_WU_CREATED = "workunit created"
EVENT_WU_LINKED = "existing workunit linked"
EVENT_JOB_REFUSED = "job failed: no workunit can be made for it"


class WorkGenerator(Daemon):
    name = "ext_work_generator"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._creators: dict[int, WorkCreator] = {}  # per number of data files

    def setup(self) -> None:
        super().setup()
        install_templates(self.config)

    def do_pass(self) -> bool:
        with self.db.transaction():
            job_ids = store.submitted_job_ids(self.db, KIND_R_JOB, JOBS_PER_PASS, self.mod_clause())
        for job_id in job_ids:
            if self.should_stop():
                break
            self.generate(job_id)
        return bool(job_ids)

    def generate(self, job_id: int) -> None:
        """Gives one submitted job its workunit (creating it unless it exists) and links them."""
        job = store.load_job(self.db, job_id)
        if job is None or job.state != STATE_SUBMITTED:
            return
        log = self.item_log("JOB", job.id, job.name)
        try:
            wu_id, event = self._workunit_for(job)
        except WorkError as exc:
            self._fail(job, str(exc), log)
            return
        with self.db.transaction():
            linked = store.mark_running(self.db, job.id, wu_id)
        if linked:
            log.info("%s: %s (WU#%d); job running", event, workunit_name(job.id), wu_id)

    def _workunit_for(self, job: Job) -> tuple[int, str]:
        wu_id = self._existing_workunit(job)
        if wu_id is not None:
            return wu_id, EVENT_WU_LINKED
        files = store.job_files(self.db, job.id)
        try:
            return self._creator(files).create(self._request(job, files)), EVENT_WU_CREATED
        except WorkError:
            wu_id = self._existing_workunit(job)  # another generator created it meanwhile
            if wu_id is None:
                raise
            return wu_id, EVENT_WU_LINKED

    def _existing_workunit(self, job: Job) -> int | None:
        """The job's workunit if it exists; a foreign workunit of that name is a WorkError."""
        row = self.db.query_one("select w.id, w.opaque, a.name as app from workunit w "
                                "join app a on a.id = w.appid where w.name = %s", (workunit_name(job.id),))
        if row is None:
            return None
        if int(row["opaque"]) != job.id or row["app"] != KIND_R_JOB:
            raise WorkError(f"workunit {workunit_name(job.id)} exists but was not made for this job "
                            f"(app {row['app']}, opaque {row['opaque']:g})")
        return row["id"]

    def _request(self, job: Job, files: list[JobFile]) -> WorkunitRequest:
        return WorkunitRequest(
            name=workunit_name(job.id),
            inputs=[f.physical_name for f in files],
            open_names=[f.logical_name for f in files],
            command_line=f"--seed {job.seed}",
            params=workunit_params(job.replication, job.deadline, sum(f.nbytes for f in files)),
            opaque=float(job.id),  # the workunit's way back to its job
        )

    def _creator(self, files: list[JobFile]) -> WorkCreator:
        """The creator for this many data files."""
        n_data = len(files) - 1
        if n_data not in self._creators:
            path = ensure_input_template(self.config, n_data)
            try:
                creator = WorkCreator(self.config, self.db, KIND_R_JOB, path, OUTPUT_TEMPLATE)
            except (WorkError, TemplateError) as exc:
                raise DaemonConfigError(f"r_job templates: {exc}") from None
            if creator.input_template.n_variable_inputs != len(files):
                raise DaemonConfigError(f"{input_template_file(n_data)}: needs {len(files)} variable inputs "
                                        f"(script.R and {n_data} data files)")
            self._creators[n_data] = creator
        return self._creators[n_data]

    def _fail(self, job: Job, reason: str, log) -> None:
        with self.db.transaction():
            failed = store.mark_failed(self.db, job.id, f"no workunit could be made for this job: {reason}",
                                       int(time.time()))
        if failed:
            log.error("%s: %s", EVENT_JOB_REFUSED, reason)


if __name__ == "__main__":
    sys.exit(main_for(WorkGenerator))
