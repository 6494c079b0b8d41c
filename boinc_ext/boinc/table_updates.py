"""Changed rows of BOINC tables, each table written with one UPDATE statement.

A daemon's batch changes rows of several tables (workunit, result, host, host_app_version,
user, team); each table's rows are written by one statement, a CASE per column over the
rows' keys. The caller has locked every row with its own `select ... for update`, so this
takes no new locks.

Values are rendered into the statement as SQL literals (many rows' values in one
statement), so only columns the schema declares numeric may be written: a number's literal
cannot carry anything but a number. Any other column is refused before SQL is built.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from boinc_ext.boinc.db import literal_of
from boinc_ext.boinc.schema import numeric_columns


@dataclass(frozen=True)
class RowChanges:
    """New values for rows of one table: `columns` are set to each row's values; each
    column of `increments` gets the row's value under the mapped key added to it.
    `every_row_changes`: each row is known to differ from what is stored (so a row the
    UPDATE did not change does not exist)."""

    table: str
    key_columns: tuple[str, ...]
    rows: Sequence[Mapping[str, Any]]
    columns: tuple[str, ...]
    increments: Mapping[str, str] = field(default_factory=dict)
    every_row_changes: bool = False


class RowsNotFound(RuntimeError):
    """An UPDATE changed fewer rows than it names though each of them differs: some row
    does not exist. A bug, never a volunteer's doing."""


def update_rows(db, changes: Sequence[RowChanges]) -> int:
    """Writes each change with one UPDATE; returns the number of rows changed. Raises
    ValueError, before any statement is sent, if a change names a column that is not
    numeric; RowsNotFound after writing the tables before it (the caller's transaction is
    what makes the whole all or none)."""
    for change in changes:
        check_numeric(change.table, (*change.key_columns, *change.columns, *change.increments))
    total = 0
    for change in changes:
        if change.rows:
            total += _update_table(db, change)
    return total


def check_numeric(table: str, columns: Sequence[str]) -> None:
    """Raises ValueError naming the first of `columns` that `table` does not declare numeric."""
    numeric = numeric_columns(table)
    for column in columns:
        if column not in numeric:
            raise ValueError(f"{table}.{column} is not a numeric column of BOINC's schema: "
                             f"the batched UPDATE writes numbers only")


def _update_table(db, change: RowChanges) -> int:
    rows = change.rows
    if len(change.key_columns) == 1:
        key = change.key_columns[0]
        labels = [_sql(row[key]) for row in rows]
        head, where = f"case {key}", f"{key} in ({', '.join(labels)})"
    else:
        labels = [" and ".join(f"{k} = {_sql(row[k])}" for k in change.key_columns) for row in rows]
        head, where = "case", " or ".join(f"({label})" for label in labels)
    assignments = []
    for column in (*change.columns, *change.increments):
        value_key = change.increments.get(column, column)
        if len(rows) == 1:
            value = _sql(rows[0][value_key])
        else:
            value = f"{head} " + " ".join(f"when {label} then {_sql(row[value_key])}"
                                          for label, row in zip(labels, rows)) + " end"
        base = f"{column} + " if column in change.increments else ""
        assignments.append(f"{column} = {base}{value}")
    changed = db.execute(f"update `{change.table}` set {', '.join(assignments)} where {where}")
    if change.every_row_changes and changed < len(rows):
        raise RowsNotFound(f"an UPDATE of {change.table} changed {changed} of {len(rows)} rows")
    return changed


def _sql(value: Any) -> str:
    return literal_of(value).decode("utf-8")
