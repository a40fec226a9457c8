"""Statement timing on every engine: slow statements logged without bind values."""

from __future__ import annotations

import logging
import time

from sqlalchemy import Engine, event

log = logging.getLogger("lms_app.sql")


def instrument_engine(engine: Engine, slow_query_ms: int) -> None:
    if getattr(engine, "_lms_instrumented", False):
        return
    engine._lms_instrumented = True  # type: ignore[attr-defined]

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn, cursor, statement, parameters, context, executemany):
        conn.info.setdefault("lms_query_start", []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _end(conn, cursor, statement, parameters, context, executemany):
        started = conn.info["lms_query_start"].pop()
        elapsed_ms = (time.perf_counter() - started) * 1000
        if elapsed_ms >= slow_query_ms:
            # Statement text only: parameters may carry personal data.
            log.warning(
                "slow_statement ms=%.0f sql=%s", elapsed_ms, " ".join(statement.split())[:500]
            )

    @event.listens_for(engine, "handle_error")
    def _failed(context):
        starts = context.connection.info.get("lms_query_start") if context.connection else None
        if starts:
            starts.pop()
