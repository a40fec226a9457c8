"""The hottest reads, planned once per connection: PREPARE on first use, EXECUTE after.

A learner's course progress or course list is a statement of 0.05 ms whose planning
costs 0.2 ms (EXPLAIN on the bench data: the lateral aggregate joins two tables with
nine indexes between them), and SQLAlchemy's execution path around it costs a
quarter of the request's Python (py-spy, GET /courses/<id>/progress). A statement
marked with `.execution_options(lms_prepare="name")` and read through the read
engine (lms_app.db.reads) skips both: it is compiled once per tenant schema, prepared
once per pooled connection, and run with EXECUTE on the DBAPI cursor.

Why only on the read engine: its connections are in autocommit, so a statement that
fails (a prepared name the server lost, a statement timeout) aborts no transaction
and can be retried or reported as on any other path. Reads inside a request's
transaction take the ordinary path.

Memory: a backend keeps each prepared plan until the connection closes. Each pooled
connection keeps at most PREPARED_PER_CONNECTION (statement, schema) pairs and
DEALLOCATEs the least recently used past that, so a thousand schools cannot fill a
backend with plans. Behind PgBouncer in transaction mode (before 1.21's
max_prepared_statements) set DB_PREPARED_STATEMENTS=false.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Executable, Result, exc
from sqlalchemy.engine.result import IteratorResult, SimpleResultMetaData

from lms_app.db.base import TENANT_SCHEMA_PLACEHOLDER
from lms_app.db.monitoring import note_statement

OPTION = "lms_prepare"
PREPARED_PER_CONNECTION = 64
# Pool record info key: this connection's prepared statement names, oldest first.
_NAMES = "lms_prepared"
_BIND = re.compile(r"%\((\w+)\)s")
# SQLSTATE 26000: the server does not know the name (a reset connection, a pooler).
_UNKNOWN_STATEMENT = "26000"
_ALREADY_PREPARED = "42P05"


@dataclass(frozen=True, slots=True)
class _Text:
    name: str
    sql: str
    prepare: str
    execute: str
    order: tuple[str, ...]
    metadata: SimpleResultMetaData


# (id(statement), schema) -> text; statements are module-level and live for good.
_texts: dict[tuple[int, str], _Text] = {}


def prepare(stmt: Any, name: str) -> Any:
    """`stmt` marked to run prepared; it must be a plain read (checked here, once, so
    the routing need not inspect its shape on every call)."""
    from lms_app.db.session import is_plain_read

    if not is_plain_read(stmt):
        raise ValueError(f"{name}: only plain reads may be prepared")
    return stmt.execution_options(**{OPTION: name})


def prepared_name(stmt: Executable) -> str | None:
    return stmt._execution_options.get(OPTION)  # type: ignore[attr-defined]


def _text_for(engine: Engine, stmt: Executable, schema: str) -> _Text:
    key = (id(stmt), schema)
    text = _texts.get(key)
    if text is None:
        text = _texts[key] = _compile(engine, stmt, schema)
    return text


def _compile(engine: Engine, stmt: Any, schema: str) -> _Text:
    compiled = stmt.compile(
        dialect=engine.dialect,
        schema_translate_map={TENANT_SCHEMA_PLACEHOLDER: schema},
        render_schema_translate=True,
    )
    sql = compiled.string
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        bind = compiled.binds[match.group(1)]
        if not bind.required:
            # A constant of the statement (100 %, 'dropped'): written into the text,
            # so a generic plan can still pick the partial index that names it.
            return bind.type.literal_processor(compiled.dialect)(bind.effective_value)
        if bind.key not in order:
            order.append(bind.key)
        return f"${order.index(bind.key) + 1}"

    # The PREPARE text is sent without parameters, so psycopg2 leaves "%%" alone.
    server_sql = _BIND.sub(number, sql).replace("%%", "%")
    digest = hashlib.blake2b(f"{schema}\0{server_sql}".encode(), digest_size=6).hexdigest()
    name = f"lms_{prepared_name(stmt)}_{digest}"[:63]
    placeholders = ", ".join(["%s"] * len(order))
    keys = [c.key for c in stmt.selected_columns]
    return _Text(
        name=name,
        sql=server_sql,
        prepare=f"PREPARE {name} AS {server_sql}",
        execute=f"EXECUTE {name} ({placeholders})" if order else f"EXECUTE {name}",
        order=tuple(order),
        metadata=SimpleResultMetaData(keys),
    )


def run_prepared(engine: Engine, stmt: Executable, schema: str, params: dict[str, Any]) -> Result:
    """Run `stmt` in `schema` on a connection of `engine` (autocommit), all rows fetched."""
    text = _text_for(engine, stmt, schema)
    args = tuple(params[k] for k in text.order)
    dialect = engine.dialect
    try:
        fairy = engine.raw_connection()
    except dialect.loaded_dbapi.Error as error:
        # As SQLAlchemy wraps a failed connect on its own path (a server that is
        # down must read as OperationalError, never as a bare driver error).
        raise exc.DBAPIError.instance(
            None,
            None,
            error,
            dialect.loaded_dbapi.Error,
            hide_parameters=True,
            connection_invalidated=dialect.is_disconnect(error, None, None),
            dialect=dialect,
        ) from error
    try:
        rows = _execute(engine, fairy, text, args)
    finally:
        fairy.close()
    return IteratorResult(text.metadata, iter(rows))


def _execute(engine: Engine, fairy: Any, text: _Text, args: tuple[Any, ...]) -> list[Any]:
    names: OrderedDict[str, None] = fairy.info.setdefault(_NAMES, OrderedDict())
    started = time.perf_counter()
    cursor = fairy.cursor()
    try:
        for attempt in (1, 2):
            try:
                if text.name not in names:
                    _prepare(cursor, names, text)
                else:
                    names.move_to_end(text.name)
                cursor.execute(text.execute, args)
                break
            except engine.dialect.loaded_dbapi.Error as error:
                if attempt == 1 and getattr(error, "pgcode", None) == _UNKNOWN_STATEMENT:
                    names.clear()  # the server's set was reset: start over
                    continue
                raise
        rows = cursor.fetchall()
    except engine.dialect.loaded_dbapi.Error as error:
        raise _wrapped(engine, fairy, cursor, text, error) from error
    finally:
        cursor.close()
    note_statement(engine, text.sql, (time.perf_counter() - started) * 1000)
    return rows


def _prepare(cursor: Any, names: OrderedDict[str, None], text: _Text) -> None:
    while len(names) >= PREPARED_PER_CONNECTION:
        oldest, _ = names.popitem(last=False)
        cursor.execute(f"DEALLOCATE {oldest}")
    try:
        cursor.execute(text.prepare)
    except Exception as error:
        # 42P05: the server has it (names carry a hash of the text, so it is this one).
        if getattr(error, "pgcode", None) != _ALREADY_PREPARED:
            raise
    names[text.name] = None


def _wrapped(engine: Engine, fairy: Any, cursor: Any, text: _Text, error: Exception):
    """The error as SQLAlchemy raises it on its own path, so the app's handlers (503
    on a lost server, one retry of transient failures) see no difference."""
    dialect = engine.dialect
    invalidated = dialect.is_disconnect(error, fairy.dbapi_connection, cursor)
    if invalidated:
        fairy.invalidate(error)
    return exc.DBAPIError.instance(
        text.execute,
        None,
        error,
        dialect.loaded_dbapi.Error,
        hide_parameters=True,
        connection_invalidated=invalidated,
        dialect=dialect,
    )
