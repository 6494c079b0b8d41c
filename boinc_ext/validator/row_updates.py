"""Changed rows of several tables written with one UPDATE statement.

A workunit's validation changes rows of up to six tables (result, workunit, host,
host_app_version, user, team). One statement per table would cost a round trip each;
a multi-table UPDATE writes them all in one. Every row is already locked by the caller's
`select ... for update`, so this takes no new locks. MariaDB updates each row of a
multi-table UPDATE once, however often the (cross) join reaches it, and each row's CASE
branch gives it its own values.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..db import literal_of


@dataclass(frozen=True)
class RowChanges:
    """New values for rows of one table: `columns` are set to each row's values; each
    column of `increments` gets the row's value under the mapped key added to it."""

    table: str
    key_columns: tuple[str, ...]
    rows: Sequence[Mapping[str, Any]]
    columns: tuple[str, ...]
    increments: Mapping[str, str] = field(default_factory=dict)


class RowsNotFound(RuntimeError):
    """The UPDATE changed nothing: some row it names does not exist (and with a cross join,
    one missing row means no table is written at all). A bug, never a volunteer's doing."""


def update_rows(db, changes: Sequence[RowChanges]) -> int:
    """Writes every change in one UPDATE; returns the number of rows changed. Table and
    column names come from code, never from input; values are rendered as SQL literals
    by the database layer. Raises RowsNotFound if nothing changed."""
    changes = [c for c in changes if c.rows]
    if not changes:
        return 0
    tables, assignments, conditions = [], [], []
    for index, change in enumerate(changes):
        alias = f"t{index}"
        tables.append(f"`{change.table}` {alias}")
        row_conditions = [" and ".join(f"{alias}.{key} = {_sql(row[key])}" for key in change.key_columns)
                          for row in change.rows]
        for column in (*change.columns, *change.increments):
            value_key = change.increments.get(column, column)
            if len(change.rows) == 1:
                value = _sql(change.rows[0][value_key])
            else:
                value = "case " + " ".join(f"when {condition} then {_sql(row[value_key])}"
                                           for condition, row in zip(row_conditions, change.rows)) + " end"
            base = f"{alias}.{column} + " if column in change.increments else ""
            assignments.append(f"{alias}.{column} = {base}{value}")
        conditions.append("(" + " or ".join(f"({c})" for c in row_conditions) + ")")
    changed = db.execute(f"update {', '.join(tables)} set {', '.join(assignments)} where {' and '.join(conditions)}")
    if not changed:
        raise RowsNotFound(f"an UPDATE of {', '.join(c.table for c in changes)} found nothing to change")
    return changed


def _sql(value: Any) -> str:
    return literal_of(value).decode("utf-8")
