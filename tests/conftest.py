"""Shared fixtures: one database per xdist worker, tenants per test module."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event, select, text

from config.settings import Settings
from lms_app import create_app
from lms_app.db import monitoring, routing
from lms_app.extensions import db
from lms_app.tenancy.context import TenantInfo, tenant_scope
from lms_app.tenancy.migrations import upgrade_public
from lms_app.tenancy.provisioning import NewTenant, TenantNotFound, create_tenant, drop_tenant
from lms_app.tenancy.resolver import registry
from tests import servers

ADMIN_PASSWORD = "admin-password-123"
# The operators' key of every app make_app builds, and the headers that send it.
PLATFORM_KEY = "test-platform-key"
PLATFORM_HEADERS = {"Authorization": f"Bearer {PLATFORM_KEY}"}


_RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID", uuid.uuid4().hex)[:8]


def pytest_report_header(config) -> list[str]:
    """Which servers this run talks to: a run that fell back to the embedded
    PostgreSQL (no server on 127.0.0.1:5432) says so at the top."""
    return servers.describe()


def pytest_terminal_summary(terminalreporter) -> None:
    terminalreporter.write_line("servers: " + "; ".join(servers.describe()))


def worker_id() -> str:
    """Unique per test run and worker, so concurrent runs never share a database."""
    return f"{_RUN_ID}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


@pytest.fixture(scope="session")
def admin_database_url() -> str:
    return servers.admin_database_url()


@pytest.fixture(scope="session")
def database_url(admin_database_url: str) -> Iterator[str]:
    name = f"lms_test_{worker_id()}"
    url = servers.recreate_database(admin_database_url, name)
    yield url
    servers.drop_database(admin_database_url, name)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return servers.redis_url()


def make_app(
    database_url: str,
    redis_url: str | None,
    instance_path: Path,
    cache_prefix: str | None = None,
    **settings: Any,
) -> Flask:
    """An app on the test database; pass another app's cache prefix to play a second
    worker process of the same deployment, and Settings fields to override."""
    settings = Settings(
        env="test",
        database_url=database_url,
        redis_url=redis_url,
        secret_key="test-secret-key",
        platform_api_key=PLATFORM_KEY,
        # Tests log in far more often than a person; the limiter has its own test.
        login_limit_per_account="10000/minute",
        login_limit_per_address="10000/minute",
        instance_path=instance_path,
        **settings,
    )
    app = create_app(
        settings,
        TESTING=True,
        CACHE_KEY_PREFIX=cache_prefix or f"lms:test:{worker_id()}:{uuid.uuid4().hex[:8]}:",
        LOGIN_THROTTLE_KEY_PREFIX=f"lms-rl-test-{uuid.uuid4().hex[:8]}",
    )
    with app.app_context():
        upgrade_public(db.engine)
    return app


def dispose(*apps: Flask) -> None:
    """Close the pools of apps a test made for itself."""
    for other in apps:
        with other.app_context():
            for engine in [*db.engines.values(), *routing.replica_engines(other)]:
                engine.dispose()


@contextlib.contextmanager
def another_process(app: Flask, instance_path: Path, **settings: Any) -> Iterator[Flask]:
    """Another worker process of `app`'s deployment: the same database and cache keys,
    its own process state (tenant registry, local copies, breaker, pools)."""
    settings_of = app.config["LMS_SETTINGS"]
    other = make_app(
        settings_of.database_url,
        settings_of.redis_url,
        instance_path,
        app.config["CACHE_KEY_PREFIX"],
        **settings,
    )
    try:
        yield other
    finally:
        dispose(other)


@pytest.fixture(scope="session")
def app(database_url: str, redis_url: str, tmp_path_factory) -> Flask:
    return make_app(database_url, redis_url, tmp_path_factory.mktemp("instance"))


@pytest.fixture
def own_app(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[Flask]:
    """An app of the test's own (its own throttle counters, config it may change)."""
    fresh = make_app(database_url, redis_url, tmp_path)
    yield fresh
    dispose(fresh)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def unique_slug(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def any_schema_of(engine, slug: str) -> bool:
    """Is there a tenant schema (`t<id>_<slug>`, whatever the id) for `slug`?"""
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT count(*) FROM pg_namespace WHERE nspname ~ :pattern"),
                {"pattern": rf"^t\d+_{slug}$"},
            ).scalar_one()
        )


@pytest.fixture(scope="module")
def make_tenant(app: Flask) -> Iterator[Callable[..., TenantInfo]]:
    """Create tenants for one test module; they are dropped when the module ends."""
    created: list[str] = []

    def factory(slug: str | None = None, name: str = "Test School") -> TenantInfo:
        slug = slug or unique_slug()
        with app.app_context():
            tenant = create_tenant(
                db.engine, NewTenant(slug, name, f"admin@{slug}.test", ADMIN_PASSWORD)
            )
            registry().invalidate(slug)
        created.append(slug)
        return tenant

    yield factory
    with app.app_context():
        for slug in created:
            with contextlib.suppress(TenantNotFound):  # the test dropped it itself
                drop_tenant(db.engine, slug)


# --- query counting (N+1 guards) ---------------------------------------------


class QueryCounter:
    """Statements of a request's own work. The cache generation snapshot is counted
    apart (`snapshots`): a process reads it at most once per CACHE_LOCAL_SECONDS per
    school, so whether one lands in a given request depends on the clock, not on
    the code (tests/test_generation_snapshots.py pins how often it is read)."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.snapshots = 0

    @property
    def count(self) -> int:
        return len(self.statements)

    def add(self, statement: str) -> None:
        if statement.startswith("SELECT") and ".cache_generations.namespace" in statement:
            self.snapshots += 1
        else:
            self.statements.append(statement)


@contextlib.contextmanager
def watching_statements(
    engines: list[Engine], seen: Callable[[Engine, str], None], moment: str = "before"
) -> Iterator[None]:
    """Call `seen(engine, statement)` for each statement `engines` send inside the
    block, through SQLAlchemy (`moment`: "before" or "after" the cursor runs it) or
    as a prepared statement (lms_app.db.prepared, reported after it ran)."""
    pools = {engine.pool for engine in engines}
    event_name = f"{moment}_cursor_execute"

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        seen(conn.engine, statement)

    def on_prepared(engine, statement):
        if engine.pool in pools:
            seen(engine, statement)

    for engine in engines:
        event.listen(engine, event_name, on_execute)
    monitoring.observe(on_prepared)
    try:
        yield
    finally:
        monitoring.unobserve(on_prepared)
        for engine in engines:
            event.remove(engine, event_name, on_execute)


@contextlib.contextmanager
def count_statements(app: Flask) -> Iterator[QueryCounter]:
    """SQL statements `app` sends inside the block, on every engine (reads of GET
    requests go to the read engine)."""
    counter = QueryCounter()
    with app.app_context():
        engines = list(db.engines.values())
    with watching_statements(engines, lambda engine, statement: counter.add(statement)):
        yield counter


@pytest.fixture
def count_queries(app: Flask) -> Callable[[], contextlib.AbstractContextManager[QueryCounter]]:
    """`with count_queries() as q: ...` then `q.count`: SQL statements sent meanwhile."""
    return functools.partial(count_statements, app)


@contextlib.contextmanager
def cache_reads_of(app: Flask) -> Iterator[list[tuple]]:
    """The shared-cache reads (MGETs, by their keys) `app` makes inside the block: the
    real cache still answers them."""
    from lms_app.extensions import cache

    with app.app_context():
        backend = cache.cache
    calls: list[tuple] = []
    real_get_many = backend.get_many

    def counting_get_many(*keys):
        calls.append(keys)
        return real_get_many(*keys)

    backend.get_many = counting_get_many
    try:
        yield calls
    finally:
        del backend.get_many


# --- staged races ------------------------------------------------------------------


def waiting_on_a_lock(app) -> bool:
    with app.app_context(), db.engine.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


def staged_race(
    app: Flask,
    instance_path: Path,
    holder: Callable[[Flask], Any],
    contender: Callable[[Flask], Any],
    pause_after: str = "FOR UPDATE",
) -> tuple[Any, Any]:
    """Two requests racing, staged: `holder(app)` runs in another worker and stops
    after its first statement containing `pause_after` (inside its transaction);
    `contender(app)` runs until it waits on a lock (seen in pg_stat_activity) or ends;
    then the holder goes on. Returns both responses."""
    paused, release = threading.Event(), threading.Event()

    def pause(conn, cursor, statement, parameters, context, executemany):
        if pause_after in statement and not release.is_set():
            paused.set()
            release.wait(20)

    with another_process(app, instance_path) as other:
        with other.app_context():
            engines = list(db.engines.values())
        for engine in engines:
            event.listen(engine, "after_cursor_execute", pause)
        answers: dict[str, object] = {}
        first = threading.Thread(target=lambda: answers.update(holder=holder(other)))
        first.start()
        assert paused.wait(20), f"the holder never ran a statement with {pause_after!r}"
        second = threading.Thread(target=lambda: answers.update(other=contender(app)))
        second.start()
        deadline = time.monotonic() + 20
        while second.is_alive() and not waiting_on_a_lock(app):
            assert time.monotonic() < deadline, "the contender neither waited nor ended"
            time.sleep(0.02)
        release.set()
        first.join(20)
        second.join(20)
        for engine in engines:
            event.remove(engine, "after_cursor_execute", pause)
    return answers["holder"], answers["other"]


# --- users and tokens ----------------------------------------------------------

USER_PASSWORD = "user-password-123"


@functools.cache
def user_password_hash() -> str:
    from lms_app.accounts.passwords import hash_password

    return hash_password(USER_PASSWORD)


def add_user(
    app: Flask,
    tenant: TenantInfo,
    role: str = "student",
    email: str | None = None,
    name: str | None = None,
    is_active: bool = True,
) -> int:
    """Insert a user straight into the tenant (password USER_PASSWORD); returns its id."""
    from lms_app.accounts.models import User

    email = email or f"{role}-{uuid.uuid4().hex[:10]}@example.test"
    with app.app_context(), tenant_scope(tenant):
        user = User(
            email=email,
            name=name or email.split("@")[0],
            role=role,
            password_hash=user_password_hash(),
            is_active=is_active,
        )
        db.session.add(user)
        db.session.commit()
        return user.id


def headers_for(app: Flask, tenant: TenantInfo, user_id: int) -> dict[str, str]:
    """Tenant + bearer headers for a user without a password round trip (scrypt is slow)."""
    from lms_app.accounts.auth import issue_token
    from lms_app.accounts.models import User

    with app.app_context(), tenant_scope(tenant):
        version = db.session.scalar(select(User.token_version).where(User.id == user_id))
        token, _ = issue_token(user_id, version)
    return tenant_headers(tenant, token)


def admin_id(app: Flask, tenant: TenantInfo) -> int:
    from lms_app.accounts.models import User

    with app.app_context(), tenant_scope(tenant):
        return db.session.scalar(select(User.id).where(User.email == f"admin@{tenant.slug}.test"))


def tenant_headers(tenant: TenantInfo, token: str | None = None) -> dict[str, str]:
    headers = {"X-Tenant": tenant.slug}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def login(
    client: FlaskClient, tenant: TenantInfo, email: str, password: str = USER_PASSWORD
) -> dict[str, str]:
    """Headers (tenant + bearer token) for `email` in `tenant`."""
    r = client.post(
        "/api/v1/auth/token",
        json={"email": email, "password": password},
        headers=tenant_headers(tenant),
    )
    assert r.status_code == 200, r.get_json()
    return tenant_headers(tenant, r.get_json()["access_token"])


def user_email(app: Flask, tenant: TenantInfo, user_id: int) -> str:
    from lms_app.accounts.models import User

    with app.app_context(), tenant_scope(tenant):
        return db.session.get(User, user_id).email


# --- responses -------------------------------------------------------------------


def assert_error(response, code: int) -> dict:
    """API.md's error shape: JSON {code, status, message[, errors on 422]}, never HTML."""
    text = response.get_data(as_text=True)
    assert response.status_code == code, (response.status_code, text)
    assert response.mimetype == "application/json", (response.content_type, text)
    assert not text.lstrip().startswith("<"), text
    assert "Traceback" not in text and 'File "' not in text, text
    body = response.get_json()
    assert body["code"] == code
    assert body["status"] == HTTPStatus(code).phrase
    assert isinstance(body["message"], str) and body["message"]
    if code == 422:
        assert isinstance(body["errors"], dict) and body["errors"]
    else:
        assert "errors" not in body, body
    assert set(body) <= {"code", "status", "message", "errors"}
    return body
