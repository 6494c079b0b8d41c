"""The validator daemon: what stock BOINC's sched/validator does, with pluggable policies.

For every workunit of `--app` with need_validate set it prepares each result's outputs
once (policy.prepare), finds or checks against the canonical result (quorum.py), decides
states, credit and replication (decision.py), and writes it all, with the host, user, team
and host_app_version bookkeeping (bookkeeping.py).

Workunits are validated in batches of up to BATCH_WORKUNITS, in two steps:

1. No lock held: one short non-locking read of the batch's workunits with their results;
   then, workunit by workunit, the decision is taken over those unlocked rows only to
   prepare and compare the outputs it needs (reading and deserialising them may take
   long); the prepared outputs are released and only the answers kept (quorum.py,
   PreparedResults.settle). Reporting clients never wait for this step.
2. One transaction: one locking read of the workunits (need_validate re-checked) and their
   results, each decision taken again over the locked rows from the kept answers, one
   locking read per bookkeeping table, one UPDATE per table, one commit. A workunit whose
   results changed meanwhile so that its decision needs outputs or comparisons that step 1
   did not make (say a result was reported) is left out, need_validate still set: the
   next pass validates it again with the new rows. Changes that need nothing new (say a
   result sent) are simply decided over the locked rows.

A daemon killed at any moment leaves all of a batch's changes or none, and the row locks
plus the need_validate re-check mean a workunit is never validated, nor its credit
granted, twice. If a batch's transaction fails, it is rolled back and done again one
workunit per transaction (from the same answers), so that a failure costs only the
workunit it belongs to, as it would without batches. An unexpected exception from the
policy costs only its workunit too, and is never a poison pill (policy_failures.py).

Run: python -m boinc_ext.validator --app r_job --policy rds [stock validator flags]
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

from boinc_ext.daemons.base import Daemon, DaemonConfigError, main_for

from boinc_ext.daemons.options import DaemonOptions, dry_run_option, flag, one_pass_n_wu_option, option
from boinc_ext.boinc.db import TransientDbError
from boinc_ext.boinc.table_updates import RowChanges, update_rows
from boinc_ext.boinc.states import OUTCOME_VALIDATE_ERROR, VALIDATE_STATE_VALID
from boinc_ext.validator import events
from boinc_ext.validator.bookkeeping import Bookkeeping, BookkeepingSettings, WorkunitOutcome
from boinc_ext.validator.credit import (
    DEFAULT_MAX_GRANTED_CREDIT,
    CreditConfigError,
    CreditMode,
    CreditRules,
)
from boinc_ext.validator.decision import RESULT_COLUMNS, WorkunitValidation
from boinc_ext.validator.errors import PolicyConfigError
from boinc_ext.validator.output_files import OutputLocator
from boinc_ext.validator.policy import BUILTIN_POLICIES, DEFAULT_POLICY, ValidationPolicy, load_policy
from boinc_ext.validator.policy_failures import PolicyFailures, guarded
from boinc_ext.validator.quorum import NotPrepared, PreparedResults

SELECT_LIMIT = 1000   # workunits per enumeration query
BATCH_WORKUNITS = 100  # workunits per transaction

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


@dataclass(frozen=True)
class ValidatorOptions(DaemonOptions):
    wu_id: int | None = option(None, flag(type=int, metavar="ID", help="validate only this workunit, then exit"))
    min_wu_id: int | None = option(None, flag(type=int, metavar="ID", help="only workunits with id >= ID"))
    max_wu_id: int | None = option(None, flag(type=int, metavar="ID", help="only workunits with id <= ID"))
    one_pass_N_WU: int | None = one_pass_n_wu_option("validate")
    dry_run: bool = dry_run_option(help="decide and log, but write nothing")
    update_credited_job: bool = option(False, flag(
        help="add (userid, workunit opaque) to credited_job for each valid result"))
    credit_mode: CreditMode = option(
        CreditMode.RUNTIME,
        flag("--credit_from_runtime", action="store_const", const=CreditMode.RUNTIME,
             help="elapsed time x flops estimate (the default)"),
        flag("--credit_from_wu", action="store_const", const=CreditMode.FROM_WU,
             help="the workunit's credit (create_work --credit, or <credit> in the input template)"),
        flag("--no_credit", action="store_const", const=CreditMode.NONE, help="grant no credit"))
    max_granted_credit: float = option(DEFAULT_MAX_GRANTED_CREDIT, flag(
        type=float, metavar="X", help=f"at most X credit per result; runtime claims above X are ignored "
                                               f"(default {DEFAULT_MAX_GRANTED_CREDIT:g})"))
    policy: str = option(DEFAULT_POLICY, flag(metavar="NAME", help=f"how outputs are compared: "
                                              f"{', '.join(BUILTIN_POLICIES)}, or package.module:Class "
                                              f"(default {DEFAULT_POLICY})"))
    rel_tolerance: str | None = option(None, flag(
        metavar="X", help="rds policy: relative tolerance for numbers (default sqrt(2^-52) ~ 1.5e-8)"))
    policy_option: tuple[tuple[str, str], ...] = option((), flag(
        type=_key_value, action="append", metavar="KEY=VALUE", help="an option of the chosen policy (repeatable)"))

    @property
    def runs_once(self) -> bool:
        """As stock: --wu_id, --one_pass_N_WU and --dry_run are debugging runs of one pass."""
        return self.one_pass or self.wu_id is not None or bool(self.one_pass_N_WU) or self.dry_run

    def policy_settings(self) -> dict[str, str]:
        settings = dict(self.policy_option)
        if self.rel_tolerance is not None:
            settings["rel_tolerance"] = self.rel_tolerance
        return settings


class Validator(Daemon):
    name = "ext_validator"
    options_class = ValidatorOptions
    batch_size = BATCH_WORKUNITS

    def __init__(self, *args, policy: ValidationPolicy | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.wu_id: int | None = self.options.wu_id
        self.one_pass_n_wu: int | None = self.options.one_pass_N_WU
        self.dry_run: bool = self.options.dry_run
        self.policy = policy
        self.locator: OutputLocator | None = None
        self.bookkeeping: BookkeepingSettings | None = None
        self.credit_rules: CreditRules | None = None
        self._app: dict[str, Any] | None = None
        self.policy_failures = PolicyFailures()

    # --- setup ---------------------------------------------------------------------------------
    def setup(self) -> None:
        """Once, before the first pass: a bad setting ends the daemon with a clear error."""
        if not self.options.app:
            raise DaemonConfigError("--app NAME is required (the app whose results to validate)")
        super().setup()
        self.locator = OutputLocator.for_project(self.config)
        self.bookkeeping = BookkeepingSettings(
            daily_result_quota=self.config.option_int("daily_result_quota", 0, minimum=0),
            update_credited_job=self.options.update_credited_job)
        try:
            self.credit_rules = CreditRules(self.options.credit_mode, self.options.max_granted_credit)
        except CreditConfigError as exc:
            raise DaemonConfigError(str(exc)) from None
        if self.policy is None:
            try:
                self.policy = load_policy(self.options.policy, self.options.policy_settings())
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
        self._app = self._load_app()
        handled = 0
        after_id = 0
        while not self.should_stop():
            wu_ids = self._workunits_to_validate(after_id, self._enumeration_limit(handled))
            if not wu_ids:
                break
            for start in range(0, len(wu_ids), self.batch_size):
                if self.should_stop():
                    break
                handled += self.validate_batch(wu_ids[start:start + self.batch_size])
            if self.one_pass_n_wu and handled >= self.one_pass_n_wu:
                break
            after_id = wu_ids[-1]
        return handled > 0

    def _enumeration_limit(self, handled: int) -> int:
        """With --one_pass_N_WU, never more than the workunits still to do."""
        return min(SELECT_LIMIT, self.one_pass_n_wu - handled) if self.one_pass_n_wu else SELECT_LIMIT

    def _workunits_to_validate(self, after_id: int, limit: int) -> list[int]:
        clauses, params = ["appid = %s", "need_validate > 0", "id > %s"], [self._app["id"], after_id]
        for value, clause in ((self.options.wu_id, "id = %s"), (self.options.min_wu_id, "id >= %s"),
                              (self.options.max_wu_id, "id <= %s")):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        rows = self.db.query(f"select id from workunit where {' and '.join(clauses)}{self.mod_clause()} "
                             f"order by id limit %s", params + [limit])
        return [row["id"] for row in rows]

    # --- a batch of workunits: prepared with no lock held, then one transaction ---------------
    def validate_batch(self, wu_ids: list[int]) -> int:
        """Validates the workunits that still need it; returns how many did. A batch whose
        transaction fails is done again one workunit per transaction: the workunits before
        the failing one are then kept and the failure is raised for that workunit alone."""
        now = int(time.time())
        prepared = self._prepare_batch(wu_ids, now)
        if not prepared:
            return 0
        try:
            return self._validate_together(prepared, now)
        except TransientDbError:
            raise  # the daemon backs off and tries the pass again
        except Exception as exc:
            if len(prepared) == 1:
                raise
            self.log.warning("a batch of %d workunits (#%d-#%d) failed (%s: %s); validating them one by one",
                             len(prepared), min(prepared), max(prepared), type(exc).__name__, exc)
        return sum(self._validate_together({wu_id: answers}, now) for wu_id, answers in prepared.items())

    # --- step 1: no lock held -------------------------------------------------------------------
    def _prepare_batch(self, wu_ids: list[int], now: int) -> dict[int, PreparedResults]:
        """The answers each workunit's decision needs, by workunit id, from rows read with
        no lock; workunits whose policy failed are left out."""
        prepared = {}
        for wu, results in self._read_workunits(wu_ids, lock=False):  # autocommit: one statement
            if self.should_stop():
                break
            answers = self._prepare_workunit(wu, results, now)
            if answers is not None:
                prepared[wu["id"]] = answers
        return prepared

    def _prepare_workunit(self, wu: dict[str, Any], results: list[dict[str, Any]],
                          now: int) -> PreparedResults | None:
        """Decides over the unlocked rows, for the preparations and comparisons only (the
        decision is dropped); None if the policy failed and the workunit waits for the next
        pass."""
        wu_log = self.item_log("WU", wu["id"], wu["name"])
        prepare, same = self._prepare_result, self.policy.same
        if self.policy_failures.is_last_attempt(wu["id"]):
            prepare = guarded(prepare, wu_log, lambda result: f"result #{result['id']} {result['name']}")
            same = guarded(same, wu_log, lambda a, b: "a comparison of two results")
        answers = PreparedResults(prepare, same, lambda handle: self._release(handle, wu_log))
        try:
            WorkunitValidation(wu, results, answers, self.credit_rules, now).decide()
        except Exception:
            failures = self.policy_failures.failed(wu["id"])
            wu_log.exception("%s (attempt %d of %d); %s", events.POLICY_FAILED, failures,
                             self.policy_failures.attempts, events.RETRIED_NEXT_PASS)
            return None
        finally:
            answers.release()
        self.policy_failures.forget(wu["id"])
        return answers.settle()

    def _prepare_result(self, result: dict[str, Any]) -> Any:
        return self.policy.prepare(self.locator.files_to_validate(result["xml_doc_in"], result["name"]))

    def _release(self, handle: Any, wu_log: logging.LoggerAdapter) -> None:
        """policy.release; its failure is logged, never raised (the decision stands)."""
        try:
            self.policy.release(handle)
        except Exception:
            wu_log.exception("%s in release()", events.POLICY_FAILED)

    # --- step 2: one transaction ----------------------------------------------------------------
    def _validate_together(self, prepared: dict[int, PreparedResults], now: int) -> int:
        validations: list[WorkunitValidation] = []
        notes: dict[int, list[str]] = {}
        rolled_back = False
        try:
            with self.db.transaction():
                for wu, results in self._read_workunits(sorted(prepared), lock=True):
                    validation = self._decide(wu, results, prepared[wu["id"]], now)
                    if validation is not None:
                        validations.append(validation)
                if validations:
                    notes = self._write(validations)
                if self.dry_run:
                    raise _DryRun
        except _DryRun:
            rolled_back = True
        for validation in validations:
            self._log(validation, notes.get(validation.wu["id"], []), rolled_back)
        return len(validations)

    def _read_workunits(self, wu_ids: list[int], lock: bool) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """The workunits that still need validation, each with its results, in id order;
        with `lock`, all rows locked (each workunit, then its results)."""
        wu_columns = _WU_COLUMNS + (("xml_doc",) if self.credit_rules.mode is CreditMode.FROM_WU else ())
        columns = ", ".join([f"wu.{c} as wu_{c}" for c in wu_columns] + [f"res.{c}" for c in _RESULT_COLUMNS])
        marks = ", ".join(["%s"] * len(wu_ids))
        # No ORDER BY: on this join it costs a temporary table and a filesort; sorted below.
        rows = self.db.query(f"select {columns} from workunit wu left join result res on res.workunitid = wu.id "
                             f"where wu.id in ({marks}) and wu.need_validate > 0{' for update' if lock else ''}",
                             wu_ids)
        workunits: dict[int, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        for row in rows:
            wu_id = row["wu_id"]
            if wu_id not in workunits:
                workunits[wu_id] = ({c: row[f"wu_{c}"] for c in wu_columns}, [])
            if row["id"] is not None:
                workunits[wu_id][1].append({c: row[c] for c in _RESULT_COLUMNS})
        for _, results in workunits.values():
            results.sort(key=lambda result: result["id"])
        return [workunits[wu_id] for wu_id in sorted(workunits)]

    def _decide(self, wu: dict[str, Any], results: list[dict[str, Any]], answers: PreparedResults,
                now: int) -> WorkunitValidation | None:
        """The decision over the locked rows, from the answers of step 1; None if it needs
        more (the rows changed): the workunit keeps need_validate for the next pass."""
        try:
            return WorkunitValidation(wu, results, answers.settle(), self.credit_rules, now).decide()
        except NotPrepared as exc:
            self.item_log("WU", wu["id"], wu["name"]).info("%s (%s); %s", events.RESULTS_CHANGED, exc,
                                                           events.RETRIED_NEXT_PASS)
            return None

    def _write(self, validations: list[WorkunitValidation]) -> dict[int, list[str]]:
        """Every change of the batch, one UPDATE per table (after the bookkeeping's locking
        reads); returns the bookkeeping's notes by workunit id. need_validate always goes
        from 1 to 0, so every workunit row changes."""
        outcomes = [WorkunitOutcome(v.wu, self._unreplicated(v.wu), v.newly_valid, v.newly_invalid)
                    for v in validations]
        bookkeeping = Bookkeeping(self.db, self.bookkeeping, time.time())
        changes = bookkeeping.apply(outcomes)
        update_rows(self.db, [
            RowChanges("workunit", ("id",), [v.wu for v in validations], _WU_WRITTEN, every_row_changes=True),
            RowChanges("result", ("id",), [r for v in validations for r in v.changed_results()], RESULT_COLUMNS),
            *changes])
        return {outcome.wu["id"]: outcome.notes for outcome in outcomes}

    def _unreplicated(self, wu: dict[str, Any]) -> bool:
        return wu["target_nresults"] == 1 and self._app["target_nresults"] > 1

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
