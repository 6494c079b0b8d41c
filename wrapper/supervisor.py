"""Watching R run: driver messages, the client's control requests, status every second."""
from __future__ import annotations

import enum
import logging
import os
import time
from dataclasses import dataclass

from . import events
from .client_session import ControlRequest
from .r_process import DriverMessage, RProcess, killed_by

log = logging.getLogger("wrapper.supervisor")

POLL_INTERVAL = 0.1  # the BOINC API's timer tick
STATUS_INTERVAL = 1.0
CHECKPOINT_LOG_INTERVAL = 300.0  # stderr_out keeps only its last 63 KB
PROGRESS_LOG_STEP = 0.1


class Outcome(enum.Enum):
    FINISHED = "finished"
    SCRIPT_FAILED = "script failed"
    R_KILLED = "R killed by a signal"
    QUIT = "quit"
    ABORTED = "aborted"
    CLIENT_GONE = "client gone"


@dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    detail: str = ""


class Supervisor:
    """Runs the loop between one R process and the client until one of them ends it."""

    def __init__(self, r: RProcess, session, *, wu_cpu_time: float, confined: bool,
                 clock=time.monotonic):
        self._r = r
        self._session = session
        self._wu_cpu_time = wu_cpu_time
        self._confined = confined
        self._clock = clock
        self.fraction_done: float | None = None
        self.checkpoint_cpu_time = wu_cpu_time
        self._finished = False
        self._suspended = False
        self._last_checkpoint_log = float("-inf")
        self._logged_progress_step = -1

    def cpu_time(self) -> float:
        """CPU time of the task so far, counting earlier runs up to their checkpoint."""
        own = os.times()
        return self._wu_cpu_time + self._r.cpu_seconds() + own.user + own.system

    def report_status(self, fraction_done: float | None = None) -> bool:
        fraction = self.fraction_done if fraction_done is None else fraction_done
        return self._session.report_status(self.cpu_time(), self.checkpoint_cpu_time, fraction)

    def run(self) -> RunResult:
        next_status = self._clock()
        while True:
            self._handle_messages(self._r.messages(POLL_INTERVAL))
            returncode = self._r.poll()
            if returncode is not None:
                self._handle_messages(self._r.messages(0))
                return self._exit_result(returncode)
            stop = self._handle_control(self._session.control_requests())
            if stop:
                return stop
            if self._clock() >= next_status:
                next_status = self._clock() + STATUS_INTERVAL
                gone = self._session.gone_reason()
                if gone:
                    log.warning(gone)
                    return RunResult(Outcome.CLIENT_GONE, gone)
                if not self._suspended:
                    self.report_status()

    # ---- what R says ----------------------------------------------------------------------

    def _handle_messages(self, messages: list[DriverMessage]) -> None:
        for message in messages:
            try:
                self._handle_message(message)
            except (ValueError, IndexError):
                log.warning("unreadable message from the R driver: %s %s", message.kind,
                            " ".join(message.fields))

    def _handle_message(self, message: DriverMessage) -> None:
        kind, fields = message.kind, message.fields
        if kind == "progress":
            self._on_progress(float(fields[0]))
        elif kind == "checkpoint":
            self._on_checkpoint(int(fields[0]), int(fields[1]))
        elif kind == "resumed":
            log.info("%s at expression %d, iteration %d", events.CHECKPOINT_RESTORED,
                     int(fields[0]), int(fields[1]))
        elif kind == "checkpoint_ignored":
            log.warning("%s: %s", events.CHECKPOINT_IGNORED, " ".join(fields))
        elif kind == "finished":
            self._finished = True
        else:
            raise ValueError(kind)

    def _on_progress(self, fraction: float) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(fraction)
        self.fraction_done = fraction
        step = int(fraction / PROGRESS_LOG_STEP + 1e-9)
        if step != self._logged_progress_step:
            self._logged_progress_step = step
            log.info("%s %.1f%%", events.PROGRESS, 100 * fraction)

    def _on_checkpoint(self, expression: int, iteration: int) -> None:
        self.checkpoint_cpu_time = self.cpu_time()
        now = self._clock()
        if now - self._last_checkpoint_log >= CHECKPOINT_LOG_INTERVAL:
            self._last_checkpoint_log = now
            log.info("%s at expression %d, iteration %d (cpu time %.1f s)", events.CHECKPOINT_SAVED,
                     expression, iteration, self.checkpoint_cpu_time)

    def _exit_result(self, returncode: int) -> RunResult:
        signum = killed_by(returncode, self._confined)
        if signum is not None:
            return RunResult(Outcome.R_KILLED, f"R was killed by signal {signum}")
        if returncode != 0:
            return RunResult(Outcome.SCRIPT_FAILED, f"R exited with status {returncode}")
        if not self._finished:
            return RunResult(Outcome.SCRIPT_FAILED,
                             "R exited before the script finished (did the script call quit()?)")
        return RunResult(Outcome.FINISHED)

    # ---- what the client asks -------------------------------------------------------------

    def _handle_control(self, requests: list[ControlRequest]) -> RunResult | None:
        for request in requests:
            if request is ControlRequest.QUIT:
                self._r.kill()
                log.info(events.QUIT)
                return RunResult(Outcome.QUIT)
            if request is ControlRequest.ABORT:
                self._r.kill()
                log.info(events.ABORTED)
                return RunResult(Outcome.ABORTED)
            if request is ControlRequest.SUSPEND and not self._suspended:
                self._r.suspend()
                self._suspended = True
                log.info(events.SUSPENDED)
            elif request is ControlRequest.RESUME and self._suspended:
                self._r.resume()
                self._suspended = False
                log.info(events.CONTINUED)
        return None
