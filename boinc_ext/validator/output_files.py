"""Where the files to validate for a result are: its output file_refs (result_files), minus
`<no_validate/>` ones, located in the upload hierarchy and checked to be there."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.boinc.hierarchy import subdir_for
from boinc_ext.boinc.result_files import FileRef, ResultFilesError, parse_file_refs
from boinc_ext.validator.errors import (
    PermanentValidationError,
    TransientValidationError,
    classify_os_error,
)


@dataclass(frozen=True)
class OutputFile:
    """An output file to compare. `present` is False only for a missing optional file."""

    file_name: str
    open_name: str
    path: str | Path
    present: bool = True


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
        try:
            refs = parse_file_refs(xml_doc_in, result_name)
        except ResultFilesError as exc:
            raise PermanentValidationError(str(exc)) from None
        return [self._locate(ref, result_name) for ref in refs if not ref.no_validate]

    def _check_upload_dir(self) -> None:
        """Opening the directory is what fails on a dead mount (stock's ERR_OPENDIR); listing
        it would read all its fan-out entries for every result."""
        try:
            os.close(os.open(self.upload_dir, os.O_RDONLY | os.O_DIRECTORY))
        except OSError as exc:
            raise TransientValidationError(f"upload directory {self.upload_dir}: "
                                           f"{exc.strerror or exc}") from None

    def _locate(self, ref: FileRef, result_name: str) -> OutputFile:
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
