"""Idle pooled connections are pinged on checkout and replaced when the server dropped them."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, create_engine, exc, text
from sqlalchemy.pool import NullPool

from lms_app.db.pool_health import install_idle_ping


def backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def kill_backend(database_url: str, pid: int) -> None:
    admin = create_engine(database_url, poolclass=NullPool)
    with admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    admin.dispose()


def test_idle_connection_dropped_by_server_is_replaced(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    install_idle_ping(engine, idle_s=0.0)  # every returned connection counts as idle
    first = backend_pid(engine)
    kill_backend(database_url, first)
    second = backend_pid(engine)  # no error: the ping found it dead, the pool reconnected
    assert second != first
    engine.dispose()


def test_recently_used_connection_is_not_pinged(database_url: str) -> None:
    """The trade-off made: within idle_s no round trip is spent, so a connection
    killed in that window fails its next statement once (and is then replaced)."""
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    install_idle_ping(engine, idle_s=3600)
    first = backend_pid(engine)
    kill_backend(database_url, first)
    with pytest.raises(exc.OperationalError):
        backend_pid(engine)
    assert backend_pid(engine) != first
    engine.dispose()
