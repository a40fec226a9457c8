"""One INSERT ... ON CONFLICT helper for every bulk write path.

Rows travel as one array literal per column (`INSERT ... SELECT * FROM
unnest(...)`), so a statement has as many bind parameters as the table has
columns, whatever the number of rows: PostgreSQL's 65,535-parameter limit cannot
be reached, and each array is one constant to parse. Columns with one value for
every row (`constants`) are sent once. Rows still go in chunks (`chunk_rows`) to
bound memory and lock time per statement. DO NOTHING counts inserts by rowcount;
DO UPDATE returns `xmax = 0` per row to tell inserts from updates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from sqlalchemy import ColumnElement, Row, Table, func, literal, literal_column, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from lms_app.db.arrays import array_param

DEFAULT_CHUNK_ROWS = 10_000


@dataclass(frozen=True)
class UpsertResult:
    inserted: int
    updated: int
    unchanged: int  # rows skipped by DO NOTHING (or filtered by `where`)
    # With `returning`: (inserted, *returning) of each row written, in key order.
    rows: list[Row[Any]] = field(default_factory=list)


def upsert(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str],
    update: Mapping[str, ColumnElement[Any]] | None = None,
    where: ColumnElement[bool] | None = None,
    constants: Mapping[str, Any] | None = None,
    returning: Sequence[ColumnElement[Any]] = (),
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> UpsertResult:
    """Insert `rows` into `table`; on a `conflict` key clash update `update` or do nothing.

    `update` maps column -> expression over `table` (the existing row) and
    `excluded(table, name)` (the proposed row). Every row must have the same keys;
    `constants` are extra columns with the same value in every row. `returning`
    (with `update` only): columns of each written row, in `UpsertResult.rows`.

    Rows are written in the order of their conflict key, whatever order the caller
    gave: two concurrent upserts over overlapping keys then take their row locks in
    the same order and wait for each other instead of deadlocking.
    """
    if not rows:
        return UpsertResult(0, 0, 0)
    constants = dict(constants or {})
    names = list(rows[0].keys())
    sort_key = [name for name in conflict if name in names]
    if sort_key:
        rows = sorted(rows, key=itemgetter(*sort_key))
    source = select(
        func.unnest(*(array_param(f"col_{i}", table.c[n].type) for i, n in enumerate(names)))
        .table_valued(*names)
        .render_derived(name="src"),
        *(literal(value, table.c[name].type) for name, value in constants.items()),
    )
    stmt = insert(table).from_select([*names, *constants], source)
    if update:
        stmt = stmt.on_conflict_do_update(
            index_elements=list(conflict), set_=dict(update), where=where
        ).returning(literal_column("xmax = 0").label("inserted"), *returning)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))

    inserted = updated = 0
    written: list[Row[Any]] = []
    for start in range(0, len(rows), chunk_rows):
        chunk = rows[start : start + chunk_rows]
        params = {f"col_{i}": [row[name] for row in chunk] for i, name in enumerate(names)}
        result = session.execute(stmt, params)
        if update:
            for row in result:
                inserted += row.inserted
                updated += not row.inserted
                if returning:
                    written.append(row)
        else:
            inserted += result.rowcount
    return UpsertResult(inserted, updated, len(rows) - inserted - updated, written)


def excluded(table: Table, name: str) -> ColumnElement[Any]:
    """The proposed row's value in an ON CONFLICT DO UPDATE expression."""
    return insert(table).excluded[name]
