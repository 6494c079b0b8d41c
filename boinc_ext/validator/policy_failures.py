"""What an unexpected exception from a policy does (a bug in a built-in policy or in a
project's own `module:Class` policy, or outputs it cannot cope with): never a poison pill.

The exception ends only that workunit's attempt, logged with its traceback; the rest of
the batch goes on, and the workunit keeps need_validate, so the next pass tries it
again. Attempts are counted in memory per workunit id (a restarted daemon starts again
from zero). The ATTEMPTS-th attempt runs guarded: an unexpected exception is then taken
as stock takes a project hook's non-transient error code (sched/validate_util2.cpp):
from prepare (stock init_result) the result gets outcome VALIDATE_ERROR and
validate_state INVALID; from same (stock compare_results) the two results do not agree
(a late result against the canonical one becomes INVALID). The workunit is then decided
as usual and its need_validate cleared.

Transient failures (TransientValidationError) are not counted here: they keep the
deferred retry of decision.py.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from boinc_ext.validator import events
from boinc_ext.validator.errors import PermanentValidationError, ValidationError

ATTEMPTS = 3  # the last one marks the results the policy fails on


class PolicyFailures:
    """Unexpected policy failures, counted per workunit id."""

    def __init__(self, attempts: int = ATTEMPTS):
        self.attempts = attempts
        self._failures: dict[int, int] = {}

    def is_last_attempt(self, wu_id: int) -> bool:
        return self._failures.get(wu_id, 0) + 1 >= self.attempts

    def failed(self, wu_id: int) -> int:
        """Counts one more failure; returns how many so far."""
        self._failures[wu_id] = self._failures.get(wu_id, 0) + 1
        return self._failures[wu_id]

    def forget(self, wu_id: int) -> None:
        self._failures.pop(wu_id, None)


def guarded(call: Callable[..., Any], log: logging.LoggerAdapter, what: Callable[..., str]) -> Callable[..., Any]:
    """`call`, with an unexpected exception logged (with its traceback) and turned into a
    PermanentValidationError; `what(*args)` names what failed in the log line."""
    def guarded_call(*args: Any) -> Any:
        try:
            return call(*args)
        except ValidationError:
            raise
        except Exception as exc:
            log.exception("%s on %s (last attempt): taken as a permanent error", events.POLICY_FAILED, what(*args))
            raise PermanentValidationError(f"policy failed: {type(exc).__name__}: {exc}") from exc
    return guarded_call
