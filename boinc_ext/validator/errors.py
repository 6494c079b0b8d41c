"""The validator's failures, split as stock BOINC's hooks split them.

A transient failure (an unreadable upload directory, a failed mount, an I/O error) means
"try this workunit again later"; a permanent one means the result's outputs are missing
or malformed, and the result gets outcome VALIDATE_ERROR.
"""
from __future__ import annotations

import errno


class ValidationError(Exception):
    """A result's outputs could not be checked."""


class TransientValidationError(ValidationError):
    """Retry later: nothing is wrong with the result itself."""


class PermanentValidationError(ValidationError):
    """The result's outputs are missing or malformed: it can never be valid."""


class PolicyConfigError(ValueError):
    """A policy name or policy option is unknown or has a bad value."""


# A file that is not there (or not a file) is the result's fault; anything else
# (permissions, I/O errors, stale mounts) is the server's and may heal.
_PERMANENT_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG}


def classify_os_error(exc: OSError, what: str) -> ValidationError:
    """The validation error an OSError on a result's output file stands for."""
    message = f"{what}: {exc.strerror or exc}"
    if exc.errno in _PERMANENT_ERRNOS:
        return PermanentValidationError(message)
    return TransientValidationError(message)
