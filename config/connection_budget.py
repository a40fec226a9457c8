"""At gunicorn start-up: will the workers' pools fit in the servers' max_connections?

Each worker has two pools on the primary (the Session's and the autocommit read
pool) and one per replica, each up to DB_POOL_SIZE + DB_MAX_OVERFLOW connections
(DB_REPLICA_* for replicas). gunicorn logs a warning with the numbers when the
worst case exceeds what the server accepts (max_connections less the superuser
reserve), before the first request rather than at the first busy hour. The check
never stops the server: an unreachable database is reported and left to /readyz.
"""

from __future__ import annotations

from typing import Any

import psycopg2
from sqlalchemy.engine import make_url

from config.settings import Settings

PRIMARY_POOLS = 2


def _available(url: str) -> int:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = psycopg2.connect(dsn, connect_timeout=3)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT current_setting('max_connections')::int"
                " - current_setting('superuser_reserved_connections')::int"
            )
            return cur.fetchone()[0]
    finally:
        conn.close()


def check(workers: int, log: Any, settings: Settings | None = None) -> list[str]:
    """Warnings logged (also returned, for tests)."""
    settings = settings or Settings.from_env()
    warnings: list[str] = []
    servers = []
    if settings.database_url:
        per_pool = settings.pool.size + settings.pool.max_overflow
        servers.append(("primary", settings.database_url, PRIMARY_POOLS * per_pool))
    replica_pool = settings.replica_pool.size + settings.replica_pool.max_overflow
    servers += [("replica", url, replica_pool) for url in settings.database_replica_urls]
    for role, url, per_worker in servers:
        wanted = workers * per_worker
        where = f"{role} {make_url(url).host}:{make_url(url).port or 5432}"
        try:
            available = _available(url)
        except Exception as exc:
            log.warning(f"connection_budget {where}: not checked ({type(exc).__name__})")
            continue
        if wanted > available:
            message = (
                f"connection_budget {where}: {workers} workers x {per_worker} pooled"
                f" connections each = {wanted} at most, the server accepts {available};"
                " lower WEB_CONCURRENCY or DB_POOL_SIZE/DB_MAX_OVERFLOW, or put PgBouncer"
                " in front (README: Workers and pools)"
            )
            log.warning(message)
            warnings.append(message)
    return warnings
