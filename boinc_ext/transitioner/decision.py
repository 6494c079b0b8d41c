"""The transitioner's decisions for one workunit (what stock BOINC's sched/transitioner.cpp
handle_wu decides), made in memory from the workunit's and its results' rows: counts,
timeouts, validation and error triggers, how many results to create, assimilation and file
deletion triggers, and the next transition_time. The daemon reads and writes the rows.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.boinc.states import (
    ASSIMILATE_DONE,
    ASSIMILATE_INIT,
    ASSIMILATE_READY,
    EXIT_ABORTED_VIA_GUI,
    FILE_DELETE_DONE,
    FILE_DELETE_INIT,
    FILE_DELETE_READY,
    INT_MAX,
    OUTCOME_CLIENT_DETACHED,
    OUTCOME_CLIENT_ERROR,
    OUTCOME_COULDNT_SEND,
    OUTCOME_DIDNT_NEED,
    OUTCOME_NO_REPLY,
    OUTCOME_SUCCESS,
    OUTCOME_VALIDATE_ERROR,
    SERVER_STATE_IN_PROGRESS,
    SERVER_STATE_INACTIVE,
    SERVER_STATE_OVER,
    SERVER_STATE_UNSENT,
    TRANSITION_NO_NEW_RESULTS,
    VALIDATE_STATE_INCONCLUSIVE,
    VALIDATE_STATE_INIT,
    VALIDATE_STATE_INVALID,
    VALIDATE_STATE_NO_CHECK,
    VALIDATE_STATE_TOO_LATE,
    WU_ERROR_COULDNT_SEND_RESULT,
    WU_ERROR_TOO_MANY_ERROR_RESULTS,
    WU_ERROR_TOO_MANY_TOTAL_RESULTS,
)

SAFETY_NET_MIN_DELAY = 10 * 86400  # revisit an undecided workunit at least this often
SAFETY_NET_DELAY_FACTOR = 1.5      # ... or after 1.5 delay_bounds
MIN_CATCH_UP_DELAY = 60
MAX_CATCH_UP_DELAY = 86400
_LEADING_INT = re.compile(r"\s*([+-]?\d+)")

# Workunit columns the transitioner may change, transition_time apart.
WU_UPDATABLE = ("need_validate", "error_mask", "assimilate_state", "file_delete_state", "hr_class",
                "app_version_id")
RESULT_UPDATABLE = ("server_state", "outcome", "validate_state", "file_delete_state")


@dataclass(frozen=True)
class TransitionSettings:
    """The config.xml options the transitioner reads."""

    delete_delay: float = 0.0
    hr_class_static: bool = False
    reliable_priority_on_over: int = 0
    reliable_priority_on_over_except_error: int = 0

    @classmethod
    def from_config(cls, config: ProjectConfig) -> TransitionSettings:
        return cls(delete_delay=config.option_float("delete_delay_hours", 0.0, minimum=0) * 3600,
                   hr_class_static=config.option_flag("hr_class_static"),
                   reliable_priority_on_over=config.option_int("reliable_priority_on_over", 0),
                   reliable_priority_on_over_except_error=config.option_int(
                       "reliable_priority_on_over_except_error", 0))


@dataclass
class ResultCounts:
    total: int = 0
    unsent: int = 0
    in_progress: int = 0
    over: int = 0
    success: int = 0      # not counting INVALID ones
    errors: int = 0
    couldnt_send: int = 0
    no_reply: int = 0
    didnt_need: int = 0
    max_suffix: int = -1
    new_to_validate: bool = False


def result_suffix(name: str) -> int:
    """The number after the last `_` of a result name (0 if none), as C's atoi reads it."""
    _, sep, tail = name.rpartition("_")
    match = _LEADING_INT.match(tail) if sep else None
    return int(match.group(1)) if match else 0


@dataclass
class WorkunitTransition:
    """The decisions for one workunit (§2.1 steps 1-9), computed without touching the database."""

    original: dict[str, Any]
    results: list[dict[str, Any]]
    now: int
    settings: TransitionSettings
    wu: dict[str, Any] = field(init=False)
    changed_result_ids: set[int] = field(default_factory=set)
    timed_out: list[dict[str, Any]] = field(default_factory=list)
    new_results: int = 0
    priority_increase: int = 0
    counts: ResultCounts = field(default_factory=ResultCounts)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.wu = dict(self.original)
        self.results = [dict(r) for r in self.results]

    def decide(self) -> WorkunitTransition:
        canonical = self._canonical_result()
        self._count_results(canonical)
        self._trigger_validation()
        self._check_error_conditions()
        needed = self._results_needed()
        if self.wu["error_mask"]:
            self._wind_down_errored()
        elif not self.wu["canonical_resultid"] and self.wu["transitioner_flags"] != TRANSITION_NO_NEW_RESULTS:
            self._plan_new_results(needed)
        all_validated, ready_to_assimilate, last_received = self._survey_over_results()
        self._defer_assimilation(ready_to_assimilate)
        deferred_delete = self._trigger_file_deletion(canonical, all_validated, last_received)
        self.wu["transition_time"] = self._next_transition_time(deferred_delete)
        return self

    # --- step 1-2: count and time out -------------------------------------------------------
    def _canonical_result(self) -> dict[str, Any] | None:
        canonical_id = self.wu["canonical_resultid"]
        found = next((r for r in self.results if canonical_id and r["id"] == canonical_id), None)
        if canonical_id and found is None:
            self.notes.append(f"can't find canonical result #{canonical_id}")
        return found

    def _count_results(self, canonical: dict[str, Any] | None) -> None:
        files_gone = canonical is not None and canonical["file_delete_state"] == FILE_DELETE_DONE
        counts = self.counts
        for result in self.results:
            counts.total += 1
            counts.max_suffix = max(counts.max_suffix, result_suffix(result["name"]))
            state = result["server_state"]
            if state in (SERVER_STATE_INACTIVE, SERVER_STATE_UNSENT):
                counts.unsent += 1
            elif state == SERVER_STATE_IN_PROGRESS:
                self._count_in_progress(result)
            elif state == SERVER_STATE_OVER:
                counts.over += 1
                self._count_over(result, files_gone)

    def _count_in_progress(self, result: dict[str, Any]) -> None:
        if result["report_deadline"] >= self.now:
            self.counts.in_progress += 1
            return
        self._set_result(result, server_state=SERVER_STATE_OVER, outcome=OUTCOME_NO_REPLY)
        self.timed_out.append(result)
        self.notes.append(f"{result['name']} timed out: OVER/NO_REPLY")
        self.counts.over += 1
        self.counts.no_reply += 1

    def _count_over(self, result: dict[str, Any], canonical_files_gone: bool) -> None:
        counts, outcome = self.counts, result["outcome"]
        if outcome == OUTCOME_COULDNT_SEND:
            counts.couldnt_send += 1
        elif outcome == OUTCOME_SUCCESS:
            if result["validate_state"] == VALIDATE_STATE_INIT:
                if canonical_files_gone:
                    self._set_result(result, validate_state=VALIDATE_STATE_TOO_LATE)
                    self.notes.append(f"{result['name']} validate_state=>TOO_LATE")
                else:
                    counts.new_to_validate = True
            if result["validate_state"] != VALIDATE_STATE_INVALID:
                counts.success += 1
        elif outcome == OUTCOME_CLIENT_ERROR:
            if result["exit_status"] == EXIT_ABORTED_VIA_GUI:
                counts.no_reply += 1
            else:
                counts.errors += 1
        elif outcome == OUTCOME_VALIDATE_ERROR:
            counts.errors += 1
        elif outcome in (OUTCOME_CLIENT_DETACHED, OUTCOME_NO_REPLY):
            counts.no_reply += 1
        elif outcome == OUTCOME_DIDNT_NEED:
            counts.didnt_need += 1

    # --- steps 3-5: validation, errors, how many more ----------------------------------------
    def _trigger_validation(self) -> None:
        if self.counts.new_to_validate and self.counts.success >= self.wu["min_quorum"]:
            self.wu["need_validate"] = 1

    def _check_error_conditions(self) -> None:
        counts = self.counts
        if counts.couldnt_send > 0:
            self.wu["error_mask"] |= WU_ERROR_COULDNT_SEND_RESULT
        if counts.errors and not (counts.success or counts.in_progress or counts.no_reply):
            if not self.settings.hr_class_static:
                self.wu["hr_class"] = 0
                self.wu["app_version_id"] = 0
        if counts.errors > self.wu["max_error_results"]:
            self.notes.append(f"too many errors ({counts.errors} of {counts.total} results)")
            self.wu["error_mask"] |= WU_ERROR_TOO_MANY_ERROR_RESULTS

    def _results_needed(self) -> int:
        counts = self.counts
        needed = max(0, self.wu["target_nresults"] - counts.unsent - counts.in_progress - counts.success)
        allowed = self.wu["max_total_results"] - counts.total
        if allowed < 0 or (allowed == 0 and needed > 0):
            self.notes.append(f"too many total results ({counts.total})")
            self.wu["error_mask"] |= WU_ERROR_TOO_MANY_TOTAL_RESULTS
            return needed
        return min(needed, allowed)

    # --- step 6: wind down or create ---------------------------------------------------------
    def _wind_down_errored(self) -> None:
        for result in self.results:
            state = result["server_state"]
            if state in (SERVER_STATE_INACTIVE, SERVER_STATE_UNSENT):
                self._set_result(result, server_state=SERVER_STATE_OVER, outcome=OUTCOME_DIDNT_NEED)
            elif (state == SERVER_STATE_OVER and result["outcome"] == OUTCOME_SUCCESS
                  and result["validate_state"] in (VALIDATE_STATE_INIT, VALIDATE_STATE_INCONCLUSIVE)):
                self._set_result(result, validate_state=VALIDATE_STATE_NO_CHECK)
        if self.wu["assimilate_state"] == ASSIMILATE_INIT:
            self.wu["assimilate_state"] = ASSIMILATE_READY

    def _plan_new_results(self, needed: int) -> None:
        self.new_results = needed
        if self.counts.over and self.settings.reliable_priority_on_over:
            self.priority_increase = self.settings.reliable_priority_on_over
        elif self.counts.over and not self.counts.errors:
            self.priority_increase = self.settings.reliable_priority_on_over_except_error

    # --- steps 7-8: assimilation and file deletion -------------------------------------------
    def _survey_over_results(self) -> tuple[bool, bool, int]:
        """(all over and validated, all over and ready to assimilate, last received_time)."""
        all_validated = ready = True
        last_received = 0
        for result in self.results:
            if result["server_state"] != SERVER_STATE_OVER:
                all_validated = ready = False
                continue
            last_received = max(last_received, result["received_time"])
            if result["outcome"] == OUTCOME_SUCCESS and result["validate_state"] == VALIDATE_STATE_INIT:
                all_validated = ready = False
            elif result["outcome"] == OUTCOME_NO_REPLY and self.now < result["report_deadline"]:
                all_validated = False
        return all_validated, ready, last_received

    def _defer_assimilation(self, ready_to_assimilate: bool) -> None:
        if (ready_to_assimilate and self.results and self.wu["canonical_resultid"] > 0
                and self.wu["assimilate_state"] == ASSIMILATE_INIT):
            self.wu["assimilate_state"] = ASSIMILATE_READY
            self.notes.append("deferred assimilation: assimilate_state=>READY")

    def _trigger_file_deletion(self, canonical: dict[str, Any] | None, all_validated: bool,
                               last_received: int) -> float:
        """Marks files READY once allowed; returns the deferred deletion time, or 0."""
        if self.wu["assimilate_state"] != ASSIMILATE_DONE:
            return 0
        delete_time = last_received + self.settings.delete_delay
        if self.now < delete_time:
            return delete_time
        if all_validated and self.wu["file_delete_state"] == FILE_DELETE_INIT:
            self.wu["file_delete_state"] = FILE_DELETE_READY
        for result in self.results:
            if result is canonical and not all_validated:
                continue
            if _outputs_deletable(result) and result["file_delete_state"] == FILE_DELETE_INIT:
                self._set_result(result, file_delete_state=FILE_DELETE_READY)
        return 0

    # --- step 9: next transition time --------------------------------------------------------
    def _next_transition_time(self, deferred_delete: float) -> int:
        if self.wu["canonical_resultid"] or self.wu["error_mask"]:
            when = INT_MAX
        else:
            when = self.now + max(int(SAFETY_NET_DELAY_FACTOR * self.wu["delay_bound"]), SAFETY_NET_MIN_DELAY)
        for result in self.results:
            if result["server_state"] == SERVER_STATE_IN_PROGRESS:
                when = min(when, result["report_deadline"])
        if deferred_delete and deferred_delete < when:
            when = int(deferred_delete)
        if when < self.now:
            when = self.now + min(max(2 * (self.now - when), MIN_CATCH_UP_DELAY), MAX_CATCH_UP_DELAY)
        return when

    # --- bookkeeping -------------------------------------------------------------------------
    def _set_result(self, result: dict[str, Any], **values) -> None:
        result.update(values)
        self.changed_result_ids.add(result["id"])

    def changed_results(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["id"] in self.changed_result_ids]

    def changed_wu_fields(self) -> dict[str, Any]:
        return {name: self.wu[name] for name in WU_UPDATABLE if self.wu[name] != self.original[name]}

    def summary(self) -> str:
        c = self.counts
        parts = [f"{c.total} results: unsent {c.unsent}, in progress {c.in_progress}, over {c.over} "
                 f"(success {c.success}, error {c.errors}, couldnt_send {c.couldnt_send}, "
                 f"no_reply {c.no_reply}, didnt_need {c.didnt_need})"]
        parts += self.notes
        parts += [f"{name}=>{value}" for name, value in self.changed_wu_fields().items()]
        return "; ".join(parts)


def _outputs_deletable(result: dict[str, Any]) -> bool:
    """Error results' outputs may go at once; successful ones once validated."""
    if result["outcome"] == OUTCOME_CLIENT_ERROR:
        return True
    return result["outcome"] == OUTCOME_SUCCESS and result["validate_state"] != VALIDATE_STATE_INIT

