"""Several rows of one table updated in one statement (fewer round trips per workunit)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def update_rows(db, table: str, key_columns: Sequence[str], rows: Sequence[Mapping[str, Any]],
                columns: Sequence[str], increments: Mapping[str, str] | None = None) -> int:
    """`UPDATE table` setting `columns` to each row's values and adding to each column of
    `increments` the row's value under the mapped key, for rows identified by `key_columns`.
    Table and column names come from code, never from input."""
    increments = increments or {}
    if not rows:
        return 0
    condition = " and ".join(f"{key} = %s" for key in key_columns)
    if len(rows) == 1:
        row = rows[0]
        assignments = [f"{c} = %s" for c in columns] + [f"{c} = {c} + %s" for c in increments]
        params = [row[c] for c in columns] + [row[key] for key in increments.values()]
        params += [row[k] for k in key_columns]
        return db.execute(f"update {table} set {', '.join(assignments)} where {condition}", params)
    assignments, params = [], []
    for column in (*columns, *increments):
        cases = " ".join(f"when {condition} then %s" for _ in rows)
        base = f"{column} + " if column in increments else ""
        assignments.append(f"{column} = {base}case {cases} end")
        value_key = increments.get(column, column)
        for row in rows:
            params += [row[k] for k in key_columns] + [row[value_key]]
    where = " or ".join(f"({condition})" for _ in rows)
    for row in rows:
        params += [row[k] for k in key_columns]
    return db.execute(f"update {table} set {', '.join(assignments)} where {where}", params)
