"""One INSERT ... ON CONFLICT helper for every bulk write path.

Rows travel as one array per column (`INSERT ... SELECT * FROM unnest(...)`), so
a statement has as many bind parameters as the table has columns, whatever the
number of rows: PostgreSQL's 65,535-parameter limit cannot be reached and the
statement text does not grow per row on the SQL side. Rows are still sent in
chunks (`chunk_rows`) to bound memory and lock time per statement. With
RETURNING `xmax = 0` each affected row says whether it was inserted or updated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, bindparam, cast, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.orm import Session

DEFAULT_CHUNK_ROWS = 10_000


@dataclass(frozen=True)
class UpsertResult:
    inserted: int
    updated: int
    unchanged: int  # rows skipped by DO NOTHING (or filtered by `where`)


def upsert(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str],
    update: Mapping[str, ColumnElement[Any]] | None = None,
    where: ColumnElement[bool] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> UpsertResult:
    """Insert `rows` into `table`; on a `conflict` key clash update `update` or do nothing.

    `update` maps column -> expression over `table` (the existing row) and
    `excluded(name)` (the proposed row). Every row must have the same keys.
    """
    if not rows:
        return UpsertResult(0, 0, 0)
    names = list(rows[0].keys())
    columns = [table.c[name] for name in names]
    arrays = [cast(bindparam(f"col_{i}"), ARRAY(column.type)) for i, column in enumerate(columns)]
    source = select(func.unnest(*arrays).table_valued(*names).render_derived(name="src"))
    stmt = insert(table).from_select(names, source)
    if update:
        stmt = stmt.on_conflict_do_update(
            index_elements=list(conflict), set_=dict(update), where=where
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
    stmt = stmt.returning(literal_column("xmax = 0").label("inserted"))

    inserted = updated = 0
    for start in range(0, len(rows), chunk_rows):
        chunk = rows[start : start + chunk_rows]
        params = {f"col_{i}": [row[name] for row in chunk] for i, name in enumerate(names)}
        for (was_inserted,) in session.execute(stmt, params):
            if was_inserted:
                inserted += 1
            else:
                updated += 1
    return UpsertResult(inserted, updated, len(rows) - inserted - updated)


def excluded(table: Table, name: str) -> ColumnElement[Any]:
    """The proposed row's value in an ON CONFLICT DO UPDATE expression."""
    return insert(table).excluded[name]
