"""How soon each client should call again: the server's lever on turnaround and load.

A BOINC client asks for work on its own only every few minutes once a reply had none, but
it honours `<next_rpc_delay>`. We always send one, sized so that all active hosts polling
together stay within a budget of requests per second: with few hosts they come back within
seconds (new jobs start quickly), with many the interval grows and the server is not
flooded.

The floor is the client's: it looks at its RPC timers only every 5 s (client_state.h
SCHEDULER_RPC_POLL_PERIOD), counted from the end of its last RPC, and an RPC takes it about
2 s (it acts in 1 s steps). So an idle client calls about every 7 s whatever shorter delay
it gets; min_delay 5 is that floor (a shorter delay gains nothing), and a new job waits
about 4 s on average for the call that fetches it (measured by bench/turnaround.py).

The other lever is the work hold: a request that asks for work when none can be sent yet but
some is on its way (the work generator or transitioner is about to create it) is kept open
for a few seconds and served as soon as the work exists, instead of leaving the job to wait a
whole client cycle. Few requests are held at once, so the server's threads stay free.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from boinc_ext.boinc.db import Database

ACTIVE_HOST_WINDOW = 86400     # a host that called within a day counts as active
COUNT_REFRESH_SECONDS = 30.0
DEFAULT_HOLD_SECONDS = 4.0
HOLD_POLL_SECONDS = 0.25
DEFAULT_MAX_HELD = 6           # serve.py sets it to its thread count less a margin


@dataclass(frozen=True)
class SteeringPolicy:
    idle_rpc_budget: float = 10.0    # requests/s the server spends on polling
    min_delay: float = 5.0
    max_delay: float = 4 * 3600.0

    @classmethod
    def from_config(cls, config) -> "SteeringPolicy":
        return cls(idle_rpc_budget=config.option_float("ext_idle_rpc_budget", 10.0, minimum=0.01),
                   min_delay=config.option_float("ext_min_rpc_delay", 5.0, minimum=1.0),
                   max_delay=config.option_float("ext_max_rpc_delay", 4 * 3600.0, minimum=1.0))

    def next_rpc_delay(self, active_hosts: int) -> float:
        return min(max(active_hosts / self.idle_rpc_budget, self.min_delay), self.max_delay)


class ActiveHostCounter:
    """The number of active hosts, counted at most every COUNT_REFRESH_SECONDS."""

    def __init__(self):
        self._lock = threading.Lock()
        self._count = 0
        self._counted_at = float("-inf")

    def count(self, db: Database) -> int:
        if time.monotonic() - self._counted_at >= COUNT_REFRESH_SECONDS:
            with self._lock:
                self._count = int(db.scalar("select count(*) from host where rpc_time > %s",
                                            (int(time.time()) - ACTIVE_HOST_WINDOW,)))
                self._counted_at = time.monotonic()
        return self._count


class WorkHold:
    """Keeps work requests open while their work is on its way, within bounds: at most
    `seconds` each, at most `max_held` at once (the rest reply at once), and none after stop()."""

    def __init__(self, seconds: float = DEFAULT_HOLD_SECONDS, max_held: int = DEFAULT_MAX_HELD,
                 poll_seconds: float = HOLD_POLL_SECONDS):
        self.seconds = seconds
        self.max_held = max_held
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._held = 0
        self._stopped = threading.Event()

    @classmethod
    def from_config(cls, config) -> WorkHold:
        return cls(seconds=config.option_float("ext_work_hold_seconds", DEFAULT_HOLD_SECONDS, minimum=0.0))

    @property
    def held(self) -> int:
        return self._held

    def wait(self, try_send: Callable[[], bool], work_on_the_way: Callable[[], bool]) -> float | None:
        """Calls try_send every poll until it sends, the work is no longer on its way, the time
        is up or the hold is stopped; returns the seconds held, None if it did not hold."""
        if self.seconds <= 0 or not self._enter():
            return None
        try:
            if not work_on_the_way():
                return None
            started = time.monotonic()
            deadline = started + self.seconds
            while not self._stopped.wait(min(self.poll_seconds, max(deadline - time.monotonic(), 0))):
                if try_send() or time.monotonic() >= deadline or not work_on_the_way():
                    break
            return time.monotonic() - started
        finally:
            self._leave()

    def stop(self) -> None:
        """Ends every hold now and refuses new ones (at server shutdown)."""
        self._stopped.set()

    def _enter(self) -> bool:
        with self._lock:
            if self._held >= self.max_held or self._stopped.is_set():
                return False
            self._held += 1
            return True

    def _leave(self) -> None:
        with self._lock:
            self._held -= 1
