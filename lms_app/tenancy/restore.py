"""`tenants restore`: a snapshot (snapshots.py) back as a new school next to the live one.

All or nothing: the registry row, the schema, its tables and every row are made in
one transaction, so a restore that fails at any point (bad file, damaged member,
slug taken meanwhile, a failing migration) leaves no schema and no registry row.
Everything that can be checked without writing is checked first, for clear errors.

Order of work inside that transaction:

1. registry row and schema (`register_tenant`, as `tenants create` does);
2. tables built by the migration scripts *at the snapshot's revision*, so the rows
   fit the columns they were copied from (checked against the manifest);
3. foreign keys and plain indexes set aside (schema_catalog.load_accelerators),
   the rows COPYed in (binary), the indexes built once and the keys checked in one
   pass each: several times faster than maintaining them row by row;
4. identity sequences moved past both the largest id and the source's last value,
   so no id the live school ever handed out is given again;
5. the migrations from the snapshot's revision to head, on the loaded data;
6. ANALYZE, so the planner knows the new tables before the first request.

Rows only ever go in (COPY is an INSERT path): tables whose triggers refuse UPDATE
or DELETE (an append-only audit trail) are restored like any other.

The restored school is registered `active` under its new slug: it serves the API
there for an operator to inspect (users log in with their own passwords), while the
live school's clients and tokens cannot reach it (a token is signed for one school's
id, creation time and slug), so it takes no live traffic until someone points them
at it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from sqlalchemy import BigInteger, Connection, Engine, bindparam, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from lms_app.tenancy import schema_catalog
from lms_app.tenancy.backup import copy_statement
from lms_app.tenancy.context import TenantInfo
from lms_app.tenancy.migrations import is_tenant_revision, migrate_tenant, tenant_head
from lms_app.tenancy.provisioning import TenantExists, register_tenant
from lms_app.tenancy.registry import load_tenant, tenant_info_from_row
from lms_app.tenancy.slugs import validate_slug
from lms_app.tenancy.snapshots import (
    Manifest,
    NoProgress,
    Progress,
    SnapshotError,
    SnapshotReader,
    TableEntry,
)

log = logging.getLogger(__name__)

# Sort memory for the index builds of this one transaction: the benchmark school's
# indexes and keys build in 7.9 s with it, 9.0-9.5 s with the server's default 64 MB.
# One restore at a time uses it, once per build (split among parallel workers).
MAINTENANCE_WORK_MEM = "256MB"


@dataclass(frozen=True)
class RestoreReport:
    tenant: TenantInfo
    manifest: Manifest
    head: str
    seconds: float
    phases: dict[str, float]  # seconds per step, for the operator and the benchmark

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.manifest.tables)


def restore_tenant(
    engine: Engine,
    path: Path,
    slug: str,
    name: str | None = None,
    progress: Progress | None = None,
) -> RestoreReport:
    """Restore the snapshot at `path` as the new school `slug`.

    Raises InvalidSlug or ValueError (bad slug or name), SnapshotError (not a
    snapshot, damaged, unknown revision) or TenantExists, and then nothing is left.
    """
    progress = progress or NoProgress()
    started = time.perf_counter()
    validate_slug(slug)
    with SnapshotReader(path) as reader:
        manifest = reader.manifest
        name = (name if name is not None else manifest.name).strip()
        if not name or len(name) > 120:
            raise ValueError("name must be 1-120 characters")
        if not is_tenant_revision(manifest.revision):
            raise SnapshotError(
                f"snapshot is at revision {manifest.revision!r}, which these migration "
                "scripts do not know (made by a newer lms_app?)"
            )
        if load_tenant(engine, slug) is not None:
            raise TenantExists(slug)
        try:
            with engine.begin() as conn:
                row = register_tenant(conn, slug, name)
                phases = _load(conn, row.schema_name, reader, progress)
        except (DBAPIError, psycopg2.Error) as exc:
            if isinstance(exc, IntegrityError) and load_tenant(engine, slug) is not None:
                raise TenantExists(slug) from None  # taken since the check above
            refused = _refused(exc)
            if refused is None:
                raise
            raise refused from None
    seconds = time.perf_counter() - started
    log.info("tenant restored: %s (%d tables, %.1f s)", slug, len(manifest.tables), seconds)
    return RestoreReport(tenant_info_from_row(row), manifest, tenant_head(), seconds, phases)


def _load(
    conn: Connection, schema: str, reader: SnapshotReader, progress: Progress
) -> dict[str, float]:
    """Steps 2-6 of the module's doc inside the caller's transaction; seconds per step."""
    manifest = reader.manifest
    phases: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = now - mark
        mark = now

    # Transaction-local settings. The app's 30 s statement cap is for requests. The
    # one commit need not wait for its WAL flush: a crash in that instant can only
    # lose a copy the operator makes again.
    conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
    conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
    conn.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'")
    migrate_tenant(conn, schema, manifest.revision, fresh=True)
    _check_tables(conn, schema, manifest)
    set_aside = schema_catalog.load_accelerators(conn, schema)
    for item in set_aside:
        conn.exec_driver_sql(item.drop)
    lap("tables")

    progress.begin("load", sum(reader.size_of(t) for t in manifest.tables), "B")
    for entry in manifest.tables:
        _copy_in(conn, schema, entry, reader, progress)
    progress.end()
    lap("rows")

    progress.begin("indexes and keys", len(set_aside), "")
    for item in reversed(set_aside):
        conn.exec_driver_sql(item.create)
        progress.advance(1)
    progress.end()
    lap("indexes and keys")

    for entry in manifest.tables:
        _move_sequences(conn, schema, entry)
    migrate_tenant(conn, schema, "head", fresh=True)
    preparer = conn.dialect.identifier_preparer
    names = [t.name for t in schema_catalog.tables(conn, schema)]
    qschema = preparer.quote_schema(schema)
    conn.exec_driver_sql("ANALYZE " + ", ".join(f"{qschema}.{preparer.quote(n)}" for n in names))
    lap("to head and analyze")
    return phases


def _refused(exc: Exception) -> SnapshotError | None:
    """A load the server refused for the rows' sake (SQLSTATE classes 22, data
    exception, and 23, integrity: duplicate keys, dangling references, bad binary
    data) is a bad snapshot. Named by constraint and table, never by the values,
    which may be personal data."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "pgcode", None) or ""
    if code[:2] not in ("22", "23"):
        return None
    diag = getattr(orig, "diag", None)
    rule = getattr(diag, "constraint_name", None) or "a rule"
    table = getattr(diag, "table_name", None) or "a table"
    return SnapshotError(f"the snapshot's rows break {rule} of {table} (SQLSTATE {code})")


def _check_tables(conn: Connection, schema: str, manifest: Manifest) -> None:
    """The schema built at the snapshot's revision must have exactly the snapshot's
    tables and columns (names and types): binary COPY needs the same types. Column
    order may differ (COPY names its columns)."""

    def shape(entries: list[TableEntry]) -> dict[str, dict[str, str]]:
        return {t.name: {c.name: c.type for c in t.columns} for t in entries}

    built = shape(schema_catalog.tables(conn, schema))
    wanted = shape(manifest.tables)
    if built.keys() != wanted.keys():
        extra = sorted(wanted.keys() - built.keys())
        missing = sorted(built.keys() - wanted.keys())
        raise SnapshotError(
            f"snapshot tables do not match revision {manifest.revision}: "
            f"not made by the migrations: {extra or 'none'}; absent from the file: "
            f"{missing or 'none'}"
        )
    for table_name, columns in wanted.items():
        if built[table_name] != columns:
            raise SnapshotError(
                f"columns of {table_name} do not match revision {manifest.revision}"
            )


def _copy_in(
    conn: Connection, schema: str, entry: TableEntry, reader: SnapshotReader, progress: Progress
) -> None:
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    with reader.table(entry, progress) as source, dbapi.cursor() as cursor:
        try:
            cursor.copy_expert(
                copy_statement(conn, schema, entry, "FROM STDIN"), source, size=1 << 20
            )
        except Exception:
            if source.failure is not None:
                raise source.failure from None
            raise
        loaded = cursor.rowcount
    if loaded != entry.rows:
        raise SnapshotError(f"{entry.name}: {loaded} rows in the file, manifest says {entry.rows}")


def _move_sequences(conn: Connection, schema: str, entry: TableEntry) -> None:
    preparer = conn.dialect.identifier_preparer
    qtable = f"{preparer.quote_schema(schema)}.{preparer.quote(entry.name)}"
    for column_name, last_value in entry.sequences.items():
        # GREATEST skips NULLs: an empty table whose sequence was never used starts at 1.
        stmt = text(
            f"SELECT setval(pg_get_serial_sequence(:table, :column), "
            f"coalesce(greatest(max({preparer.quote(column_name)}), :last), 1), "
            f"greatest(max({preparer.quote(column_name)}), :last) IS NOT NULL) FROM {qtable}"
        ).bindparams(bindparam("last", type_=BigInteger()))
        conn.execute(stmt, {"table": qtable, "column": column_name, "last": last_value})
