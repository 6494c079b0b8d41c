"""Logical file names in a slot: BOINC soft-link files, real symlinks or plain copies."""
from __future__ import annotations

import re
from pathlib import Path

_SOFT_LINK = re.compile(r"^<soft_link>(.*)</soft_link>\s*$")
# Open names of the r_job contract; a leading '.' is never one (our own state dir uses it).
LOGICAL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
# Files the client or the BOINC API keep in a slot: never inputs.
BOINC_SLOT_FILES = frozenset({
    "init_data.xml", "boinc_mmap_file", "stderr.txt", "boinc_lockfile", "boinc_finish_called",
    "boinc_temporary_exit", "boinc_task_state.xml",
})
_LINK_PEEK_BYTES = 4096


def resolve(slot: Path, name: str) -> Path:
    """The file a logical name stands for, as BOINC's boinc_resolve_filename finds it.

    A soft-link file's target is relative to the slot; anything else is the file itself.
    """
    path = slot / name
    try:
        with open(path, "rb") as f:
            first_line = f.read(_LINK_PEEK_BYTES).split(b"\n", 1)[0]
    except (FileNotFoundError, IsADirectoryError):
        return path
    match = _SOFT_LINK.match(first_line.decode("utf-8", "replace"))
    if not match:
        return path
    return slot / match.group(1).strip()


def discover_inputs(slot: Path, exclude: set[str]) -> dict[str, Path]:
    """Every logical name in the slot that resolves to an existing file, except `exclude`.

    The client links all of a workunit's inputs into the slot but tells the app nothing
    about them, so the slot's listing is the list of inputs.
    """
    inputs = {}
    for entry in sorted(slot.iterdir()):
        name = entry.name
        if name in exclude or name in BOINC_SLOT_FILES or not LOGICAL_NAME.match(name):
            continue
        target = resolve(slot, name)
        if target.is_file():
            inputs[name] = target
    return inputs
