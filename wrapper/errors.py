"""Why the wrapper could not finish a task: transient failures retry later, permanent ones fail it."""
from __future__ import annotations


class WrapperError(Exception):
    """A task the wrapper cannot complete now; the message says what and why."""


class PermanentError(WrapperError):
    """Retrying on this host cannot help (bad input, failing script): the result fails."""


class BadCommandLine(PermanentError):
    """The workunit's command line is not what the r_job contract allows."""


class BadSlot(PermanentError):
    """The slot lacks something the client should have put there (init_data.xml, script.R)."""


class TransientError(WrapperError):
    """Something on this host went wrong for now (disk full, slot busy, R killed): try again later."""


class SlotBusy(TransientError):
    """Another instance of the wrapper holds this slot's lock file."""


class RKilled(TransientError):
    """R was killed by a signal nobody in this wrapper sent (for example the OOM killer)."""


class StopSignal(BaseException):
    """The wrapper itself got SIGTERM, SIGINT or SIGHUP: unwind, stop R, then die of the signal."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum
