"""Operations for tenant migration scripts that must behave on live schools.

Index builds on an existing tenant use `CREATE INDEX CONCURRENTLY` in an
autocommit block, so classes keep writing progress while the index builds; a
build that died half-way leaves an INVALID index, which is dropped and rebuilt on
the next run. A schema being provisioned (`fresh_schema`) has no readers yet and
must be all-or-nothing, so there the same calls run inside its transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from lms_app.db.base import TENANT_SCHEMA_PLACEHOLDER

_INVALID_INDEX = sa.text(
    "SELECT 1 FROM pg_catalog.pg_index i "
    "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = :schema AND c.relname = :name AND NOT i.indisvalid"
)

# IF NOT EXISTS skips on *any* relation of that name (a table, a view, an index on
# another table), so after the build we check that the index really is there.
_VALID_INDEX_ON_TABLE = sa.text(
    "SELECT 1 FROM pg_catalog.pg_index i "
    "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
    "JOIN pg_catalog.pg_class t ON t.oid = i.indrelid "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = :schema AND c.relname = :name AND t.relname = :table AND i.indisvalid"
)


def is_fresh_schema() -> bool:
    return bool(context.config.attributes.get("fresh_schema"))


def real_schema() -> str:
    return context.config.attributes["schema"]


def create_index(name: str, table: str, columns: Sequence[str | sa.TextClause], **kw: Any) -> None:
    if is_fresh_schema():
        op.create_index(name, table, list(columns), schema=TENANT_SCHEMA_PLACEHOLDER, **kw)
        return
    with op.get_context().autocommit_block():
        if op.get_bind().execute(_INVALID_INDEX, {"schema": real_schema(), "name": name}).first():
            op.drop_index(
                name,
                table_name=table,
                schema=TENANT_SCHEMA_PLACEHOLDER,
                postgresql_concurrently=True,
                if_exists=True,
            )
        op.create_index(
            name,
            table,
            list(columns),
            schema=TENANT_SCHEMA_PLACEHOLDER,
            postgresql_concurrently=True,
            if_not_exists=True,
            **kw,
        )
        params = {"schema": real_schema(), "name": name, "table": table}
        if op.get_bind().execute(_VALID_INDEX_ON_TABLE, params).first() is None:
            raise RuntimeError(
                f"index {name} on {table} was not built: another relation in schema "
                f"{real_schema()} already has that name"
            )


def drop_index(name: str, table: str) -> None:
    if is_fresh_schema():
        op.drop_index(name, table_name=table, schema=TENANT_SCHEMA_PLACEHOLDER, if_exists=True)
        return
    with op.get_context().autocommit_block():
        op.drop_index(
            name,
            table_name=table,
            schema=TENANT_SCHEMA_PLACEHOLDER,
            postgresql_concurrently=True,
            if_exists=True,
        )
