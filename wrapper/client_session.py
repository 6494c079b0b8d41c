"""The app's side of the BOINC app API: control requests, heartbeats and status reports.

`ClientSession` talks to a real client through `boinc_mmap_file`; `StandaloneSession` is
the same interface when there is no client (no init_data.xml).
"""
from __future__ import annotations

import enum
import os
import re
import time
from pathlib import Path

from . import events
from .errors import BadSlot
from .init_data import InitData
from .shmem import APP_STATUS, HEARTBEAT, MMAP_FILE, PROCESS_CONTROL_REQUEST, SharedMemory

# As the BOINC API: without a client pid, 30 s without a heartbeat means the client is gone.
HEARTBEAT_GIVEUP_SECONDS = 30.0


class ControlRequest(enum.Enum):
    SUSPEND = "suspend"
    RESUME = "resume"
    QUIT = "quit"
    ABORT = "abort"


def parse_control_message(text: str) -> list[ControlRequest]:
    """The requests in one process_control_request message, in the API's order of checks."""
    return [r for r in ControlRequest if re.search(rf"<{r.value}\s*/>", text)]


def format_status(cpu_time: float, checkpoint_cpu_time: float, fraction_done: float | None) -> str:
    text = (f"<current_cpu_time>{cpu_time:e}</current_cpu_time>\n"
            f"<checkpoint_cpu_time>{checkpoint_cpu_time:e}</checkpoint_cpu_time>\n"
            f"<want_network>0</want_network>\n")
    if fraction_done is not None:
        text += f"<fraction_done>{fraction_done:e}</fraction_done>\n"
    return text


class ClientSession:
    """One task's connection to the BOINC client that started it."""

    standalone = False

    def __init__(self, init: InitData, slot: Path, clock=time.monotonic):
        if not (slot / MMAP_FILE).is_file():
            raise BadSlot(f"no {MMAP_FILE} in {slot}: the app version needs <api_version> 6.0 or later")
        self._init = init
        self._shmem = SharedMemory(slot / MMAP_FILE)
        self._clock = clock
        self._last_heartbeat = clock()

    def close(self) -> None:
        self._shmem.close()

    def control_requests(self) -> list[ControlRequest]:
        """Takes pending control requests off the channel (and notes any heartbeat)."""
        if self._shmem.receive(HEARTBEAT) is not None:
            self._last_heartbeat = self._clock()
        message = self._shmem.receive(PROCESS_CONTROL_REQUEST)
        return parse_control_message(message) if message else []

    def gone_reason(self) -> str | None:
        """Why the client must be taken as gone (an event name), or None while it is alive."""
        pid = self._init.client_pid
        if pid > 0:
            return None if _process_exists(pid) else events.CLIENT_GONE
        if self._clock() - self._last_heartbeat > HEARTBEAT_GIVEUP_SECONDS:
            return events.NO_HEARTBEAT
        return None

    def report_status(self, cpu_time: float, checkpoint_cpu_time: float,
                      fraction_done: float | None) -> bool:
        """Sends app_status; False when the client has not read the previous one yet."""
        scaled = None if fraction_done is None else self._init.scaled_fraction(fraction_done)
        return self._shmem.send(APP_STATUS, format_status(cpu_time, checkpoint_cpu_time, scaled))

    def report_final_status(self, cpu_time: float, checkpoint_cpu_time: float) -> None:
        """Sends the last app_status (all done), replacing one the client has not read yet:
        only the newest status counts, so there is no waiting for the channel to empty."""
        done = self._init.scaled_fraction(1.0)
        self._shmem.replace(APP_STATUS, format_status(cpu_time, checkpoint_cpu_time, done))

    def status_read(self) -> bool:
        """True once the client has taken the last status message."""
        return not self._shmem.has_message(APP_STATUS)


class StandaloneSession:
    """No client: nothing to hear from, nobody to report to."""

    standalone = True

    def close(self) -> None:
        pass

    def control_requests(self) -> list[ControlRequest]:
        return []

    def gone_reason(self) -> str | None:
        return None

    def report_status(self, cpu_time: float, checkpoint_cpu_time: float,
                      fraction_done: float | None) -> bool:
        return True

    def report_final_status(self, cpu_time: float, checkpoint_cpu_time: float) -> None:
        pass

    def status_read(self) -> bool:
        return True


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
