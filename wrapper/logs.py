"""The wrapper's log: timestamped lines on stderr, which the client returns as stderr_out."""
from __future__ import annotations

import logging
import sys

LOGGER_NAME = "wrapper"
_FORMAT = "%(asctime)s (%(process)d) r_job: %(message)s"
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

log = logging.getLogger(LOGGER_NAME)


def configure_logging() -> None:
    """Sends the wrapper's log to stderr once, however often it is called."""
    if any(getattr(h, "_r_job_handler", False) for h in log.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT, _DATE_FORMAT))
    handler._r_job_handler = True
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
