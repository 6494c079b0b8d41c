"""host_app_version penalties for timed-out results (stock BOINC's sched/transitioner.cpp
result_timed_out): the workunit's delay_bound as a turnaround sample, one job a day less,
consecutive_valid 0."""
from __future__ import annotations

from typing import Any

from boinc_ext.boinc.db import Database
from boinc_ext.boinc.host_app_version import KEY_COLUMNS, generalized_app_version_id, get_or_create_rows
from boinc_ext.boinc.table_updates import RowChanges, update_rows
from boinc_ext.transitioner.decision import WorkunitTransition

HAV_AVG_THRESHOLD = 20  # turnaround samples before the average turns exponential
HAV_AVG_WEIGHT = 0.01   # a new sample's weight in the exponential average
HAV_AVG_LIMIT = 10      # samples are capped at this many times the average
_HAV_PENALIZED = ("turnaround_n", "turnaround_avg", "turnaround_var", "turnaround_q", "max_jobs_per_day",
                  "consecutive_valid")


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
    sample, one job a day less and consecutive_valid 0. A missing row is got as stock's
    hav_lookup gets it (boinc_ext.boinc.host_app_version); if the app version itself is
    unknown the result goes unpenalized, as in stock. Rows are locked after the batch's
    workunits and results, in key order, like the validator's."""

    def __init__(self, db: Database, daily_result_quota: int):
        self.db = db
        self.daily_result_quota = daily_result_quota

    def apply(self, transitions: list[WorkunitTransition]) -> None:
        samples = [(t, result) for t in transitions for result in t.timed_out if result["hostid"]]
        if not samples:
            return
        havs = get_or_create_rows(self.db, {self._key(t, result) for t, result in samples}, _HAV_PENALIZED)
        for t, result in samples:
            self._penalize(t, result, havs.get(self._key(t, result)))
        update_rows(self.db, [RowChanges("host_app_version", KEY_COLUMNS, list(havs.values()), _HAV_PENALIZED)])

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
