"""Ping pooled connections that sat idle, not every checkout.

SQLAlchemy's `pool_pre_ping` costs a round trip on every checkout, i.e. on every
request. Connections die mostly while idle (server restart, failover, a NAT or
proxy dropping quiet sockets), so a connection returned moments ago is checked
out unpinged and one idle longer than `idle_s` is pinged first; a dead one is
replaced transparently (DisconnectionError makes the pool retry). A connection
that dies while busy fails its request once and SQLAlchemy invalidates the pool.
"""

from __future__ import annotations

import time

from sqlalchemy import Engine, event, exc

_CHECKIN = "lms_checkin_at"


def install_idle_ping(engine: Engine, idle_s: float) -> None:
    if getattr(engine.pool, "_lms_idle_ping", False):
        return
    engine.pool._lms_idle_ping = True  # type: ignore[attr-defined]
    dialect = engine.dialect

    @event.listens_for(engine.pool, "checkin")
    def _checked_in(dbapi_connection, record):
        if record is not None:
            record.info[_CHECKIN] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _checked_out(dbapi_connection, record, proxy):
        returned = record.info.get(_CHECKIN)
        if returned is None or time.monotonic() - returned <= idle_s:
            return  # brand new, or used moments ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise exc.DisconnectionError(f"idle connection is gone: {error}") from error
