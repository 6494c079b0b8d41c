"""The two-stage stop every long-running process of ours shares (daemons and the embedded server).

The first SIGTERM/SIGINT/SIGHUP, or the project's `stop_daemons` file, asks for a stop at
the next check; a second signal raises `DaemonAborted` wherever the process is, so the
open transaction rolls back; any further one kills the process outright.
"""
from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Any

EVENT_STOPPING = "daemon stopping"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOP_FILE_POLL = 1.0  # seconds between looks for the stop_daemons file while sleeping


class DaemonAborted(BaseException):
    """A second stop signal: leave at once, rolling back the open transaction."""

    def __init__(self, signum: int):
        super().__init__(f"second stop signal ({signal.Signals(signum).name})")
        self.signum = signum


class StopControl:
    """The two-stage stop of every long-running process of ours.

    `install()` takes SIGTERM/SIGINT/SIGHUP (from the main thread; elsewhere the caller
    handles signals). `should_stop()` is True once a first signal arrived or `stop_file`
    exists, logging why once. A second signal raises DaemonAborted in the main thread,
    and any further one kills the process outright.
    """

    def __init__(self, stop_file: Path | None, log: logging.Logger):
        self.stop_file = stop_file
        self.log = log
        self.reason: str | None = None
        self._signum: int | None = None
        self._saved: dict[int, Any] = {}

    def install(self) -> None:
        try:
            for sig in STOP_SIGNALS:
                self._saved[sig] = signal.signal(sig, self._on_signal)
        except ValueError:  # not the main thread: the caller handles signals
            self.restore()

    def restore(self) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._saved.clear()

    def should_stop(self) -> bool:
        if self.reason is None:
            if self._signum is not None:
                self.reason = f"got {signal.Signals(self._signum).name}"
            elif self.stop_file is not None and self.stop_file.exists():
                self.reason = f"trigger file {self.stop_file} is present"
            else:
                return False
            self.log.info("%s: %s", EVENT_STOPPING, self.reason)
        return True

    def sleep(self, seconds: float) -> None:
        """Sleeps `seconds`, or less when told to stop (a signal cuts a short nap short)."""
        deadline = time.monotonic() + seconds
        while not self.should_stop():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(STOP_FILE_POLL, remaining))

    def _on_signal(self, signum: int, frame) -> None:
        if self._signum is None:
            self._signum = signum  # logged at the next should_stop()
            return
        # From here on a further signal kills the process outright.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        raise DaemonAborted(signum)
