"""What validation does to one workunit and its results (stock sched/validator.cpp handle_wu),
decided in memory. The daemon locks the rows, asks for the decision and writes it.
"""
from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from boinc_ext.boinc.states import (
    ASSIMILATE_READY,
    INT_MAX,
    OUTCOME_DIDNT_NEED,
    OUTCOME_SUCCESS,
    OUTCOME_VALIDATE_ERROR,
    SERVER_STATE_OVER,
    SERVER_STATE_UNSENT,
    VALIDATE_STATE_INCONCLUSIVE,
    VALIDATE_STATE_INIT,
    VALIDATE_STATE_INVALID,
    VALIDATE_STATE_VALID,
    WU_ERROR_TOO_MANY_SUCCESS_RESULTS,
)
from boinc_ext.validator import events
from boinc_ext.validator.credit import CreditMode, CreditRules
from boinc_ext.validator.quorum import PairVerdict, PreparedResults, check_pair, check_set

RETRY_DELAY = 6 * 3600  # a transient failure brings the workunit back within this time
RESULT_COLUMNS = ("validate_state", "outcome", "server_state", "granted_credit")


class Transition(enum.IntEnum):
    """When the transitioner should look at the workunit next; a later decision of higher
    rank wins."""

    NO_CHANGE = 0
    IMMEDIATE = 1
    DELAYED = 2
    NEVER = 3


@dataclass(frozen=True)
class Event:
    name: str                       # one of events.*
    result: dict[str, Any] | None   # None: about the workunit
    detail: str = ""


@dataclass
class WorkunitValidation:
    wu: dict[str, Any]
    results: list[dict[str, Any]]
    prepared: PreparedResults
    credit_rules: CreditRules
    now: int
    original_wu: dict[str, Any] = field(init=False)
    changed: dict[int, dict[str, Any]] = field(default_factory=dict)    # result id -> row, updated
    newly_valid: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    newly_invalid: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    transition: Transition = Transition.NO_CHANGE

    def __post_init__(self):
        self.original_wu = dict(self.wu)
        self.wu = dict(self.wu)
        self.results = [dict(r) for r in self.results]

    def decide(self) -> WorkunitValidation:
        if self.wu["canonical_resultid"]:
            self._check_late_results()
        else:
            self._look_for_canonical()
        self.wu["need_validate"] = 0
        self.wu["transition_time"] = self._transition_time()
        return self

    # --- no canonical result yet ---------------------------------------------------------------
    def _look_for_canonical(self) -> None:
        viable = [r for r in self.results if r["server_state"] == SERVER_STATE_OVER
                  and r["outcome"] == OUTCOME_SUCCESS and r["validate_state"] != VALIDATE_STATE_INVALID]
        if len(viable) < self.wu["min_quorum"]:
            self._event(events.QUORUM_NOT_REACHED, None, f"{len(viable)} viable, quorum {self.wu['min_quorum']}")
            return
        check = check_set(viable, self.wu["min_quorum"], self.prepared)
        self._mark_unusable(viable)
        if check.retry:
            self._later(Transition.DELAYED)
            self._event(events.RETRY_LATER, None, "; ".join(
                [str(e) for e in self.prepared.transient.values()] + self.prepared.notes))
        if check.canonical_id is not None:
            self._accept_canonical(check.canonical_id, check.valid, check.invalid, viable)
        elif not check.retry:
            self._no_consensus(viable)

    def _mark_unusable(self, viable: Sequence[dict[str, Any]]) -> None:
        for result in viable:
            error = self.prepared.permanent.get(result["id"])
            if error is not None:
                self._set(result, outcome=OUTCOME_VALIDATE_ERROR, validate_state=VALIDATE_STATE_INVALID)
                self.newly_invalid.append(result)
                self._later(Transition.IMMEDIATE)
                self._event(events.RESULT_VALIDATE_ERROR, result, str(error))

    def _accept_canonical(self, canonical_id: int, valid_ids: list[int], invalid_ids: list[int],
                          viable: Sequence[dict[str, Any]]) -> None:
        by_id = {r["id"]: r for r in viable}
        credit = self.credit_rules.workunit_credit(self.wu, [by_id[i] for i in valid_ids])
        for result in (by_id[i] for i in valid_ids):
            if result["validate_state"] != VALIDATE_STATE_VALID:  # never credited twice
                self._set(result, validate_state=VALIDATE_STATE_VALID, granted_credit=credit)
                self.newly_valid.append((result, credit))
                self._event(events.RESULT_VALID, result, f"granted credit {credit:g}")
        for result in (by_id[i] for i in invalid_ids):
            self._set(result, validate_state=VALIDATE_STATE_INVALID)
            self.newly_invalid.append(result)
            self._event(events.RESULT_INVALID, result, f"disagrees with canonical result #{canonical_id}")
        for result_id in self.prepared.transient:
            # Put back to INIT, so that the transitioner asks for a check against the canonical.
            if by_id[result_id]["validate_state"] != VALIDATE_STATE_INIT:
                self._set(by_id[result_id], validate_state=VALIDATE_STATE_INIT)
            self._event(events.RESULT_NOT_READ, by_id[result_id], str(self.prepared.transient[result_id]))
        self.wu.update(canonical_resultid=canonical_id, canonical_credit=credit,
                       assimilate_state=ASSIMILATE_READY)
        for result in self.results:
            if result["server_state"] == SERVER_STATE_UNSENT:
                self._set(result, server_state=SERVER_STATE_OVER, outcome=OUTCOME_DIDNT_NEED)
                self._event(events.RESULT_NOT_NEEDED, result, "OVER/DIDNT_NEED")
        # The assimilator wakes the transitioner; doing it now would race with it.
        self._later(Transition.NEVER)
        self._event(events.CANONICAL_FOUND, None, f"result #{canonical_id}, {len(valid_ids)} valid, "
                                                   f"{len(invalid_ids)} invalid, credit {credit:g}")

    def _no_consensus(self, viable: Sequence[dict[str, Any]]) -> None:
        still_viable = 0
        for result in viable:
            if result["id"] in self.prepared.permanent:
                continue
            still_viable += 1
            if result["validate_state"] == VALIDATE_STATE_INIT:
                self._set(result, validate_state=VALIDATE_STATE_INCONCLUSIVE)
                self._event(events.RESULT_INCONCLUSIVE, result)
        notes = [f"{still_viable} viable results"]
        if still_viable > self.wu["max_success_results"]:
            self.wu["error_mask"] |= WU_ERROR_TOO_MANY_SUCCESS_RESULTS
            self._later(Transition.IMMEDIATE)
            notes.append("too many success results")
        if still_viable >= self.wu["target_nresults"]:
            self.wu["target_nresults"] = still_viable + 1
            self._later(Transition.IMMEDIATE)
            notes.append(f"target_nresults=>{still_viable + 1}")
        self._event(events.NO_CONSENSUS, None, "; ".join(notes + self.prepared.notes))

    # --- a canonical result exists: check the late ones against it -----------------------------
    def _check_late_results(self) -> None:
        canonical = next((r for r in self.results if r["id"] == self.wu["canonical_resultid"]), None)
        if canonical is None:
            self._event(events.CANONICAL_MISSING, None, f"canonical_resultid {self.wu['canonical_resultid']}")
            return
        for result in self.results:
            if (result["server_state"] != SERVER_STATE_OVER or result["outcome"] != OUTCOME_SUCCESS
                    or result["validate_state"] not in (VALIDATE_STATE_INIT, VALIDATE_STATE_INCONCLUSIVE)):
                continue
            self._check_late_result(result, canonical)

    def _check_late_result(self, result: dict[str, Any], canonical: dict[str, Any]) -> None:
        verdict = check_pair(result, canonical, self.prepared)
        if verdict is PairVerdict.RETRY:
            self._later(Transition.DELAYED)
            if result["validate_state"] != VALIDATE_STATE_INIT:
                self._set(result, validate_state=VALIDATE_STATE_INIT)
            errors = self.prepared.transient
            self._event(events.RESULT_NOT_READ, result,
                        str(errors.get(result["id"]) or errors.get(canonical["id"]) or "; ".join(self.prepared.notes)))
            return
        self._later(Transition.IMMEDIATE)  # perhaps the last result: let the transitioner finish up
        if verdict is PairVerdict.VALID:
            credit = 0.0 if self.credit_rules.mode is CreditMode.NONE else canonical["granted_credit"]
            self._set(result, validate_state=VALIDATE_STATE_VALID, granted_credit=credit)
            self.newly_valid.append((result, credit))
            self._event(events.RESULT_VALID, result, f"{events.LATE_RESULT_CHECKED}; granted credit {credit:g}")
        elif verdict is PairVerdict.INVALID:
            self._set(result, validate_state=VALIDATE_STATE_INVALID)
            self.newly_invalid.append(result)
            self._event(events.RESULT_INVALID, result, events.LATE_RESULT_CHECKED)
        else:
            error = self.prepared.permanent.get(result["id"]) or self.prepared.permanent.get(canonical["id"])
            self._set(result, outcome=OUTCOME_VALIDATE_ERROR, validate_state=VALIDATE_STATE_INVALID)
            self.newly_invalid.append(result)
            self._event(events.RESULT_VALIDATE_ERROR, result, f"{events.LATE_RESULT_CHECKED}: {error}")

    # --- helpers -------------------------------------------------------------------------------
    def _set(self, result: dict[str, Any], **values: Any) -> None:
        result.update(values)
        self.changed[result["id"]] = result

    def _later(self, transition: Transition) -> None:
        self.transition = max(self.transition, transition)

    def _event(self, name: str, result: dict[str, Any] | None, detail: str = "") -> None:
        self.events.append(Event(name, result, detail))

    def _transition_time(self) -> int:
        current = self.original_wu["transition_time"]
        if self.transition is Transition.IMMEDIATE:
            return self.now
        if self.transition is Transition.DELAYED:
            return min(current, self.now + RETRY_DELAY)
        if self.transition is Transition.NEVER:
            return INT_MAX
        return current

    def changed_results(self) -> list[dict[str, Any]]:
        return list(self.changed.values())
