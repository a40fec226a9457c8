"""Engine options from settings, and the per-tenant view of an engine.

`for_schema()` returns ``engine.execution_options(schema_translate_map=...)``: a
light copy sharing the engine's pool and compiled-SQL cache, so a pooled
connection never carries tenant state (no ``SET search_path``).
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import Any

from sqlalchemy import Engine, create_engine

from config.settings import PoolSettings
from lms_app.db.base import TENANT_SCHEMA_PLACEHOLDER
from lms_app.db.pool_watch import WatchedQueuePool

# Flask-SQLAlchemy bind key of the engine that serves plain reads of read-only
# requests (see lms_app.db.session). It is a separate pool whose connections are
# in autocommit mode for good: a read then costs its statement alone, with no
# BEGIN and ROLLBACK round trips, and nothing is toggled per checkout.
READ_BIND = "read"


def engine_options(pool: PoolSettings, application_name: str = "lms_app") -> dict[str, Any]:
    """Keyword arguments for `create_engine` (also SQLALCHEMY_ENGINE_OPTIONS)."""
    return {
        "pool_size": pool.size,
        "max_overflow": pool.max_overflow,
        "pool_timeout": pool.timeout_s,
        "pool_recycle": pool.recycle_s,
        # Pinging is done by lms_app.db.pool_health (idle connections only).
        "pool_pre_ping": False,
        # Counts and times checkouts for /metrics and the pressure warning.
        "poolclass": WatchedQueuePool,
        # Bind values never appear in exception messages (and so in no log line):
        # they carry e-mails, names and password hashes.
        "hide_parameters": True,
        "connect_args": {
            "connect_timeout": pool.connect_timeout_s,
            "application_name": application_name,
            # A server-side cap so one runaway report cannot hold a connection.
            # UTC sessions: timestamps leave the database with a +00:00 offset.
            "options": _server_options(pool),
            "keepalives": 1,
            "keepalives_idle": pool.keepalives_idle_s,
            "keepalives_interval": 10,
            "keepalives_count": 5,
        },
    }


def _server_options(pool: PoolSettings) -> str:
    """Session settings sent at connect (libpq options): the same on every pooled
    connection from its first statement, so no request ever changes one."""
    options = f"-c statement_timeout={pool.statement_timeout_ms} -c timezone=UTC"
    if pool.random_page_cost > 0:
        options += f" -c random_page_cost={pool.random_page_cost:g}"
    return options


def read_engine_options(pool: PoolSettings, url: str) -> dict[str, Any]:
    """SQLALCHEMY_BINDS entry of the read engine: autocommit from connect time on
    (toggling psycopg2's autocommit per checkout costs the two round trips saved)."""
    return {
        "url": url,
        **engine_options(pool, application_name="lms_app-read"),
        "isolation_level": "AUTOCOMMIT",
    }


def replica_engine(url: str, settings: Any) -> Engine:
    """A streaming replica's engine: autocommit like the read pool, its own pool size,
    and a short connect timeout (a replica that does not answer is skipped, and the
    read goes to the primary, rather than making the request wait)."""
    pool = settings.replica_pool
    return create_engine(
        url,
        **engine_options(pool, application_name="lms_app-replica"),
        isolation_level="AUTOCOMMIT",
    )


def make_engine(url: str, pool: PoolSettings, application_name: str = "lms_app") -> Engine:
    return create_engine(url, **engine_options(pool, application_name))


_views: weakref.WeakKeyDictionary[Engine, dict[str, Engine]] = weakref.WeakKeyDictionary()
_views_lock = threading.Lock()


def for_schema(engine: Engine, schema: str) -> Engine:
    """The engine as seen from one tenant schema (cached per engine and schema)."""
    per_engine = _views.get(engine)
    if per_engine is None:
        with _views_lock:
            per_engine = _views.setdefault(engine, {})
    view = per_engine.get(schema)
    if view is None:
        view = engine.execution_options(schema_translate_map=translate_map(schema))
        per_engine[schema] = view
    return view


def translate_map(schema: str) -> dict[str, str]:
    return {TENANT_SCHEMA_PLACEHOLDER: schema}


# (statement, tenant) pairs remembered per engine: the hot statements of the active
# schools; a miss costs one regex pass, as without it.
TRANSLATED_STATEMENTS = 8192


def remember_schema_translation(engine: Engine) -> None:
    """Translate each compiled statement into each tenant's schema once, not per call.

    SQLAlchemy compiles a statement once for every tenant (the schema is a
    placeholder) and puts the real schema in with a regular expression over the SQL
    text at every execution: 7 % of GET /me/courses' CPU (py-spy). The text for a
    given statement and schema never changes, so it is kept, keyed by the compiled
    string (its hash is cached by Python) and the map's items. This wraps a private
    method of the dialect's IdentifierPreparer (SQLAlchemy 2.0/2.1): if it is
    missing, nothing is changed.
    """
    preparer = engine.dialect.identifier_preparer
    render = getattr(preparer, "_render_schema_translates", None)
    if render is None or getattr(render, "lms_remembered", False):
        return

    @functools.lru_cache(maxsize=TRANSLATED_STATEMENTS)
    def translated(statement: str, items: tuple[tuple[Any, Any], ...]) -> str:
        return render(statement, dict(items))

    def translate(statement: str, schema_translate_map: dict[Any, Any]) -> str:
        return translated(statement, tuple(schema_translate_map.items()))

    translate.lms_remembered = True  # type: ignore[attr-defined]
    preparer._render_schema_translates = translate  # type: ignore[method-assign]
