"""The validator daemon: what stock BOINC's sched/validator does, with pluggable policies.

For every workunit of `--app` with need_validate set it locks the workunit and its
results, prepares each result's outputs once (policy.prepare), finds or checks against
the canonical result (quorum.py), decides states, credit and replication (decision.py),
and writes it all, with the host, user, team and host_app_version bookkeeping
(bookkeeping.py), in one transaction. A daemon killed at any moment leaves all of a
workunit's changes or none, and the row lock plus the need_validate re-check mean a
workunit is never validated, nor its credit granted, twice.

Run: python -m boinc_ext.validator --app r_job --policy rds [stock validator flags]
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from typing import Any

from ..daemon import Daemon, DaemonConfigError, main_for
from ..states import OUTCOME_VALIDATE_ERROR, VALIDATE_STATE_VALID
from . import events
from .bookkeeping import Bookkeeping, BookkeepingSettings
from .credit import (
    DEFAULT_MAX_GRANTED_CREDIT,
    CreditConfigError,
    CreditMode,
    CreditRules,
)
from .decision import RESULT_COLUMNS, WorkunitValidation
from .errors import PolicyConfigError
from .output_files import OutputLocator
from .policy import BUILTIN_POLICIES, DEFAULT_POLICY, ValidationPolicy, load_policy
from .quorum import PreparedResults
from .row_updates import RowChanges, update_rows

SELECT_LIMIT = 1000  # workunits per enumeration query

_WU_COLUMNS = ("id", "name", "appid", "need_validate", "canonical_resultid", "canonical_credit", "min_quorum",
               "assimilate_state", "transition_time", "opaque", "target_nresults", "max_success_results",
               "error_mask", "rsc_fpops_bound")
_RESULT_COLUMNS = ("id", "name", "workunitid", "server_state", "outcome", "validate_state", "granted_credit",
                   "xml_doc_in", "hostid", "userid", "sent_time", "received_time", "appid", "app_version_id",
                   "elapsed_time", "flops_estimate")
_WU_WRITTEN = ("need_validate", "error_mask", "assimilate_state", "transition_time", "target_nresults",
               "canonical_resultid", "canonical_credit")


class _DryRun(Exception):
    """Raised inside the transaction to roll a --dry_run workunit back."""


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    return key, value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


class Validator(Daemon):
    name = "ext_validator"
    default_sleep_interval = 5.0

    def __init__(self, *args, policy: ValidationPolicy | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        extra = self.options.extra
        self.wu_id: int | None = extra.get("wu_id")
        self.one_pass_n_wu: int | None = extra.get("one_pass_N_WU")
        self.dry_run: bool = bool(extra.get("dry_run"))
        if self.wu_id is not None or self.one_pass_n_wu or self.dry_run:
            # As stock: these are debugging runs that end after one pass.
            self.options = dataclasses.replace(self.options, one_pass=True)
        self.locator = OutputLocator.for_project(self.config)
        self.bookkeeping = BookkeepingSettings(
            daily_result_quota=self.config.option_int("daily_result_quota", 0),
            update_credited_job=bool(extra.get("update_credited_job")))
        self.policy = policy
        self.credit_rules: CreditRules | None = None
        self._app: dict[str, Any] | None = None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--wu_id", type=int, metavar="ID", help="validate only this workunit, then exit")
        parser.add_argument("--min_wu_id", type=int, metavar="ID", help="only workunits with id >= ID")
        parser.add_argument("--max_wu_id", type=int, metavar="ID", help="only workunits with id <= ID")
        parser.add_argument("--one_pass_N_WU", type=_positive_int, metavar="N",
                            help="validate at most N workunits, then exit")
        parser.add_argument("--dry_run", action="store_true", help="decide and log, but write nothing")
        parser.add_argument("--update_credited_job", action="store_true",
                            help="add (userid, workunit opaque) to credited_job for each valid result")
        credit = parser.add_mutually_exclusive_group()
        credit.add_argument("--credit_from_runtime", action="store_const", dest="credit_mode",
                            const=CreditMode.RUNTIME, help="elapsed time x flops estimate (the default)")
        credit.add_argument("--credit_from_wu", action="store_const", dest="credit_mode", const=CreditMode.FROM_WU,
                            help="the workunit's credit (create_work --credit, or <credit> in the input template)")
        credit.add_argument("--no_credit", action="store_const", dest="credit_mode", const=CreditMode.NONE,
                            help="grant no credit")
        parser.add_argument("--max_granted_credit", type=float, default=DEFAULT_MAX_GRANTED_CREDIT, metavar="X",
                            help=f"at most X credit per result; runtime claims above X are ignored "
                                 f"(default {DEFAULT_MAX_GRANTED_CREDIT:g})")
        parser.add_argument("--policy", default=DEFAULT_POLICY, metavar="NAME",
                            help=f"how outputs are compared: {', '.join(BUILTIN_POLICIES)}, or "
                                 f"package.module:Class (default {DEFAULT_POLICY})")
        parser.add_argument("--rel_tolerance", metavar="X",
                            help="rds policy: relative tolerance for numbers (default sqrt(2^-52) ~ 1.5e-8)")
        parser.add_argument("--policy_option", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                            help="an option of the chosen policy (repeatable)")

    # --- setup ---------------------------------------------------------------------------------
    def _setup(self) -> None:
        """Checked at the first pass, so that a bad setting ends the daemon with a clear error."""
        if self.credit_rules is not None:
            return
        extra = self.options.extra
        if not self.options.app:
            raise DaemonConfigError("--app NAME is required (the app whose results to validate)")
        try:
            self.credit_rules = CreditRules(extra.get("credit_mode") or CreditMode.RUNTIME,
                                            extra.get("max_granted_credit", DEFAULT_MAX_GRANTED_CREDIT))
        except CreditConfigError as exc:
            raise DaemonConfigError(str(exc)) from None
        if self.policy is None:
            settings = dict(extra.get("policy_option") or [])
            if extra.get("rel_tolerance") is not None:
                settings["rel_tolerance"] = extra["rel_tolerance"]
            try:
                self.policy = load_policy(extra.get("policy") or DEFAULT_POLICY, settings)
            except PolicyConfigError as exc:
                raise DaemonConfigError(str(exc)) from None
        self.log.info("policy %s %s, credit %s (max %g)%s", self.policy.name, self.policy.options,
                      self.credit_rules.mode.value, self.credit_rules.max_granted_credit,
                      ", dry run" if self.dry_run else "")

    def _load_app(self) -> dict[str, Any]:
        """Looked up every pass, as stock does (its target_nresults may change)."""
        with self.db.transaction():
            app = self.db.query_one("select id, target_nresults from app where name = %s", (self.options.app,))
        if app is None:
            raise DaemonConfigError(f"--app {self.options.app}: no such app in the database")
        return app

    # --- the pass ------------------------------------------------------------------------------
    def do_pass(self) -> bool:
        self._setup()
        self._app = self._load_app()
        did_work = False
        handled = 0
        after_id = 0
        while not self.should_stop():
            wu_ids = self._workunits_to_validate(after_id)
            if not wu_ids:
                break
            for wu_id in wu_ids:
                if self.should_stop():
                    break
                if self.validate_workunit(wu_id):
                    did_work = True
                    handled += 1
                    if self.one_pass_n_wu and handled >= self.one_pass_n_wu:
                        return did_work
            after_id = wu_ids[-1]
        return did_work

    def _workunits_to_validate(self, after_id: int) -> list[int]:
        clauses, params = ["appid = %s", "need_validate > 0", "id > %s"], [self._app["id"], after_id]
        for flag, clause in (("wu_id", "id = %s"), ("min_wu_id", "id >= %s"), ("max_wu_id", "id <= %s")):
            if self.options.extra.get(flag) is not None:
                clauses.append(clause)
                params.append(self.options.extra[flag])
        with self.db.transaction():
            rows = self.db.query(f"select id from workunit where {' and '.join(clauses)}{self.mod_clause()} "
                                 f"order by id limit %s", params + [SELECT_LIMIT])
        return [row["id"] for row in rows]

    # --- one workunit, one transaction ---------------------------------------------------------
    def validate_workunit(self, wu_id: int) -> bool:
        """Validates one workunit; False if it no longer needed validation."""
        now = int(time.time())
        validation = None
        notes: list[str] = []
        rolled_back = False
        try:
            with self.db.transaction():
                wu, results = self._lock_workunit(wu_id)
                if wu is None:
                    return False
                validation = self._decide(wu, results, now)
                notes = self._write(validation)
                if self.dry_run:
                    raise _DryRun
        except _DryRun:
            rolled_back = True
        finally:
            if validation is not None:
                validation.prepared.release()
        self._log(validation, notes, rolled_back)
        return True

    def _lock_workunit(self, wu_id: int) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The workunit, if it still needs validation, and its results; all rows locked."""
        wu_columns = _WU_COLUMNS + (("xml_doc",) if self.credit_rules.mode is CreditMode.FROM_WU else ())
        columns = ", ".join([f"wu.{c} as wu_{c}" for c in wu_columns] + [f"res.{c}" for c in _RESULT_COLUMNS])
        # No ORDER BY: on this join it costs a temporary table and a filesort; sorted below.
        rows = self.db.query(f"select {columns} from workunit wu left join result res on res.workunitid = wu.id "
                             f"where wu.id = %s and wu.need_validate > 0 for update", (wu_id,))
        if not rows:
            return None, []
        wu = {c: rows[0][f"wu_{c}"] for c in wu_columns}
        results = sorted(({c: row[c] for c in _RESULT_COLUMNS} for row in rows if row["id"] is not None),
                         key=lambda result: result["id"])
        return wu, results

    def _decide(self, wu: dict[str, Any], results: list[dict[str, Any]], now: int) -> WorkunitValidation:
        prepared = PreparedResults(self._prepare_result, self.policy.same, self.policy.release)
        return WorkunitValidation(wu, results, prepared, self.credit_rules, now).decide()

    def _prepare_result(self, result: dict[str, Any]) -> Any:
        return self.policy.prepare(self.locator.files_to_validate(result["xml_doc_in"], result["name"]))

    def _write(self, validation: WorkunitValidation) -> list[str]:
        """Every change of the workunit in one statement (after the bookkeeping's locking
        reads); returns the bookkeeping's notes. need_validate always goes from 1 to 0, so
        the statement always changes something."""
        wu = validation.wu
        unreplicated = wu["target_nresults"] == 1 and self._app["target_nresults"] > 1
        bookkeeping = Bookkeeping(self.db, self.bookkeeping, time.time(), wu, unreplicated)
        changes = bookkeeping.apply(validation.newly_valid, validation.newly_invalid)
        update_rows(self.db, [RowChanges("workunit", ("id",), [wu], _WU_WRITTEN),
                              RowChanges("result", ("id",), validation.changed_results(), RESULT_COLUMNS),
                              *changes])
        return bookkeeping.notes

    # --- logging -------------------------------------------------------------------------------
    def _log(self, validation: WorkunitValidation, notes: list[str], rolled_back: bool) -> None:
        wu = validation.wu
        wu_log = self.item_log("WU", wu["id"], wu["name"])
        for event in validation.events:
            if event.result is None:
                wu_log.info("%s%s", event.name, f": {event.detail}" if event.detail else "")
            else:
                result = event.result
                level = logging.WARNING if result["outcome"] == OUTCOME_VALIDATE_ERROR else logging.INFO
                self.item_log("RESULT", result["id"], result["name"]).log(
                    level, "%s%s", event.name, f": {event.detail}" if event.detail else "")
        for note in notes:
            wu_log.warning("%s: %s", events.BOOKKEEPING, note)
        if rolled_back:
            wu_log.info("%s", events.DRY_RUN)
        n_valid = sum(1 for r in validation.results if r["validate_state"] == VALIDATE_STATE_VALID)
        wu_log.debug("%s: canonical_resultid=%d, %d valid, transition_time=%d, target_nresults=%d, error_mask=%d",
                    events.WORKUNIT_DONE, wu["canonical_resultid"], n_valid, wu["transition_time"],
                    wu["target_nresults"], wu["error_mask"])


if __name__ == "__main__":
    sys.exit(main_for(Validator))
