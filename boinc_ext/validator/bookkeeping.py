"""What a validated or invalid result changes outside its own row (stock validator's
is_valid/is_invalid and credit.cpp grant_credit): host avg_turnaround and credit, the
host's user's and team's credit, the host_app_version reliability counters, and the
credited_job table.

Rows are read `for update` in a fixed order (each host with its host_app_version rows,
then users, then teams; each by id), so that validators working side by side cannot
deadlock one another. They are read once for a whole batch of workunits and changed in
memory, workunit after workunit in the batch's order, so that a host, user or team credited
by several workunits ends as if they had been validated one by one; `apply` returns the
changes for the caller to write with the rest of the batch's transaction.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from boinc_ext.boinc.host_app_version import KEY_COLUMNS, create_missing_rows, generalized_app_version_id
from boinc_ext.boinc.table_updates import RowChanges
from boinc_ext.validator.credit import update_average

_HOST_COLUMNS = ("id", "userid", "total_credit", "expavg_credit", "expavg_time", "avg_turnaround")
_CREDIT_COLUMNS = "id, teamid, total_credit, expavg_credit, expavg_time"
_HAV_COLUMNS = (*KEY_COLUMNS, "max_jobs_per_day", "consecutive_valid")


@dataclass(frozen=True)
class BookkeepingSettings:
    daily_result_quota: int = 0
    update_credited_job: bool = False


@dataclass
class WorkunitOutcome:
    """One workunit's newly valid results (with their credit) and newly invalid ones;
    `notes` collects what the bookkeeping skipped for it."""

    wu: Mapping[str, Any]
    unreplicated: bool  # stock: only replicated jobs build consecutive_valid
    valid: Sequence[tuple[Mapping[str, Any], float]]
    invalid: Sequence[Mapping[str, Any]]
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


class Bookkeeping:
    """Applies a batch of workunits' outcomes to the rows they touch."""

    def __init__(self, db, settings: BookkeepingSettings, now: float):
        self.db = db
        self.settings = settings
        self.now = now
        self._changed: dict[str, dict[Any, dict[str, Any]]] = {"host": {}, "hav": {}, "user": {}, "team": {}}

    def apply(self, outcomes: Sequence[WorkunitOutcome]) -> list[RowChanges]:
        """Locks and changes the rows; returns the changes to write."""
        results = [r for o in outcomes for r in [r for r, _ in o.valid] + list(o.invalid)]
        hosts, havs = self._lock_hosts_and_havs({_hav_key(r) for r in results if r["hostid"]})
        credited_hosts = [hosts[r["hostid"]] for o in outcomes for r, credit in o.valid
                          if credit > 0 and r["hostid"] in hosts]
        users = self._lock_by_id("user", _CREDIT_COLUMNS, {h["userid"] for h in credited_hosts if h["userid"]})
        teams = self._lock_by_id("team", _CREDIT_COLUMNS.replace("teamid", "0 as teamid"),
                                 {u["teamid"] for u in users.values() if u["teamid"]})
        credited_jobs = []
        for outcome in outcomes:
            credited_jobs += self._apply_one(outcome, hosts, havs, users, teams)
        self._insert_credited_jobs(credited_jobs)
        return self._changes()

    def _apply_one(self, outcome: WorkunitOutcome, hosts, havs, users, teams) -> list[tuple[int, int]]:
        """One workunit's changes, in memory; returns its credited_job rows."""
        credited_jobs = []
        for result, credit in outcome.valid:
            host = hosts.get(result["hostid"])
            if host is None:
                outcome.note(f"result {result['name']}: host #{result['hostid']} not found; "
                             f"no host bookkeeping or credit")
                continue
            self._valid_host(host, result)
            if _hav_key(result) in havs:  # not when its app version is unknown (stock: hav_lookup fails)
                self._valid_hav(havs[_hav_key(result)], outcome.unreplicated)
            if credit > 0:
                self._grant(outcome, host, users, teams, result, credit)
            if self.settings.update_credited_job:
                credited_jobs.append((host["userid"], int(outcome.wu["opaque"])))
        for result in outcome.invalid:
            if _hav_key(result) in havs:  # not when the host or the app version is gone
                self._invalid_hav(havs[_hav_key(result)])
        return credited_jobs

    # --- locking reads --------------------------------------------------------------------------
    def _lock_hosts_and_havs(self, keys: set[tuple[int, int]]) -> tuple[dict[int, dict], dict[tuple[int, int], dict]]:
        """Hosts by id, and their host_app_version rows, in one locking read: a host always
        before its own rows. Missing rows of existing hosts are made as stock's hav_lookup
        makes them (boinc_ext.boinc.host_app_version), then everything is read again."""
        hosts, havs = self._select_hosts_and_havs(keys)
        if create_missing_rows(self.db, [k for k in keys if k not in havs and k[0] in hosts]):
            hosts, havs = self._select_hosts_and_havs(keys)
        return hosts, havs

    def _select_hosts_and_havs(self, keys: set[tuple[int, int]]):
        if not keys:
            return {}, {}
        host_ids = sorted({host_id for host_id, _ in keys})
        version_ids = sorted({version_id for _, version_id in keys})
        columns = ", ".join([f"h.{c}" for c in _HOST_COLUMNS] + [f"hav.{c} as hav_{c}" for c in _HAV_COLUMNS])
        # No ORDER BY (on a join it costs a filesort): the primary-key IN list is scanned,
        # and so locked, in ascending id order.
        rows = self.db.query(
            f"select {columns} from host h left join host_app_version hav on hav.host_id = h.id "
            f"and hav.app_version_id in ({', '.join(['%s'] * len(version_ids))}) "
            f"where h.id in ({', '.join(['%s'] * len(host_ids))}) for update",
            version_ids + host_ids)
        hosts, havs = {}, {}
        for row in rows:
            hosts.setdefault(row["id"], {c: row[c] for c in _HOST_COLUMNS})
            key = (row["hav_host_id"], row["hav_app_version_id"])
            if key in keys:
                havs[key] = {c: row[f"hav_{c}"] for c in _HAV_COLUMNS}
        return hosts, havs

    def _lock_by_id(self, table: str, columns: str, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        ids = sorted(ids)
        if not ids:
            return {}
        marks = ", ".join(["%s"] * len(ids))
        rows = self.db.query(f"select {columns} from `{table}` where id in ({marks}) order by id for update", ids)
        return {row["id"]: row for row in rows}

    # --- changes in memory ----------------------------------------------------------------------
    def _valid_host(self, host: dict[str, Any], result: Mapping[str, Any]) -> None:
        turnaround = result["received_time"] - result["sent_time"]
        host["avg_turnaround"] = turnaround if host["avg_turnaround"] == 0 else (
            0.7 * host["avg_turnaround"] + 0.3 * turnaround)
        host.setdefault("credit", 0.0)
        self._changed["host"][host["id"]] = host

    def _valid_hav(self, hav: dict[str, Any], unreplicated: bool) -> None:
        hav["max_jobs_per_day"] += 1
        if not unreplicated:
            hav["consecutive_valid"] += 1
        self._changed["hav"][(hav["host_id"], hav["app_version_id"])] = hav

    def _invalid_hav(self, hav: dict[str, Any]) -> None:
        hav["consecutive_valid"] = 0
        if hav["max_jobs_per_day"] > self.settings.daily_result_quota:
            hav["max_jobs_per_day"] -= 1
        self._changed["hav"][(hav["host_id"], hav["app_version_id"])] = hav

    def _grant(self, outcome: WorkunitOutcome, host: dict[str, Any], users: Mapping[int, dict],
               teams: Mapping[int, dict], result: Mapping[str, Any], credit: float) -> None:
        """Credit to the host, its user and the user's team (not the result's own userid:
        stock credits whoever owns the host now)."""
        owners = [("host", host)]
        user = users.get(host["userid"])
        if user is None and host["userid"]:
            outcome.note(f"user #{host['userid']} not found; no credit for it")
        if user is not None:
            owners.append(("user", user))
            if user["teamid"] in teams:
                owners.append(("team", teams[user["teamid"]]))
            elif user["teamid"]:
                outcome.note(f"team #{user['teamid']} not found; no credit for it")
        for table, row in owners:
            row["expavg_credit"], row["expavg_time"] = update_average(
                self.now, result["sent_time"], credit, row["expavg_credit"], row["expavg_time"])
            row["credit"] = row.get("credit", 0.0) + credit
            self._changed[table][row["id"]] = row

    # --- what to write ---------------------------------------------------------------------------
    def _changes(self) -> list[RowChanges]:
        changed = {table: list(rows.values()) for table, rows in self._changed.items()}
        credit = {"total_credit": "credit"}
        return [
            RowChanges("host", ("id",), changed["host"], ("avg_turnaround", "expavg_credit", "expavg_time"), credit),
            RowChanges("host_app_version", KEY_COLUMNS, changed["hav"],
                       ("max_jobs_per_day", "consecutive_valid")),
            RowChanges("user", ("id",), changed["user"], ("expavg_credit", "expavg_time"), credit),
            RowChanges("team", ("id",), changed["team"], ("expavg_credit", "expavg_time"), credit),
        ]

    def _insert_credited_jobs(self, credited_jobs: list[tuple[int, int]]) -> None:
        if credited_jobs:
            self.db.executemany("insert ignore into credited_job (userid, workunitid) values (%s, %s)",
                                sorted(set(credited_jobs)))


def _hav_key(result: Mapping[str, Any]) -> tuple[int, int]:
    return result["hostid"], generalized_app_version_id(result["app_version_id"], result["appid"])
