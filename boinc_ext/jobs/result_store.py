"""The job store's files: `<project>/jobs/<id>/result/<open name>`.

Files land whole or not at all (copy to a temporary name in the same directory, then
rename), so a copy repeated after a crash simply replaces the file with the same bytes.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.boinc.hierarchy import check_file_name

JOBS_DIR = "jobs"
RESULT_DIR = "result"


def job_dir(config: ProjectConfig, job_id: int) -> Path:
    return config.project_dir / JOBS_DIR / str(int(job_id))


def result_dir(config: ProjectConfig, job_id: int) -> Path:
    return job_dir(config, job_id) / RESULT_DIR


def result_path(config: ProjectConfig, job_id: int, open_name: str) -> Path:
    return result_dir(config, job_id) / check_file_name(open_name, "result file name")


def copy_atomically(source: Path, target: Path) -> None:
    """Copies `source` to `target`, replacing it; a reader never sees half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
