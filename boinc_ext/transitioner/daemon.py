"""Transitioner: what stock BOINC's sched/transitioner does, as a daemon of ours.

For every workunit whose transition_time has passed it counts the results, times out
in-progress results past their deadline (and penalizes their host_app_version as stock
does: turnaround, max_jobs_per_day, consecutive_valid), triggers validation, sets error
bits, creates the results still needed, triggers (deferred) assimilation and file deletion,
and sets the next transition_time.

Workunits are handled in batches of up to BATCH_WORKUNITS: their rows and their results'
rows are read with locks in two queries, the decisions are made in memory, and the batch is
written with one multi-row statement per table and one commit. A daemon killed at any
moment leaves either all of a batch's changes or none of them.
"""
from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.boinc.crypto import PrivateKey, read_private_key
from boinc_ext.daemons.base import Daemon, DaemonConfigError, DaemonOptions, flag, main_for, option
from boinc_ext.boinc.db import Database, literal_of
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
    TRANSITION_NONE,
    VALIDATE_STATE_INCONCLUSIVE,
    VALIDATE_STATE_INIT,
    VALIDATE_STATE_INVALID,
    VALIDATE_STATE_NO_CHECK,
    VALIDATE_STATE_TOO_LATE,
    WU_ERROR_COULDNT_SEND_RESULT,
    WU_ERROR_TOO_MANY_ERROR_RESULTS,
    WU_ERROR_TOO_MANY_TOTAL_RESULTS,
)
from boinc_ext.transitioner.results import insert_result_rows, new_result_rows, read_result_template

BATCH_WORKUNITS = 100              # workunits per transaction
SAFETY_NET_MIN_DELAY = 10 * 86400  # revisit an undecided workunit at least this often
SAFETY_NET_DELAY_FACTOR = 1.5      # ... or after 1.5 delay_bounds
MIN_CATCH_UP_DELAY = 60
MAX_CATCH_UP_DELAY = 86400
UPLOAD_PRIVATE_KEY = "upload_private"
_LEADING_INT = re.compile(r"\s*([+-]?\d+)")

_WU_COLUMNS = ("id, name, appid, min_quorum, need_validate, canonical_resultid, transition_time, "
               "delay_bound, error_mask, max_error_results, max_total_results, file_delete_state, "
               "assimilate_state, target_nresults, result_template_file, priority, hr_class, batch, "
               "app_version_id, transitioner_flags, size_class")
_RESULT_COLUMNS = ("id, workunitid, name, report_deadline, server_state, outcome, validate_state, "
                   "file_delete_state, sent_time, hostid, received_time, app_version_id, exit_status")
# Workunit columns the transitioner may change, transition_time apart.
_WU_UPDATABLE = ("need_validate", "error_mask", "assimilate_state", "file_delete_state", "hr_class",
                 "app_version_id")
_RESULT_UPDATABLE = ("server_state", "outcome", "validate_state", "file_delete_state")


@dataclass(frozen=True)
class TransitionSettings:
    """The config.xml options the transitioner reads."""

    delete_delay: float = 0.0
    hr_class_static: bool = False
    reliable_priority_on_over: int = 0
    reliable_priority_on_over_except_error: int = 0

    @classmethod
    def from_config(cls, config: ProjectConfig) -> TransitionSettings:
        return cls(delete_delay=config.option_float("delete_delay_hours", 0.0) * 3600,
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
        return {name: self.wu[name] for name in _WU_UPDATABLE if self.wu[name] != self.original[name]}

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


@dataclass(frozen=True)
class TransitionerOptions(DaemonOptions):
    wu_id: int | None = option(None, flag(type=int, metavar="ID", help="transition only this workunit, due or not"))


class Transitioner(Daemon):
    name = "ext_transitioner"
    options_class = TransitionerOptions
    batch_size = BATCH_WORKUNITS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.wu_id: int | None = self.options.wu_id
        self.settings: TransitionSettings | None = None
        self.daily_result_quota = 0
        self._upload_key: PrivateKey | None = None

    def setup(self) -> None:
        super().setup()
        self.settings = TransitionSettings.from_config(self.config)
        self.daily_result_quota = self.config.option_int("daily_result_quota", 0, minimum=0)
        self._upload_key = self._read_upload_key()

    # --- the pass ----------------------------------------------------------------------------
    def do_pass(self) -> bool:
        did_work = False
        after_id = 0
        while not self.should_stop():
            wu_ids = self._due_workunit_ids(after_id)
            if not wu_ids:
                break
            did_work |= self.transition_batch(wu_ids)
            after_id = wu_ids[-1]
            if self.wu_id is not None:
                break
        return did_work

    def _due_workunit_ids(self, after_id: int) -> list[int]:
        """Ids of up to batch_size due workunits above `after_id` (read without locks)."""
        due, params = self._due_clause(int(time.time()))
        rows = self.db.query(f"select wu.id from workunit wu where {due} and wu.id > %s"
                             f"{self.mod_clause('wu.id')} order by wu.id limit %s",
                             params + (after_id, self.batch_size))
        return [row["id"] for row in rows]

    def _due_clause(self, now: int) -> tuple[str, tuple]:
        if self.wu_id is not None:
            return f"wu.id = %s and wu.transitioner_flags <> {TRANSITION_NONE}", (self.wu_id,)
        return f"wu.transition_time < %s and wu.transitioner_flags <> {TRANSITION_NONE}", (now,)

    def transition_batch(self, wu_ids: list[int]) -> bool:
        """The workunits of `wu_ids` still due, in one transaction; False if none was."""
        now = int(time.time())
        with self.db.transaction():
            workunits = self._lock_workunits(wu_ids, now)
            results = self._lock_results([wu["id"] for wu in workunits])
            transitions = [WorkunitTransition(wu, results.get(wu["id"], []), now, self.settings).decide()
                           for wu in workunits]
            created = self._write_batch(transitions)
        for transition in transitions:
            self._log_transition(transition, created.get(transition.wu["id"], []))
        return bool(transitions)

    def _lock_workunits(self, wu_ids: list[int], now: int) -> list[dict[str, Any]]:
        due, params = self._due_clause(now)
        marks = ", ".join(["%s"] * len(wu_ids))
        return self.db.query(f"select {_WU_COLUMNS} from workunit wu where wu.id in ({marks}) and {due} "
                             "order by wu.id for update", tuple(wu_ids) + params)

    def _lock_results(self, wu_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        """The workunits' results by workunit id, in id order."""
        if not wu_ids:
            return {}
        marks = ", ".join(["%s"] * len(wu_ids))
        by_wu: dict[int, list[dict[str, Any]]] = {}
        for row in self.db.query(f"select {_RESULT_COLUMNS} from result where workunitid in ({marks}) "
                                 "order by id for update", wu_ids):
            by_wu.setdefault(row["workunitid"], []).append(row)
        return by_wu

    def _log_transition(self, transition: WorkunitTransition, created: list[str]) -> None:
        log = self.item_log("WU", transition.wu["id"], transition.wu["name"])
        log.info("%s%s; transition_time=>%d", transition.summary(),
                 f"; created {', '.join(created)}" if created else "", transition.wu["transition_time"])

    # --- writing -----------------------------------------------------------------------------
    def _write_batch(self, transitions: list[WorkunitTransition]) -> dict[int, list[str]]:
        """All of the batch's changes, one statement per table; returns created names by workunit id."""
        changed_results = [result for t in transitions for result in t.changed_results()]
        update_rows(self.db, "result", ("id",), changed_results, _RESULT_UPDATABLE)
        created = self._create_results(transitions)
        TimeoutPenalties(self.db, self.daily_result_quota).apply(transitions)
        self._update_workunits(transitions)
        return created

    def _create_results(self, transitions: list[WorkunitTransition]) -> dict[int, list[str]]:
        templates: dict[str, str] = {}
        created: dict[int, list[str]] = {}
        rows: list[tuple] = []
        for t in transitions:
            if t.new_results <= 0:
                continue
            path = t.wu["result_template_file"]
            if path not in templates:
                templates[path] = read_result_template(self.config, path)
            names, values = new_result_rows(t.wu, t.new_results, t.counts.max_suffix + 1, t.now, self.config,
                                            self._certificate_key(), templates[path], t.priority_increase)
            created[t.wu["id"]] = names
            rows += values
        insert_result_rows(self.db, rows)
        return created

    def _update_workunits(self, transitions: list[WorkunitTransition]) -> None:
        changed = [t for t in transitions if t.changed_wu_fields()
                   or t.wu["transition_time"] != t.original["transition_time"]]
        columns = sorted({name for t in changed for name in t.changed_wu_fields()}) + ["transition_time"]
        update_rows(self.db, "workunit", ("id",), [t.wu for t in changed], columns)

    # --- keys --------------------------------------------------------------------------------
    def _read_upload_key(self) -> PrivateKey:
        """Stock's transitioner refuses to run without upload_private, even with certificates off."""
        path = self.config.key_dir / UPLOAD_PRIVATE_KEY
        try:
            return read_private_key(path)
        except (OSError, ValueError) as exc:  # KeyFormatError is a ValueError
            raise DaemonConfigError(f"cannot read the upload key {path}: {exc}") from None

    def _certificate_key(self) -> PrivateKey | None:
        return None if self.config.dont_generate_upload_certificates else self._upload_key


# --- host_app_version penalties for timed-out results (stock: result_timed_out) -------------
HAV_AVG_THRESHOLD = 20  # turnaround samples before the average turns exponential
HAV_AVG_WEIGHT = 0.01   # a new sample's weight in the exponential average
HAV_AVG_LIMIT = 10      # samples are capped at this many times the average
_HAV_KEY = ("host_id", "app_version_id")
_HAV_PENALIZED = ("turnaround_n", "turnaround_avg", "turnaround_var", "turnaround_q", "max_jobs_per_day",
                  "consecutive_valid")
_HAV_ZEROED = ("pfc_n", "pfc_avg", "et_n", "et_avg", "et_var", "et_q", "max_jobs_per_day", "n_jobs_today",
               "turnaround_n", "turnaround_avg", "turnaround_var", "turnaround_q", "consecutive_valid")


def generalized_app_version_id(app_version_id: int, appid: int) -> int:
    """host_app_version's key: anonymous-platform versions (negative ids) map per app."""
    return appid * 1000000 - app_version_id if app_version_id < 0 else app_version_id


def add_turnaround_sample(hav: dict[str, Any], sample: float) -> None:
    """Stock's AVERAGE_VAR::update_var over the row's turnaround_* columns."""
    if sample < 0:
        return
    n, avg = hav["turnaround_n"], hav["turnaround_avg"]
    if n and avg and sample > avg * HAV_AVG_LIMIT:
        sample = avg * HAV_AVG_LIMIT
    n += 1
    delta = sample - avg
    if n < HAV_AVG_THRESHOLD:
        avg += delta / n
        hav["turnaround_q"] += delta * (sample - avg)
        hav["turnaround_var"] = hav["turnaround_q"] / n
    else:
        avg += HAV_AVG_WEIGHT * delta
        hav["turnaround_var"] += HAV_AVG_WEIGHT * (delta * delta - hav["turnaround_var"])
    hav["turnaround_n"], hav["turnaround_avg"] = n, avg


def reduced_max_jobs_per_day(max_jobs_per_day: int, daily_result_quota: int) -> int:
    """One job a day less, never below 1; 0 (not yet set) counts as the project's quota."""
    allowed = min(max_jobs_per_day or daily_result_quota, daily_result_quota)
    return max(allowed - 1, 1)


class TimeoutPenalties:
    """Each timed-out result's host_app_version gets the workunit's delay_bound as a turnaround
    sample, one job a day less and consecutive_valid 0. A missing row is made the way stock's
    hav_lookup makes it (taking over the host's row for the newest older version of the same
    app, platform and plan class, else a zeroed one); if the app version itself is unknown the
    result goes unpenalized, as in stock. Rows are locked after the batch's workunits and
    results, in key order, like the validator's."""

    def __init__(self, db: Database, daily_result_quota: int):
        self.db = db
        self.daily_result_quota = daily_result_quota

    def apply(self, transitions: list[WorkunitTransition]) -> None:
        samples = [(t, result) for t in transitions for result in t.timed_out if result["hostid"]]
        if not samples:
            return
        keys = sorted({self._key(t, result) for t, result in samples})
        havs = self._lock(keys)
        for key in keys:
            if key not in havs and self._adopt_or_create(key):
                havs.update(self._lock([key]))
        for t, result in samples:
            self._penalize(t, result, havs.get(self._key(t, result)))
        update_rows(self.db, "host_app_version", _HAV_KEY, list(havs.values()), _HAV_PENALIZED)

    @staticmethod
    def _key(transition: WorkunitTransition, result: dict[str, Any]) -> tuple[int, int]:
        return result["hostid"], generalized_app_version_id(result["app_version_id"], transition.wu["appid"])

    def _penalize(self, transition: WorkunitTransition, result: dict[str, Any], hav: dict[str, Any] | None) -> None:
        if hav is None:
            transition.notes.append(f"{result['name']}: no host_app_version for host #{result['hostid']}, "
                                    f"app version #{result['app_version_id']}; not penalized")
            return
        add_turnaround_sample(hav, float(transition.wu["delay_bound"]))
        old_quota = hav["max_jobs_per_day"]
        hav["max_jobs_per_day"] = reduced_max_jobs_per_day(old_quota, self.daily_result_quota)
        hav["consecutive_valid"] = 0
        transition.notes.append(f"host_app_version ({hav['host_id']}, {hav['app_version_id']}): "
                                f"max_jobs_per_day {old_quota}=>{hav['max_jobs_per_day']}, consecutive_valid=>0")

    def _lock(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], dict[str, Any]]:
        where = " or ".join("(host_id = %s and app_version_id = %s)" for _ in keys)
        rows = self.db.query(f"select {', '.join(_HAV_KEY + _HAV_PENALIZED)} from host_app_version "
                             f"where {where} order by host_id, app_version_id for update",
                             [value for key in keys for value in key])
        return {(row["host_id"], row["app_version_id"]): row for row in rows}

    def _adopt_or_create(self, key: tuple[int, int]) -> bool:
        """Makes the missing row for `key`; False if its app version is unknown."""
        host_id, version_id = key
        version = self.db.query_one("select appid, platformid, plan_class from app_version where id = %s",
                                    (version_id,))
        if version is None:
            return False
        older = self.db.scalar(
            "select hav.app_version_id from host_app_version hav join app_version av on av.id = hav.app_version_id "
            "where hav.host_id = %s and av.appid = %s and av.platformid = %s and av.plan_class = %s "
            "order by av.version_num desc, hav.app_version_id limit 1 for update",
            (host_id, version["appid"], version["platformid"], version["plan_class"]))
        if older is not None:
            self.db.execute("update host_app_version set app_version_id = %s where host_id = %s and app_version_id = %s",
                            (version_id, host_id, older))
        else:
            columns = ", ".join(_HAV_KEY + _HAV_ZEROED)
            self.db.execute(f"insert into host_app_version ({columns}) values "
                            f"({', '.join(['%s'] * (len(_HAV_KEY) + len(_HAV_ZEROED)))})",
                            key + (0,) * len(_HAV_ZEROED))
        return True


# --- writing many rows at once --------------------------------------------------------------
def update_rows(db: Database, table: str, key_columns: tuple[str, ...], rows: list[dict[str, Any]],
                columns: list[str] | tuple[str, ...]) -> None:
    """Sets each row's `columns` to its own values in one UPDATE (a CASE per column over the
    rows' keys). Table and column names come from code; values are rendered as SQL literals.
    The caller has locked the rows."""
    if not rows:
        return
    if len(key_columns) == 1:
        key = key_columns[0]
        head, labels = f"case {key}", [_sql(row[key]) for row in rows]
        where = f"{key} in ({', '.join(labels)})"
    else:
        head = "case"
        labels = [" and ".join(f"{k} = {_sql(row[k])}" for k in key_columns) for row in rows]
        where = " or ".join(f"({label})" for label in labels)
    assignments = [f"{column} = {head} "
                   + " ".join(f"when {label} then {_sql(row[column])}" for label, row in zip(labels, rows))
                   + f" else {column} end"
                   for column in columns]
    db.execute(f"update {table} set {', '.join(assignments)} where {where}")


def _sql(value: Any) -> str:
    return literal_of(value).decode("utf-8")


if __name__ == "__main__":
    sys.exit(main_for(Transitioner))
