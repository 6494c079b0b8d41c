"""The `r_job` app: everything about it in one place.

* Its templates under the project's `templates/`. The output template is fixed
  (`templates/r_job_out`: result.rds validated, stdout.txt `<no_validate/>`). Input templates
  depend on the number of data files (`templates/r_job_in_<n>`: script.R plus n data files,
  all `<no_delete/>` because the content-addressed inputs are shared between jobs and owned
  by the job store). The data files' open names differ per job, so the work generator gives
  each workunit its own open names (WorkunitRequest.open_names); the `data_<i>` open names
  on disk are placeholders. Files are written once, atomically, and never rewritten: an
  admin may add elements (e.g. `<sticky/>`), which every workunit then carries; the
  resource bounds and replication limits are set per job (jobs/sizing.py) and override the
  template's.
* Its app version: the wrapper (a Python zipapp), signed. `install` is idempotent, so
  running it again after an upgrade installs only a wrapper version the project lacks.
* Its default validation policy: `rds` (outputs compared as R objects).
* Its assimilation handler: a valid workunit's canonical result files (result.rds, and
  stdout.txt when present) are copied into `<project>/jobs/<id>/result/` and the job
  becomes `done`; a failed workunit makes the job `failed`, with the error bits and the
  failed tasks' stderr (R's error message) as its error. Copies replace files atomically
  and the job update is guarded by the job's state, so running the handler again after a
  crash neither fails nor duplicates.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from lxml import etree

from boinc_ext.apps.spec import AppSpec
from boinc_ext.assimilator.context import AssimilationContext, AssimilationDeferred
from boinc_ext.assimilator.failure_report import failure_message
from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.boinc.db import Database
from boinc_ext.boinc.result_files import ResultFilesError, output_paths
from boinc_ext.jobs import store
from boinc_ext.jobs.model import RESULT_NAME, SCRIPT_NAME, STDOUT_NAME, TERMINAL_STATES, Job
from boinc_ext.jobs.result_store import copy_atomically, result_path
from boinc_ext.jobs.sizing import RESULT_MAX_NBYTES, STDOUT_MAX_NBYTES, workunit_params
from boinc_ext.project.app_versions import AppFile, add_app_version, parse_version_num
from wrapper import API_VERSION, WRAPPER_VERSION
from wrapper.build import build_zipapp


APP_NAME = "r_job"
VALIDATION_POLICY = "rds"

EVENT_JOB_DONE = "job done"
EVENT_JOB_FAILED = "job failed"
EVENT_NO_JOB = "no job for this workunit; nothing to store"
EVENT_ALREADY_FINISHED = "job already finished"


# --- version ------------------------------------------------------------------------------
def install(config: ProjectConfig) -> int | None:
    """Installs the wrapper as r_job's app version unless that version is there; returns
    the new app_version id, or None if nothing was installed."""
    install_templates(config)
    with Database.for_project(config) as db:
        present = db.scalar(
            "select count(*) from app_version av join app a on a.id = av.appid "
            "where a.name = %s and av.version_num = %s and av.plan_class = ''",
            (APP_NAME, parse_version_num(WRAPPER_VERSION)))
    if present:
        return None
    with tempfile.TemporaryDirectory(prefix="r_job_wrapper-") as tmp:
        program = build_zipapp(Path(tmp))
        return add_app_version(config, APP_NAME, WRAPPER_VERSION, [AppFile(program, main_program=True)],
                               api_version=API_VERSION)


# --- templates ----------------------------------------------------------------------------
TEMPLATES_DIR = "templates"
OUTPUT_TEMPLATE = f"{TEMPLATES_DIR}/r_job_out"
_INPUT_TEMPLATE = f"{TEMPLATES_DIR}/r_job_in_{{}}"


def input_template_file(n_data: int) -> str:
    """The input template's path relative to the project directory."""
    return _INPUT_TEMPLATE.format(int(n_data))


def install_templates(config: ProjectConfig) -> None:
    """Writes templates/r_job_out and templates/r_job_in_0 where missing (idempotent)."""
    _write_once(config.project_dir / OUTPUT_TEMPLATE, output_template_text())
    ensure_input_template(config, 0)


def ensure_input_template(config: ProjectConfig, n_data: int) -> Path:
    path = config.project_dir / input_template_file(n_data)
    _write_once(path, input_template_text([f"data_{i}" for i in range(1, n_data + 1)]))
    return path


def input_template_text(data_names: Sequence[str]) -> str:
    root = etree.Element("input_template")
    for _ in range(1 + len(data_names)):
        etree.SubElement(etree.SubElement(root, "file_info"), "no_delete")
    workunit = etree.SubElement(root, "workunit")
    for open_name in (SCRIPT_NAME, *data_names):
        etree.SubElement(etree.SubElement(workunit, "file_ref"), "open_name").text = open_name
    for name, value in workunit_params(replication=1, delay_bound=7 * 86400, input_bytes=0).items():
        etree.SubElement(workunit, name).text = _number(value)
    return _text(root)


def output_template_text() -> str:
    # Written out rather than built: the <OUTFILE_n/> macros must sit inline in <name> and
    # <file_name>, since they become the file names verbatim.
    return _OUTPUT_TEMPLATE.format(result_name=RESULT_NAME, result_max=RESULT_MAX_NBYTES,
                                   stdout_name=STDOUT_NAME, stdout_max=STDOUT_MAX_NBYTES)


# <copy_file/>: the client copies the slot's file back whether or not the app resolved the name.
_OUTPUT_TEMPLATE = """<output_template>
    <file_info>
        <name><OUTFILE_0/></name>
        <generated_locally/>
        <upload_when_present/>
        <max_nbytes>{result_max}</max_nbytes>
        <url><UPLOAD_URL/></url>
    </file_info>
    <file_info>
        <name><OUTFILE_1/></name>
        <generated_locally/>
        <upload_when_present/>
        <max_nbytes>{stdout_max}</max_nbytes>
        <url><UPLOAD_URL/></url>
    </file_info>
    <result>
        <file_ref>
            <file_name><OUTFILE_0/></file_name>
            <open_name>{result_name}</open_name>
            <copy_file/>
        </file_ref>
        <file_ref>
            <file_name><OUTFILE_1/></file_name>
            <open_name>{stdout_name}</open_name>
            <copy_file/>
            <no_validate/>
        </file_ref>
    </result>
</output_template>
"""


def _number(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _text(root: etree._Element) -> str:
    etree.indent(root, space="    ")
    return etree.tostring(root, encoding="unicode") + "\n"


def _write_once(path: Path, text: str) -> None:
    """Creates `path` with `text` unless it exists; concurrent writers race harmlessly."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# --- assimilation -------------------------------------------------------------------------
def assimilate(ctx: AssimilationContext) -> None:
    job = store.job_for_workunit(ctx.db, ctx.wu["id"], ctx.wu["name"], lock=True)
    if job is None:
        ctx.log.warning("%s", EVENT_NO_JOB)
        return
    if job.state in TERMINAL_STATES:
        ctx.log.info("%s: job %d (%s) is %s", EVENT_ALREADY_FINISHED, job.id, job.name, job.state)
        return
    if ctx.canonical is None:
        _fail(ctx, job, failure_message(ctx.wu, ctx.results))
        return
    try:
        outputs = output_paths(ctx.config, ctx.canonical)
    except ResultFilesError as exc:
        _fail(ctx, job, f"the valid result {ctx.canonical['name']} lists no usable output files: {exc}")
        return
    if not ctx.config.upload_dir.is_dir():
        raise AssimilationDeferred(f"upload directory {ctx.config.upload_dir} is missing (not mounted?)")
    source = outputs.get(RESULT_NAME)
    if source is None or not source.is_file():
        _fail(ctx, job, f"the valid result {ctx.canonical['name']} has no {RESULT_NAME} "
                        f"({source or 'not among its outputs'})")
        return
    _store(ctx, job, RESULT_NAME, source)
    stdout = outputs.get(STDOUT_NAME)
    if stdout is not None and stdout.is_file():
        _store(ctx, job, STDOUT_NAME, stdout)
    else:
        ctx.log.warning("job %d (%s): no %s in the valid result %s", job.id, job.name, STDOUT_NAME,
                        ctx.canonical["name"])
    store.mark_done(ctx.db, job.id, ctx.wu["id"], ctx.now)
    ctx.log.info("%s: job %d (%s), result of %s stored", EVENT_JOB_DONE, job.id, job.name,
                 ctx.canonical["name"])


def _store(ctx: AssimilationContext, job: Job, open_name: str, source: Path) -> None:
    try:
        copy_atomically(source, result_path(ctx.config, job.id, open_name))
    except OSError as exc:
        raise AssimilationDeferred(f"cannot copy {source} into the job store: {exc}") from None


def _fail(ctx: AssimilationContext, job: Job, message: str) -> None:
    store.mark_failed(ctx.db, job.id, message, ctx.now, workunit_id=ctx.wu["id"])
    ctx.log.warning("%s: job %d (%s): %s", EVENT_JOB_FAILED, job.id, job.name, message.splitlines()[0])


APP = AppSpec(name=APP_NAME, install=install, validation_policy=VALIDATION_POLICY, assimilate=assimilate)
