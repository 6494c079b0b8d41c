"""Building the wrapper as one executable zipapp: `python -m wrapper.build DEST_DIR`.

The archive is deterministic (sorted entries, fixed timestamps and modes, no compression),
so the same sources always give the same bytes, hence the same md5 and signature. Entries
are stored uncompressed so that the `API_VERSION_x.y.z` marker in __main__.py can be read
from the file's bytes (`boinc-ext project add-version` sets <api_version> from it).
"""
from __future__ import annotations

import hashlib
import io
import os
import sys
import zipapp
import zipfile
from pathlib import Path

from . import API_VERSION, WRAPPER_VERSION

INTERPRETER = "/usr/bin/env python3"
PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_SUFFIXES = (".py", ".R")
NOT_SHIPPED = {"build.py", "__main__.py"}  # __main__.py of the archive is generated below
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644

MAIN_PROGRAM = f"""\
# r_job wrapper {WRAPPER_VERSION} for BOINC.
# BOINC app API marker, read by `boinc-ext project add-version`: API_VERSION_{API_VERSION}
import sys

from wrapper.main import main

sys.exit(main())
"""


def archive_name(archive: bytes) -> str:
    """`r_job_wrapper_<version>_<md5 prefix>.pyz`: a new name for every new content."""
    return f"r_job_wrapper_{WRAPPER_VERSION}_{hashlib.md5(archive).hexdigest()[:8]}.pyz"


def shipped_files() -> list[tuple[str, Path]]:
    """(name in the archive, source path) of every module and resource the wrapper needs."""
    files = []
    for path in sorted(PACKAGE_DIR.rglob("*")):
        relative = path.relative_to(PACKAGE_DIR)
        if "__pycache__" in relative.parts or not path.is_file():
            continue
        if path.suffix in SHIPPED_SUFFIXES and str(relative) not in NOT_SHIPPED:
            files.append((f"wrapper/{relative.as_posix()}", path))
    return files


def zip_bytes() -> bytes:
    """The archive without its shebang line."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        _add(archive, "__main__.py", MAIN_PROGRAM.encode())
        for name, path in shipped_files():
            _add(archive, name, path.read_bytes())
    return buffer.getvalue()


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = (0o100000 | FILE_MODE) << 16
    info.create_system = 3  # Unix, whatever the building host
    archive.writestr(info, data)


def build_zipapp(dest_dir: Path) -> Path:
    """Writes the executable wrapper into `dest_dir` and returns its path."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    payload = io.BytesIO(zip_bytes())
    target = io.BytesIO()
    zipapp.create_archive(payload, target, interpreter=INTERPRETER)
    data = target.getvalue()
    path = dest_dir / archive_name(data)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.chmod(temporary, 0o755)
    os.replace(temporary, path)
    return path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m wrapper.build DEST_DIR", file=sys.stderr)
        return 2
    print(build_zipapp(Path(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
