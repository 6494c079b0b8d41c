"""Where the wrapper keeps its files in the slot, and moving files in and out of it.

Everything of ours lives in `.r_job/` (a name no logical name can take): the R driver, the
checkpoint, the outputs as R writes them, and `work/`, R's working directory, where each
input appears under its logical name as a symlink to the file the client resolved.
"""
from __future__ import annotations

import os
import pkgutil
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import logical_names
from .errors import BadSlot

STATE_DIR = ".r_job"
SCRIPT_NAME = "script.R"
RESULT_NAME = "result.rds"
STDOUT_NAME = "stdout.txt"
OUTPUT_NAMES = (RESULT_NAME, STDOUT_NAME)
DRIVER_RESOURCE = "r_driver.R"


@dataclass(frozen=True)
class SlotLayout:
    slot: Path
    state_dir: Path
    work_dir: Path
    driver: Path
    checkpoint: Path
    result: Path
    stdout: Path
    temporary_exits: Path

    @classmethod
    def for_slot(cls, slot: Path) -> "SlotLayout":
        slot = Path(os.path.realpath(slot))
        state = slot / STATE_DIR
        return cls(slot=slot, state_dir=state, work_dir=state / "work", driver=state / "driver.R",
                   checkpoint=state / "checkpoint.rds", result=state / RESULT_NAME,
                   stdout=state / STDOUT_NAME, temporary_exits=state / "temporary_exits")

    def find_inputs(self, app_files: tuple[str, ...]) -> dict[str, Path]:
        """The task's inputs by logical name, resolved to absolute real paths."""
        exclude = {STATE_DIR, *OUTPUT_NAMES, *app_files}
        found = logical_names.discover_inputs(self.slot, exclude)
        inputs = {name: Path(os.path.realpath(path)) for name, path in found.items()}
        if SCRIPT_NAME not in inputs:
            raise BadSlot(f"input {SCRIPT_NAME} is missing from the slot {self.slot}")
        return inputs

    def prepare(self, inputs: dict[str, Path]) -> None:
        """Creates our directories, writes the R driver and links the inputs into work/."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.driver.write_bytes(pkgutil.get_data(__package__, DRIVER_RESOURCE))
        self.result.unlink(missing_ok=True)
        for name, target in inputs.items():
            _replace_with_symlink(self.work_dir / name, target)

    def copy_outputs(self) -> dict[str, Path]:
        """Copies R's outputs to where the client expects them (through the soft links)."""
        written = {}
        for name, source in ((RESULT_NAME, self.result), (STDOUT_NAME, self.stdout)):
            destination = logical_names.resolve(self.slot, name)
            shutil.copyfile(source, destination)
            written[name] = destination
        return written


def _replace_with_symlink(link: Path, target: Path) -> None:
    temporary = link.with_name(f".{link.name}.link")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target)
    os.replace(temporary, link)
