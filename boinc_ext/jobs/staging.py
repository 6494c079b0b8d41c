"""Job inputs staged content-addressed into the download hierarchy.

Each input is first copied into a private snapshot directory inside download/ (one read
gives both the bytes and their md5, so the staged file is exactly what was hashed even if
the user's file changes meanwhile), renamed to `rjob_<md5>_<logical name>`, and then placed
by work.Stager, which puts it where stock BOINC looks, writes its `.md5` file, accepts an
identical file already there (another job's) and can undo what it created.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.boinc.hierarchy import copy_with_md5
from boinc_ext.boinc.work import Stager
from boinc_ext.jobs.model import JobFile, physical_name

_SNAPSHOT_PREFIX = ".rjob_incoming_"


@dataclass(frozen=True)
class JobInput:
    """An input as submitted: what the script calls it, and where it is now."""

    role: str
    logical_name: str
    source: Path


class InputStaging:
    """Stages a job's inputs; `rollback()` removes what this staging created, `commit()` keeps it."""

    def __init__(self, config: ProjectConfig):
        self.config = config
        self._stager = Stager(config, link=True)

    def stage(self, inputs: Sequence[JobInput]) -> list[JobFile]:
        self.config.download_dir.mkdir(parents=True, exist_ok=True)
        snapshots = Path(tempfile.mkdtemp(prefix=_SNAPSHOT_PREFIX, dir=self.config.download_dir))
        try:
            return [self._stage_one(item, snapshots) for item in inputs]
        finally:
            shutil.rmtree(snapshots, ignore_errors=True)

    def rollback(self) -> None:
        self._stager.rollback()

    def commit(self) -> None:
        self._stager.commit()

    def _stage_one(self, item: JobInput, snapshots: Path) -> JobFile:
        snapshot = snapshots / f"{item.logical_name}.part"
        md5, _ = copy_with_md5(item.source, snapshot)
        named = snapshot.rename(snapshots / physical_name(md5, item.logical_name))
        staged = self._stager.stage(named)
        return JobFile(item.role, item.logical_name, staged.name, staged.md5, staged.nbytes)
