"""Ending a task the way the client understands (api/boinc_api.cpp, client/app_control.cpp).

Success is exit 0 *with* `boinc_finish_called`; exit 0 without it makes the client restart
the task; `boinc_temporary_exit` plus exit 0 restarts it after a delay; anything else fails.
"""
from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import SlotBusy

FINISH_FILE = "boinc_finish_called"
TEMPORARY_EXIT_FILE = "boinc_temporary_exit"
LOCK_FILE = "boinc_lockfile"

EXIT_SUCCESS = 0
EXIT_FAILURE = 1
EXIT_ABORTED_BY_CLIENT = 194  # BOINC's EXIT_ABORTED_BY_CLIENT
TEMPORARY_EXIT_DELAY = 60  # seconds before the client restarts us
STATUS_READ_WAIT = 2.0  # boinc_finish gives the client this long to see the last status
LOCK_WAIT = 5.0


def write_finish_file(slot: Path, status: int = 0) -> None:
    _write_synced(slot / FINISH_FILE, f"{status}\n")


def write_temporary_exit_file(slot: Path, reason: str, delay: int = TEMPORARY_EXIT_DELAY) -> None:
    _write_synced(slot / TEMPORARY_EXIT_FILE, f"{delay}\n{reason.splitlines()[0] if reason else ''}\n")


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


@contextmanager
def slot_lock(slot: Path) -> Iterator[None]:
    """Holds `boinc_lockfile`, as boinc_init does, so two instances never share a slot."""
    fd = os.open(slot / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not wait_until(lambda: _try_lock(fd), LOCK_WAIT, 0.2):
            raise SlotBusy(f"{slot / LOCK_FILE} is held by another process")
        yield
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
