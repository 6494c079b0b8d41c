"""Finding the canonical result, and checking late results against it (stock check_set and
check_pair), over results whose outputs are prepared once per workunit.

Nothing here touches the database: the caller turns the outcome into row updates.
"""
from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from boinc_ext.validator.errors import PermanentValidationError, TransientValidationError, ValidationError

Row = Mapping[str, Any]


class PreparedResults:
    """Each result's outputs prepared at most once; comparisons cached (same() is symmetric).

    Failures are recorded rather than raised: `permanent[id]` / `transient[id]` hold the
    error of a result that could not be prepared."""

    def __init__(self, prepare: Callable[[Row], Any], same: Callable[[Any, Any], bool],
                 release: Callable[[Any], None] = lambda handle: None):
        self._prepare = prepare
        self._same = same
        self._release = release
        self._handles: dict[int, Any] = {}
        self._answers: dict[frozenset, bool | None] = {}
        self.permanent: dict[int, ValidationError] = {}
        self.transient: dict[int, ValidationError] = {}
        self.notes: list[str] = []

    def load(self, result: Row) -> bool:
        """True if the result's outputs are ready to compare."""
        result_id = result["id"]
        if result_id in self._handles:
            return True
        if result_id in self.permanent or result_id in self.transient:
            return False
        try:
            self._handles[result_id] = self._prepare(result)
        except TransientValidationError as exc:
            self.transient[result_id] = exc
            return False
        except PermanentValidationError as exc:
            self.permanent[result_id] = exc
            return False
        return True

    def same(self, a: int, b: int) -> bool | None:
        """Whether two loaded results agree; None if the comparison failed transiently.
        A permanent failure to compare counts as disagreement."""
        key = frozenset((a, b))
        if key not in self._answers:
            try:
                self._answers[key] = bool(self._same(self._handles[a], self._handles[b]))
            except TransientValidationError as exc:
                self.notes.append(f"comparing results #{a} and #{b} failed transiently: {exc}")
                return None
            except PermanentValidationError as exc:
                self.notes.append(f"comparing results #{a} and #{b} failed: {exc}")
                self._answers[key] = False
        return self._answers[key]

    def release(self) -> None:
        for handle in self._handles.values():
            self._release(handle)
        self._handles.clear()


@dataclass
class SetCheck:
    """The outcome of check_set: the canonical result (if any), which loaded results
    agree with it (VALID) and which do not (INVALID). Unloadable results are in
    PreparedResults.permanent / .transient; `retry` means ask again later."""

    canonical_id: int | None = None
    valid: list[int] = field(default_factory=list)
    invalid: list[int] = field(default_factory=list)
    retry: bool = False


def check_set(results: Sequence[Row], min_quorum: int, prepared: PreparedResults) -> SetCheck:
    """The first result that agrees with at least floor(min_quorum/2)+1 of the loaded
    results (itself included) becomes canonical, if at least min_quorum results loaded."""
    good = [r["id"] for r in results if prepared.load(r)]
    check = SetCheck(retry=bool(prepared.transient))
    if len(good) < min_quorum:
        return check
    needed = min_quorum // 2 + 1
    for candidate in good:
        matching = []
        for other in good:
            answer = True if other == candidate else prepared.same(candidate, other)
            if answer is None:
                check.retry = True
                return check
            if answer:
                matching.append(other)
        if len(matching) >= needed:
            check.canonical_id = candidate
            check.valid = matching
            check.invalid = [g for g in good if g not in matching]
            return check
    return check


class PairVerdict(enum.Enum):
    VALID = "valid"
    INVALID = "invalid"
    ERROR = "validate error"   # the new result's outputs (or the canonical's) are unusable
    RETRY = "retry later"


def check_pair(result: Row, canonical: Row, prepared: PreparedResults) -> PairVerdict:
    """A late result against the canonical one. As in stock BOINC, a canonical result whose
    outputs are permanently unusable makes the late result a validate error too."""
    for row in (result, canonical):
        if not prepared.load(row):
            return PairVerdict.RETRY if row["id"] in prepared.transient else PairVerdict.ERROR
    answer = prepared.same(result["id"], canonical["id"])
    if answer is None:
        return PairVerdict.RETRY
    return PairVerdict.VALID if answer else PairVerdict.INVALID
