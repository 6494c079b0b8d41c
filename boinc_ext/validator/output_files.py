"""Where a result's output files are: its xml_doc_in `<file_ref>`s, through the upload hierarchy.

Each `<result><file_ref>` names a `<file_info>` of the same document (file_name), the name
the app wrote it under (open_name), and whether it may be missing (`<optional/>`) or is
not compared at all (`<no_validate/>`). Physical names are checked before they become
paths, so that nothing a volunteer influences can leave the upload directory.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..config import ProjectConfig
from ..hierarchy import BadFileName, check_file_name, subdir_for
from ..xmlutil import XmlError, child_text, flag, parse_fragment
from .errors import (
    PermanentValidationError,
    TransientValidationError,
    classify_os_error,
)


@dataclass(frozen=True)
class FileRef:
    """One `<file_ref>` of a result's xml_doc_in."""

    file_name: str
    open_name: str
    optional: bool = False
    no_validate: bool = False


@dataclass(frozen=True)
class OutputFile:
    """An output file to compare. `present` is False only for a missing optional file."""

    file_name: str
    open_name: str
    path: str | Path
    present: bool = True


def parse_file_refs(xml_doc_in: bytes | str, result_name: str) -> list[FileRef]:
    """The output file_refs of a result, in document order; malformed input is permanent."""
    what = f"result {result_name} xml_doc_in"
    text = xml_doc_in.decode("utf-8", "replace") if isinstance(xml_doc_in, bytes) else xml_doc_in
    try:
        elements = parse_fragment(text, what)
    except XmlError as exc:
        raise PermanentValidationError(str(exc)) from None
    info_names = {child_text(e, "name") for e in elements if e.tag == "file_info"}
    refs = []
    for result in (e for e in elements if e.tag == "result"):
        for element in result.findall("file_ref"):
            file_name = child_text(element, "file_name") or ""
            if file_name not in info_names:
                raise PermanentValidationError(f"{what}: <file_ref> names {file_name!r}, which no "
                                               f"<file_info> describes")
            refs.append(FileRef(file_name, child_text(element, "open_name") or file_name,
                                flag(element, "optional"), flag(element, "no_validate")))
    return refs


class OutputLocator:
    """Finds the files to validate for a result in the project's upload hierarchy."""

    def __init__(self, upload_dir: Path, fanout: int):
        self.upload_dir = Path(upload_dir)
        self.fanout = fanout
        self._root = str(upload_dir)

    @classmethod
    def for_project(cls, config: ProjectConfig) -> OutputLocator:
        return cls(config.upload_dir, config.uldl_dir_fanout)

    def files_to_validate(self, xml_doc_in: bytes | str, result_name: str) -> list[OutputFile]:
        """The result's outputs minus `<no_validate/>` ones. A missing required file is a
        PermanentValidationError; an unreachable upload directory a TransientValidationError."""
        self._check_upload_dir()
        files = []
        for ref in parse_file_refs(xml_doc_in, result_name):
            if ref.no_validate:
                continue
            files.append(self._locate(ref, result_name))
        return files

    def _check_upload_dir(self) -> None:
        """Opening the directory is what fails on a dead mount (stock's ERR_OPENDIR); listing
        it would read all its fan-out entries for every result."""
        try:
            os.close(os.open(self.upload_dir, os.O_RDONLY | os.O_DIRECTORY))
        except OSError as exc:
            raise TransientValidationError(f"upload directory {self.upload_dir}: "
                                           f"{exc.strerror or exc}") from None

    def _locate(self, ref: FileRef, result_name: str) -> OutputFile:
        try:
            check_file_name(ref.file_name, f"result {result_name}: output file name")
        except BadFileName as exc:
            raise PermanentValidationError(str(exc)) from None
        path = self._path(ref.file_name)
        what = f"result {result_name}: output {ref.open_name} ({path})"
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            error = classify_os_error(exc, what)
            if ref.optional and isinstance(error, PermanentValidationError):
                return OutputFile(ref.file_name, ref.open_name, path, present=False)
            raise error from None
        if not stat.S_ISREG(mode):
            raise PermanentValidationError(f"{what}: not a regular file")
        return OutputFile(ref.file_name, ref.open_name, path)

    def _path(self, file_name: str) -> str:
        """hierarchy.hier_path, as a plain string (this runs for every output of every result)."""
        if self.fanout <= 0:
            return os.path.join(self._root, file_name)
        return os.path.join(self._root, subdir_for(file_name, self.fanout), file_name)
