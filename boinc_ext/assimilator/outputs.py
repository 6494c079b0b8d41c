"""A result's output files: open names mapped to their paths in the upload hierarchy.

The names come from the result's xml_doc_in (its `<file_info>` names and `<result>`'s
`<file_ref>`s), as stock BOINC's validator and assimilator read them, and are checked as
safe file names before any path is built from them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import ProjectConfig
from ..hierarchy import BadFileName, check_file_name, hier_path
from ..xmlutil import XmlError, parse_fragment


class OutputListError(ValueError):
    """A result's xml_doc_in does not describe its output files usably."""


def output_files(config: ProjectConfig, result: dict[str, Any]) -> dict[str, Path]:
    """{open name: path in the upload hierarchy} of `result`'s outputs."""
    what = f"result {result['name']} xml_doc_in"
    xml = result["xml_doc_in"]
    if isinstance(xml, bytes):
        xml = xml.decode("utf-8", errors="replace")
    try:
        elements = parse_fragment(xml or "", what)
    except XmlError as exc:
        raise OutputListError(str(exc)) from None
    infos = {(e.findtext("name") or "").strip() for e in elements if e.tag == "file_info"}
    outputs: dict[str, Path] = {}
    for result_element in (e for e in elements if e.tag == "result"):
        for ref in result_element.findall("file_ref"):
            file_name = (ref.findtext("file_name") or "").strip()
            open_name = (ref.findtext("open_name") or "").strip() or file_name
            if file_name not in infos:
                raise OutputListError(f"{what}: <file_ref> names {file_name!r}, which has no <file_info>")
            try:
                check_file_name(file_name, f"{what}: output file name")
                check_file_name(open_name, f"{what}: output open name")
            except BadFileName as exc:
                raise OutputListError(str(exc)) from None
            outputs[open_name] = hier_path(file_name, config.upload_dir, config.uldl_dir_fanout)
    return outputs
