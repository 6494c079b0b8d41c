"""The r_job app's templates under the project's `templates/`.

The output template is fixed (`templates/r_job_out`: result.rds validated, stdout.txt
`<no_validate/>`). Input templates depend on the number of data files
(`templates/r_job_in_<n>`: script.R plus n data files, all `<no_delete/>` because the
content-addressed inputs are shared between jobs and owned by the job store). The data
files' open names differ per job, so the work generator gives each workunit its own open
names (WorkunitRequest.open_names); the `data_<i>` open names on disk are placeholders.
Files are written once, atomically, and never rewritten: an admin may add elements (e.g.
`<sticky/>`), which every workunit then carries; the resource bounds and replication limits
are set per job (sizing.py) and override the template's.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from lxml import etree

from ..config import ProjectConfig
from .model import RESULT_NAME, SCRIPT_NAME, STDOUT_NAME
from .sizing import RESULT_MAX_NBYTES, STDOUT_MAX_NBYTES, workunit_params

TEMPLATES_DIR = "templates"
OUTPUT_TEMPLATE = f"{TEMPLATES_DIR}/r_job_out"
_INPUT_TEMPLATE = f"{TEMPLATES_DIR}/r_job_in_{{}}"


def input_template_file(n_data: int) -> str:
    """The input template's path relative to the project directory."""
    return _INPUT_TEMPLATE.format(int(n_data))


def install_r_job_templates(config: ProjectConfig) -> None:
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
