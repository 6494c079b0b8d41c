"""Finding the canonical result, and checking late results against it (stock check_set and
check_pair), over results whose outputs are prepared once per workunit (and, once settled,
decided again from the recorded answers without the outputs).

Nothing here touches the database: the caller turns the outcome into row updates.
"""
from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from boinc_ext.validator.errors import PermanentValidationError, TransientValidationError, ValidationError

Row = Mapping[str, Any]


class NotPrepared(Exception):
    """A settled PreparedResults was asked for outputs or a comparison it does not hold:
    the rows changed since the outputs were prepared."""


class PreparedResults:
    """Each result's outputs prepared at most once; comparisons cached (same() is symmetric).

    Failures are recorded rather than raised: `permanent[id]` / `transient[id]` hold the
    error of a result loaded in the current decision that could not be prepared, `notes`
    the comparisons that failed.

    Used in two steps: a decision over unlocked rows prepares and compares what it needs;
    `settle()` then frees the prepared outputs and keeps only the outcomes (which results
    loaded, every comparison's answer), so that the decision can be taken again over the
    locked rows without touching an output file. A settled instance raises NotPrepared
    when that decision needs anything more."""

    def __init__(self, prepare: Callable[[Row], Any], same: Callable[[Any, Any], bool],
                 release: Callable[[Any], None] = lambda handle: None):
        self._prepare = prepare
        self._same = same
        self._release = release
        self._handles: dict[int, Any] = {}
        self._loaded: set[int] = set()
        self._errors: dict[int, ValidationError] = {}
        self._answers: dict[frozenset, tuple[bool | None, str]] = {}
        self._settled = False
        self.permanent: dict[int, ValidationError] = {}
        self.transient: dict[int, ValidationError] = {}
        self.notes: list[str] = []

    def load(self, result: Row) -> bool:
        """True if the result's outputs are ready to compare."""
        result_id = result["id"]
        if result_id not in self._loaded and result_id not in self._errors:
            self._prepare_one(result)
        error = self._errors.get(result_id)
        if error is None:
            return True
        (self.transient if isinstance(error, TransientValidationError) else self.permanent)[result_id] = error
        return False

    def _prepare_one(self, result: Row) -> None:
        if self._settled:
            raise NotPrepared(f"result #{result['id']} {result['name']} was not prepared")
        try:
            self._handles[result["id"]] = self._prepare(result)
            self._loaded.add(result["id"])
        except (TransientValidationError, PermanentValidationError) as exc:
            self._errors[result["id"]] = exc

    def same(self, a: int, b: int) -> bool | None:
        """Whether two loaded results agree; None if the comparison failed transiently.
        A permanent failure to compare counts as disagreement."""
        key = frozenset((a, b))
        if key not in self._answers:
            self._answers[key] = self._compare(a, b)
        answer, note = self._answers[key]
        if note and note not in self.notes:
            self.notes.append(note)
        return answer

    def _compare(self, a: int, b: int) -> tuple[bool | None, str]:
        if self._settled:
            raise NotPrepared(f"results #{a} and #{b} were not compared")
        try:
            return bool(self._same(self._handles[a], self._handles[b])), ""
        except TransientValidationError as exc:
            return None, f"comparing results #{a} and #{b} failed transiently: {exc}"
        except PermanentValidationError as exc:
            return False, f"comparing results #{a} and #{b} failed: {exc}"

    def release(self) -> None:
        for handle in self._handles.values():
            self._release(handle)
        self._handles.clear()

    def settle(self) -> PreparedResults:
        """Frees the prepared outputs; from now on only what was prepared is answered.
        Starts a new decision: the per-decision records are emptied."""
        self.release()
        self._settled = True
        self.permanent, self.transient, self.notes = {}, {}, []
        return self


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
