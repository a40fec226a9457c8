"""What a tenant schema holds, read from pg_catalog: its tables (in dependency order),
their copyable columns and identity sequences, and the indexes and constraints a bulk
load may set aside and rebuild.

Backup and restore take the table list from the schema itself, never from a list in
code, so a table added by a later migration is carried without touching them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from lms_app.tenancy.migrations import VERSION_TABLE
from lms_app.tenancy.snapshots import Column, TableEntry

# Generated columns (attgenerated 's', e.g. courses.search_vector) are computed by
# the server on the way in and cannot be COPYed into: they are left out.
_COLUMNS = text(
    """
    SELECT c.relname AS table_name,
           a.attname AS column_name,
           format_type(a.atttypid, a.atttypmod) AS column_type,
           pg_sequence_last_value(
               pg_get_serial_sequence(
                   quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname
               )::regclass
           ) AS last_value,
           pg_get_serial_sequence(
               quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname
           ) IS NOT NULL AS has_sequence
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
    WHERE n.nspname = :schema AND c.relkind = 'r' AND c.relname <> :version_table
      AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
    ORDER BY c.relname, a.attnum
    """
)

_FOREIGN_KEYS = text(
    """
    SELECT c.relname AS table_name, r.relname AS referred, k.conname,
           pg_get_constraintdef(k.oid) AS definition
    FROM pg_catalog.pg_constraint k
    JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
    JOIN pg_catalog.pg_class r ON r.oid = k.confrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = k.connamespace
    WHERE n.nspname = :schema AND k.contype = 'f'
    ORDER BY c.relname, k.conname
    """
)

# Primary keys, unique and exclusion constraints: each is an index.
_KEYS = text(
    """
    SELECT c.relname AS table_name, k.conname, pg_get_constraintdef(k.oid) AS definition
    FROM pg_catalog.pg_constraint k
    JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = k.connamespace
    WHERE n.nspname = :schema AND k.contype IN ('p', 'u', 'x') AND c.relname <> :version_table
    ORDER BY c.relname, k.conname
    """
)

# Indexes that back no constraint: CREATE INDEX definitions as the server prints
# them (schema-qualified, since the schema is never on the search_path).
_PLAIN_INDEXES = text(
    """
    SELECT t.relname AS table_name, i.relname AS index_name, pg_get_indexdef(i.oid) AS definition
    FROM pg_catalog.pg_index x
    JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
    JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = i.relnamespace
    WHERE n.nspname = :schema AND t.relname <> :version_table
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = i.oid)
    ORDER BY t.relname, i.relname
    """
)

_TABLE_ESTIMATES = text(
    """
    SELECT greatest(sum(greatest(c.reltuples, 0)), 0)::bigint
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = :schema AND c.relkind = 'r'
    """
)


def tables(conn: Connection, schema: str) -> list[TableEntry]:
    """The schema's tables but the version table, parents before the tables that
    refer to them (ties by name), each with its copyable columns in order."""
    found: dict[str, TableEntry] = {}
    rows = conn.execute(_COLUMNS, {"schema": schema, "version_table": VERSION_TABLE})
    for row in rows:
        entry = found.setdefault(row.table_name, TableEntry(row.table_name, []))
        entry.columns.append(Column(row.column_name, row.column_type))
        if row.has_sequence:
            entry.sequences[row.column_name] = row.last_value
    parents: dict[str, set[str]] = {name: set() for name in found}
    for fk in conn.execute(_FOREIGN_KEYS, {"schema": schema}):
        if fk.referred != fk.table_name and fk.referred in found:
            parents[fk.table_name].add(fk.referred)
    ordered: list[str] = []
    while parents:
        ready = sorted(n for n, p in parents.items() if not p)
        if not ready:  # a cycle: the rest by name (restore sets foreign keys aside anyway)
            ready = sorted(parents)
        for name in ready:
            ordered.append(name)
            del parents[name]
        for pending in parents.values():
            pending.difference_update(ready)
    return [found[name] for name in ordered]


def estimated_rows(conn: Connection, schema: str) -> int:
    """The planner's row estimate of the schema (progress bars only)."""
    return int(conn.execute(_TABLE_ESTIMATES, {"schema": schema}).scalar_one() or 0)


@dataclass(frozen=True)
class SetAside:
    """An index or foreign key dropped for a bulk load and created again after it."""

    label: str
    drop: str
    create: str


def load_accelerators(conn: Connection, schema: str) -> list[SetAside]:
    """Every index of the schema and the constraints they back or that check
    rows against other tables (primary keys, unique keys, foreign keys), as DDL to
    drop them and to build them again. Check constraints and NOT NULL stay.

    Loading a million rows into a table with eleven indexes and three foreign keys
    costs index maintenance and a key lookup per row; building each index once over
    the loaded table (a sort) and checking each foreign key in one join is several
    times faster: the restore of the benchmark school went from 99 s to 24 s. The
    rebuild still refuses duplicate keys and dangling references, so a snapshot that
    breaks them fails the restore as the constraint would have.
    """
    quote = conn.dialect.identifier_preparer.quote
    qschema = conn.dialect.identifier_preparer.quote_schema(schema)
    params = {"schema": schema, "version_table": VERSION_TABLE}
    constraints = []
    for query in (_FOREIGN_KEYS, _KEYS):
        for k in conn.execute(query, params):
            alter = f"ALTER TABLE {qschema}.{quote(k.table_name)}"
            constraints.append(
                SetAside(
                    label=k.conname,
                    drop=f"{alter} DROP CONSTRAINT {quote(k.conname)}",
                    create=f"{alter} ADD CONSTRAINT {quote(k.conname)} {k.definition}",
                )
            )
    indexes = [
        SetAside(
            label=ix.index_name,
            drop=f"DROP INDEX {qschema}.{quote(ix.index_name)}",
            create=ix.definition,
        )
        for ix in conn.execute(_PLAIN_INDEXES, params)
    ]
    # Dropped in this order, rebuilt in the reverse: foreign keys go first (they
    # depend on the referred keys) and come back last (their checks use the keys).
    return constraints + indexes
