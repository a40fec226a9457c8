"""Statement timing on every engine: slow statements logged without bind values."""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable

from sqlalchemy import Engine, event
from sqlalchemy.pool import Pool

from lms_app.db.pool_watch import WatchedQueuePool
from lms_app.db.statement_stats import STATS
from lms_app.observability import metrics

log = logging.getLogger("lms_app.sql")

# Threshold per pool: an engine's schema views (execution_options) share its pool.
_slow_ms: weakref.WeakKeyDictionary[Pool, int] = weakref.WeakKeyDictionary()


# Called with (engine, statement) for statements run past SQLAlchemy's cursor
# events, so whoever counts statements on those events sees these too.
StatementObserver = Callable[[Engine, str], None]
_observers: list[StatementObserver] = []


def observe(observer: StatementObserver) -> None:
    _observers.append(observer)


def unobserve(observer: StatementObserver) -> None:
    _observers.remove(observer)


def note_statement(engine: Engine, statement: str, elapsed_ms: float) -> None:
    """Account for a statement run past SQLAlchemy's cursor events (lms_app.db.prepared)."""
    _account(statement, elapsed_ms, _slow_ms.get(engine.pool))
    for observer in _observers:
        observer(engine, statement)


def _account(statement: str, elapsed_ms: float, slow_ms: int | None) -> None:
    """Metrics, per-process statistics and the slow-statement warning, for one run."""
    if not metrics.ENABLED:
        if slow_ms is not None and elapsed_ms >= slow_ms:
            log.warning("slow_statement ms=%.0f", elapsed_ms)
        return
    fingerprint, shape = metrics.describe(statement)
    metrics.observe(metrics.DB_STATEMENT_DURATION, elapsed_ms / 1000, fingerprint)
    STATS.record(fingerprint, shape, elapsed_ms)
    if slow_ms is not None and elapsed_ms >= slow_ms:
        # The shape only (no literals, no bind values: they may carry personal data);
        # the JSON line adds the request id and the school.
        log.warning(
            "slow_statement ms=%.0f fingerprint=%s sql=%s", elapsed_ms, fingerprint, shape[:500]
        )


def instrument_engine(
    engine: Engine,
    slow_query_ms: int,
    bind: str = "primary",
    warn_utilisation: float = 0.8,
    warn_waiting: int = 10,
) -> None:
    if getattr(engine, "_lms_instrumented", False):
        return
    engine._lms_instrumented = True  # type: ignore[attr-defined]
    _slow_ms[engine.pool] = slow_query_ms
    if isinstance(engine.pool, WatchedQueuePool):
        engine.pool.watch(bind, warn_utilisation, warn_waiting)

    @event.listens_for(engine.pool, "checkout")
    def _checkout(dbapi_connection, record, proxy):
        metrics.inc(metrics.DB_POOL_CHECKED_OUT, bind)

    @event.listens_for(engine.pool, "checkin")
    def _checkin(dbapi_connection, record):
        metrics.inc(metrics.DB_POOL_CHECKED_OUT, bind, amount=-1)

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn, cursor, statement, parameters, context, executemany):
        conn.info.setdefault("lms_query_start", []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _end(conn, cursor, statement, parameters, context, executemany):
        started = conn.info["lms_query_start"].pop()
        elapsed_ms = (time.perf_counter() - started) * 1000
        _account(statement, elapsed_ms, slow_query_ms)

    @event.listens_for(engine, "handle_error")
    def _failed(context):
        starts = context.connection.info.get("lms_query_start") if context.connection else None
        if starts:
            starts.pop()
