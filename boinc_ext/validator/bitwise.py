"""The bitwise policy: outputs agree when every validated file has the same bytes.

Each file is hashed once per workunit (SHA-256, keyed by open name). A missing optional
file is recorded as absent, which matches only another absent file, never an empty one.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from boinc_ext.validator.errors import classify_os_error
from boinc_ext.validator.output_files import OutputFile
from boinc_ext.validator.policy import ValidationPolicy


def file_digest(path: Path, what: str) -> str:
    """SHA-256 hex of a file; read errors are classified transient or permanent."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise classify_os_error(exc, what) from None


def digests(files: Sequence[OutputFile]) -> dict[str, str | None]:
    return {f.open_name: file_digest(f.path, f"output {f.open_name} ({f.path})") if f.present else None
            for f in files}


class BitwisePolicy(ValidationPolicy):
    name = "bitwise"

    def prepare(self, files: Sequence[OutputFile]) -> dict[str, str | None]:
        return digests(files)

    def same(self, a: dict[str, str | None], b: dict[str, str | None]) -> bool:
        return a == b
