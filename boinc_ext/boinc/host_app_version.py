"""BOINC's host_app_version rows: their key, and getting a host's row for an app version
the way stock BOINC does (sched/credit.cpp hav_lookup).

Stock's transitioner (sched/transitioner.cpp result_timed_out) and validator
(sched/validator.cpp, before is_valid/is_invalid and credit) both call hav_lookup, so both
of our daemons get their rows here, with one behaviour. When the row for (host,
generalized app version id) is missing:

* the app version is looked up; if it is unknown, no row is made and the caller goes on
  without one (stock's transitioner then leaves the result unpenalized; its validator
  flags the row missing and writes no host_app_version change). Anonymous-platform ids
  (appid * 1000000 + n) name no app_version row, so they take this path too: stock's
  branch that inserts a row for a negative id never runs, generalized ids being positive;
* else the host's row for the same app, platform and plan class with the highest
  version_num (the lowest app version id among equals) is taken over: its key is changed
  to the new version, so a new version inherits the old one's statistics;
* else a row with every counter 0 is inserted.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from boinc_ext.boinc.schema import blank_row

Key = tuple[int, int]  # (host_id, generalized app version id)

KEY_COLUMNS = ("host_id", "app_version_id")
# A new row's counters: every column but the key, each 0.
ZEROED_COLUMNS = tuple(c for c in blank_row("host_app_version") if c not in KEY_COLUMNS)


def generalized_app_version_id(app_version_id: int, appid: int) -> int:
    """host_app_version's key: anonymous-platform versions (negative ids) map per app."""
    return appid * 1000000 - app_version_id if app_version_id < 0 else app_version_id


def lock_rows(db, keys: Iterable[Key], columns: Sequence[str]) -> dict[Key, dict[str, Any]]:
    """The rows of `keys` that exist, read `for update` in key order, with the key columns
    and `columns`."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    selected = ", ".join(dict.fromkeys((*KEY_COLUMNS, *columns)))
    where = " or ".join("(host_id = %s and app_version_id = %s)" for _ in keys)
    rows = db.query(f"select {selected} from host_app_version where {where} "
                    f"order by host_id, app_version_id for update", [value for key in keys for value in key])
    return {(row["host_id"], row["app_version_id"]): row for row in rows}


def get_or_create_rows(db, keys: Iterable[Key], columns: Sequence[str]) -> dict[Key, dict[str, Any]]:
    """The rows of `keys`, locked, missing ones made as stock does; a key whose app version
    is unknown has none. If one key's new row took over another key's row (a host with
    rows for two versions of one app), only the new key has it, as after stock's lookups
    one by one."""
    keys = sorted(set(keys))
    rows = lock_rows(db, keys, columns)
    if create_missing_rows(db, [key for key in keys if key not in rows]):
        rows = lock_rows(db, keys, columns)
    return rows


def create_missing_rows(db, keys: Iterable[Key]) -> list[Key]:
    """Makes the row of each key (known to be missing), in key order; returns the keys that
    got one (not those whose app version is unknown)."""
    return [key for key in sorted(set(keys)) if create_missing_row(db, key)]


def create_missing_row(db, key: Key) -> bool:
    """Takes over the host's row for the newest version of the same app, platform and plan
    class, else inserts a zeroed row; False (and nothing made) if the app version is unknown."""
    host_id, version_id = key
    version = db.query_one("select appid, platformid, plan_class from app_version where id = %s", (version_id,))
    if version is None:
        return False
    older = db.scalar(
        "select hav.app_version_id from host_app_version hav join app_version av on av.id = hav.app_version_id "
        "where hav.host_id = %s and av.appid = %s and av.platformid = %s and av.plan_class = %s "
        "order by av.version_num desc, hav.app_version_id limit 1 for update",
        (host_id, version["appid"], version["platformid"], version["plan_class"]))
    if older is not None:
        db.execute("update host_app_version set app_version_id = %s where host_id = %s and app_version_id = %s",
                   (version_id, host_id, older))
    else:
        # `ignore`: the scheduler may have inserted it since the caller's read.
        columns = (*KEY_COLUMNS, *ZEROED_COLUMNS)
        db.execute(f"insert ignore into host_app_version ({', '.join(columns)}) "
                   f"values ({', '.join(['%s'] * len(columns))})", key + (0,) * len(ZEROED_COLUMNS))
    return True
