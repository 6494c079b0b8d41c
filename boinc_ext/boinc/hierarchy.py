"""BOINC's upload/download directory hierarchy and its `.md5` cache files.

Paths and URLs are those stock BOINC computes (sched/sched_util_basic.cpp), so a stock
scheduler, file deleter or client finds every file where it expects it.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

# Physical file names: what BOINC accepts and nothing that could leave the hierarchy.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
MAX_NAME_LENGTH = 191
_MD5_CHUNK = 1 << 20


class BadFileName(ValueError):
    """A file name that BOINC cannot store, or that could escape its directory."""


def check_file_name(name: str, what: str = "file name") -> str:
    if (not name or len(name) > MAX_NAME_LENGTH or ".." in name or not _SAFE_NAME.match(name)):
        raise BadFileName(f"{what} {name!r}: use letters, digits and _ . + - only "
                          f"(no '/', no '..', at most {MAX_NAME_LENGTH} characters)")
    return name


def subdir_for(name: str, fanout: int) -> str:
    """The hierarchy subdirectory of `name`: md5(name)[1:8] as a number, modulo fanout, in hex."""
    digest = hashlib.md5(name.encode()).hexdigest()
    return format(int(digest[1:8], 16) % fanout, "x")


def hier_path(name: str, root: Path, fanout: int) -> Path:
    if fanout <= 0:
        return root / name
    return root / subdir_for(name, fanout) / name


def hier_url(name: str, base_url: str, fanout: int) -> str:
    base_url = base_url.rstrip("/")
    if fanout <= 0:
        return f"{base_url}/{name}"
    return f"{base_url}/{subdir_for(name, fanout)}/{name}"


def md5_file(path: Path) -> tuple[str, int]:
    """(lowercase md5 hex, size in bytes) of a file."""
    digest = hashlib.md5()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_MD5_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def copy_with_md5(source: str | Path, target: str | Path) -> tuple[str, int]:
    """Copies `source` to `target` (created, never overwritten) and returns (md5, size)
    from the same single read of the source."""
    digest = hashlib.md5()
    size = 0
    with open(source, "rb") as src, open(target, "xb") as dst:
        while chunk := src.read(_MD5_CHUNK):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def md5_cache_path(path: Path) -> Path:
    return path.with_name(path.name + ".md5")


def write_md5_info(path: Path, md5: str, nbytes: int) -> None:
    """Writes `<path>.md5` as "md5 size\\n" (the PHP form: an integer size)."""
    md5_cache_path(path).write_text(f"{md5} {nbytes}\n")


def read_md5_info(path: Path | str) -> tuple[str, int] | None:
    """The cached (md5, size) of `path`, if the .md5 file exists and is newer than the file."""
    cache = f"{path}.md5"
    try:
        if os.stat(cache).st_mtime < os.stat(path).st_mtime:
            return None
        with open(cache) as f:
            fields = f.read().split()
    except OSError:
        return None
    if len(fields) != 2 or not re.fullmatch(r"[0-9a-f]{32}", fields[0]):
        return None
    try:
        return fields[0], int(float(fields[1]))
    except ValueError:
        return None
