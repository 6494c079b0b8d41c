"""A result's output files, as its xml_doc_in lists them, and where they are uploaded.

Each `<result><file_ref>` names a `<file_info>` of the same document (file_name), the name
the app wrote it under (open_name), and whether it may be missing (`<optional/>`) or is
not compared at all (`<no_validate/>`); stock BOINC's validator and assimilator read them
the same way. Physical names are checked before they become paths, so that nothing can
lead outside the upload directory.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.boinc.hierarchy import BadFileName, check_file_name, hier_path
from boinc_ext.boinc.xmlutil import XmlError, child_text, flag, parse_fragment


class ResultFilesError(ValueError):
    """A result's xml_doc_in does not describe its output files usably."""


@dataclass(frozen=True)
class FileRef:
    """One `<file_ref>` of a result's xml_doc_in; file_name is a safe file name."""

    file_name: str
    open_name: str
    optional: bool = False
    no_validate: bool = False


def parse_file_refs(xml_doc_in: bytes | str | None, result_name: str) -> list[FileRef]:
    """The output file_refs of a result, in document order."""
    what = f"result {result_name} xml_doc_in"
    text = xml_doc_in.decode("utf-8", "replace") if isinstance(xml_doc_in, bytes) else xml_doc_in
    try:
        elements = parse_fragment(text or "", what)
    except XmlError as exc:
        raise ResultFilesError(str(exc)) from None
    info_names = {child_text(e, "name") for e in elements if e.tag == "file_info"}
    refs = []
    for result in (e for e in elements if e.tag == "result"):
        for element in result.findall("file_ref"):
            file_name = child_text(element, "file_name") or ""
            if file_name not in info_names:
                raise ResultFilesError(f"{what}: <file_ref> names {file_name!r}, which no "
                                       f"<file_info> describes")
            _check_name(file_name, f"{what}: output file name")
            refs.append(FileRef(file_name, child_text(element, "open_name") or file_name,
                                flag(element, "optional"), flag(element, "no_validate")))
    return refs


def output_paths(config: ProjectConfig, result: dict[str, Any]) -> dict[str, Path]:
    """{open name: path in the upload hierarchy} of `result`'s outputs; open names are
    checked too, as callers build paths from them."""
    paths = {}
    for ref in parse_file_refs(result["xml_doc_in"], result["name"]):
        _check_name(ref.open_name, f"result {result['name']} xml_doc_in: output open name")
        paths[ref.open_name] = hier_path(ref.file_name, config.upload_dir, config.uldl_dir_fanout)
    return paths


def _check_name(name: str, what: str) -> None:
    try:
        check_file_name(name, what)
    except BadFileName as exc:
        raise ResultFilesError(str(exc)) from None
