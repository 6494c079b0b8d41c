"""Assimilator: what stock BOINC's sched/assimilator does, with a handler per app.

Workunits with assimilate_state READY (of --app, or of every app with a handler) are
handled one per transaction, holding the workunit's row lock: load its results, find the
canonical result (none and no error bits: error_mask 32), run the app's handler, then set
assimilate_state DONE and transition_time = now so the transitioner moves on to file
deletion. A handler that defers leaves assimilate_state INIT instead (stock
DEFER_ASSIMILATION); any other handler error stops the daemon, as stock does, with the
workunit's transaction rolled back.

    python -m boinc_ext.assimilator [--app NAME] [--one_pass] [--one_pass_N_WU N] [--mod N R]
                                    [--sleep_interval S] [-d N] [--dont_update_db]
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from boinc_ext.daemons.base import Daemon, DaemonConfigError

from boinc_ext.daemons.options import DaemonOptions, dry_run_option, one_pass_n_wu_option, sleep_interval_option
from boinc_ext.boinc.states import ASSIMILATE_DONE, ASSIMILATE_INIT, ASSIMILATE_READY, WU_ERROR_NO_CANONICAL_RESULT
from boinc_ext.assimilator.context import AssimilationContext, AssimilationDeferred, Handler
from boinc_ext.assimilator.registry import HANDLERS

WUS_PER_PASS = 1000  # as stock

EVENT_ASSIMILATED = "assimilated"
EVENT_DEFERRED = "assimilation deferred"
EVENT_NO_CANONICAL = "no canonical result: error_mask 32"
EVENT_HANDLER_FAILED = "handler failed"
EVENT_DRY_RUN = "handled; database left unchanged (--dont_update_db)"

_WU_COLUMNS = ("id, name, appid, error_mask, canonical_resultid, assimilate_state, batch, opaque, "
               "min_quorum, target_nresults, result_template_file")


@dataclass(frozen=True)
class AssimilatorOptions(DaemonOptions):
    sleep_interval: float = sleep_interval_option(10.0)
    one_pass_N_WU: int | None = one_pass_n_wu_option("handle")
    dry_run: bool = dry_run_option("--dont_update_db", "--dry_run",
                                   help="run the handlers but change nothing in the database (testing)")

    @property
    def runs_once(self) -> bool:
        return self.one_pass or bool(self.one_pass_N_WU)


class _DryRun(Exception):
    """Rolls back a --dont_update_db workunit's transaction."""


class Assimilator(Daemon):
    name = "ext_assimilator"
    options_class = AssimilatorOptions

    def __init__(self, *args, handlers: dict[str, Handler] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.handlers = dict(HANDLERS if handlers is None else handlers)
        self.max_wus: int | None = self.options.one_pass_N_WU
        self.update_db = not self.options.dry_run
        self.apps: dict[int, str] = {}

    def setup(self) -> None:
        super().setup()
        self.apps = self._handled_apps()

    def do_pass(self) -> bool:
        with self.db.transaction():
            rows = self.db.query(
                f"select id from workunit where assimilate_state = %s "
                f"and appid in ({', '.join(str(int(i)) for i in self.apps)}){self.mod_clause()} "
                f"order by id limit %s", (ASSIMILATE_READY, self.max_wus or WUS_PER_PASS))
        did_work = False
        for row in rows:
            if self.should_stop():
                break
            did_work |= self.assimilate(row["id"])
        return did_work

    def assimilate(self, wu_id: int) -> bool:
        """One workunit in one transaction; True if its state changed."""
        now = int(time.time())
        try:
            with self.db.transaction():
                wu = self.db.query_one(f"select {_WU_COLUMNS} from workunit where id = %s "
                                       f"and assimilate_state = %s for update", (wu_id, ASSIMILATE_READY))
                if wu is None:
                    return False
                log = self.item_log("WU", wu_id, wu["name"])
                new_state = self._handle(wu, self.apps[wu["appid"]], now, log)
                self.db.execute("update workunit set assimilate_state = %s, transition_time = %s where id = %s",
                                (new_state, now, wu_id))
                if not self.update_db:
                    raise _DryRun
        except _DryRun:
            log.info("%s", EVENT_DRY_RUN)
            return False
        log.info("%s", EVENT_ASSIMILATED if new_state == ASSIMILATE_DONE else EVENT_DEFERRED)
        return True

    def _handle(self, wu: dict[str, Any], app_name: str, now: int, log) -> int:
        """Runs the app's handler; returns the workunit's new assimilate_state."""
        results = self.db.query("select * from result where workunitid = %s order by id", (wu["id"],))
        canonical = next((r for r in results if wu["canonical_resultid"] and r["id"] == wu["canonical_resultid"]),
                         None)
        if canonical is None and not wu["error_mask"]:
            wu["error_mask"] = WU_ERROR_NO_CANONICAL_RESULT
            self.db.execute("update workunit set error_mask = %s where id = %s", (wu["error_mask"], wu["id"]))
            log.error("%s", EVENT_NO_CANONICAL)
        context = AssimilationContext(self.config, self.db, app_name, wu, results, canonical, now, log)
        try:
            self.handlers[app_name](context)
        except AssimilationDeferred as exc:
            log.warning("%s: %s", EVENT_DEFERRED, exc)
            return ASSIMILATE_INIT
        except Exception as exc:
            log.error("%s: %s: %s", EVENT_HANDLER_FAILED, type(exc).__name__, exc)
            raise
        return ASSIMILATE_DONE

    def _handled_apps(self) -> dict[int, str]:
        """{app id: app name} of the apps this daemon assimilates."""
        names = [self.options.app] if self.options.app else sorted(self.handlers)
        for name in names:
            if name not in self.handlers:
                raise DaemonConfigError(f"--app {name}: no assimilation handler for it "
                                        f"(handlers exist for: {', '.join(sorted(self.handlers))})")
        placeholders = ", ".join(["%s"] * len(names))
        with self.db.transaction():
            rows = self.db.query(f"select id, name from app where name in ({placeholders})", names)
        if not rows:
            raise DaemonConfigError(f"none of the apps with handlers ({', '.join(names)}) is in the database")
        return {row["id"]: row["name"] for row in rows}
