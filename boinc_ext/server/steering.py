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
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from ..db import Database

ACTIVE_HOST_WINDOW = 86400     # a host that called within a day counts as active
COUNT_REFRESH_SECONDS = 30.0


@dataclass(frozen=True)
class SteeringPolicy:
    idle_rpc_budget: float = 10.0    # requests/s the server spends on polling
    min_delay: float = 5.0
    max_delay: float = 4 * 3600.0

    @classmethod
    def from_config(cls, config) -> "SteeringPolicy":
        return cls(idle_rpc_budget=max(config.option_float("ext_idle_rpc_budget", 10.0), 0.01),
                   min_delay=max(config.option_float("ext_min_rpc_delay", 5.0), 1.0),
                   max_delay=max(config.option_float("ext_max_rpc_delay", 4 * 3600.0), 1.0))

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
