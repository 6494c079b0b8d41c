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

import sys
from dataclasses import dataclass
import time
from typing import Any

from boinc_ext.boinc.crypto import PrivateKey, read_private_key
from boinc_ext.boinc.states import TRANSITION_NONE
from boinc_ext.boinc.table_updates import RowChanges, update_rows
from boinc_ext.daemons.base import Daemon, DaemonConfigError, main_for
from boinc_ext.daemons.options import DaemonOptions, flag, option
from boinc_ext.transitioner.decision import RESULT_UPDATABLE, TransitionSettings, WorkunitTransition
from boinc_ext.transitioner.penalties import TimeoutPenalties
from boinc_ext.transitioner.results import insert_result_rows, new_result_rows, read_result_template

BATCH_WORKUNITS = 100              # workunits per transaction
UPLOAD_PRIVATE_KEY = "upload_private"

_WU_COLUMNS = ("id, name, appid, min_quorum, need_validate, canonical_resultid, transition_time, "
               "delay_bound, error_mask, max_error_results, max_total_results, file_delete_state, "
               "assimilate_state, target_nresults, result_template_file, priority, hr_class, batch, "
               "app_version_id, transitioner_flags, size_class")
_RESULT_COLUMNS = ("id, workunitid, name, report_deadline, server_state, outcome, validate_state, "
                   "file_delete_state, sent_time, hostid, received_time, app_version_id, exit_status")


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
        update_rows(self.db, [RowChanges("result", ("id",), changed_results, RESULT_UPDATABLE)])
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
        update_rows(self.db, [RowChanges("workunit", ("id",), [t.wu for t in changed], tuple(columns))])

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



if __name__ == "__main__":
    sys.exit(main_for(Transitioner))

