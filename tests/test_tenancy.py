"""Tenancy core: provisioning, slugs, isolation between schemas, request resolution."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask
from sqlalchemy import Engine, create_engine, event, func, select, text, update
from sqlalchemy.pool import NullPool

from lms_app.accounts.models import User
from lms_app.catalog.models import Course
from lms_app.extensions import db
from lms_app.tenancy.context import TenantInfo, tenant_scope
from lms_app.tenancy.models import Tenant
from lms_app.tenancy.provisioning import (
    NewTenant,
    TenantExists,
    TenantNotFound,
    create_tenant,
    drop_tenant,
)
from lms_app.tenancy.resolver import registry
from lms_app.tenancy.slugs import InvalidSlug, schema_for, validate_slug
from tests.conftest import ADMIN_PASSWORD, any_schema_of, assert_error, make_app, unique_slug

# --- helpers --------------------------------------------------------------------------


def schema_exists(engine: Engine, schema: str) -> bool:
    with engine.connect() as conn:
        return (
            conn.execute(
                text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": schema}
            ).scalar_one()
            == 1
        )


def registry_row(engine: Engine, slug: str):
    with engine.connect() as conn:
        return conn.execute(select(Tenant.__table__).where(Tenant.slug == slug)).first()


def tenant_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Tenant)).scalar_one()


def new_tenant(slug: str, email: str | None = None, password: str = ADMIN_PASSWORD) -> NewTenant:
    return NewTenant(slug, "School " + slug, email or f"admin@{slug}.test", password)


@contextmanager
def count_statements(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.fixture(scope="module")
def engine(app: Flask) -> Engine:
    with app.app_context():
        return db.engine


# --- create / drop ---------------------------------------------------------------------


def test_create_and_drop_tenant(app: Flask, engine: Engine) -> None:
    slug = unique_slug("cd")
    with app.app_context():
        tenant = create_tenant(engine, new_tenant(slug))
    schema = schema_for(tenant.id, slug)
    try:
        assert tenant.slug == slug
        assert tenant.schema_name == schema == f"t{tenant.id}_{slug}"
        assert tenant.status == "active" and tenant.is_active
        assert schema_exists(engine, schema)
        row = registry_row(engine, slug)
        assert row is not None and row.schema_name == schema
        with engine.connect() as conn:
            tables = set(
                conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
                ).scalars()
            )
        assert {
            "users",
            "categories",
            "courses",
            "lessons",
            "enrollments",
            "lesson_progress",
            "user_activity",
            "alembic_version",
        } <= tables
        with app.app_context(), tenant_scope(tenant):
            admins = db.session.execute(select(User.email, User.role)).all()
        assert [tuple(a) for a in admins] == [(f"admin@{slug}.test", "admin")]
    finally:
        drop_tenant(engine, slug)
    assert not schema_exists(engine, schema)
    assert registry_row(engine, slug) is None
    with pytest.raises(TenantNotFound):
        drop_tenant(engine, slug)


def test_duplicate_slug_changes_nothing(app: Flask, engine: Engine, make_tenant) -> None:
    tenant = make_tenant()
    before = tenant_count(engine)
    with pytest.raises(TenantExists):
        create_tenant(engine, new_tenant(tenant.slug, email="other@elsewhere.test"))
    assert tenant_count(engine) == before
    row = registry_row(engine, tenant.slug)
    assert row.id == tenant.id and row.name == tenant.name
    with app.app_context(), tenant_scope(tenant):
        emails = db.session.scalars(select(User.email)).all()
    assert emails == [f"admin@{tenant.slug}.test"]


@pytest.mark.parametrize(
    ("email", "password"),
    [("not-an-email", ADMIN_PASSWORD), ("admin@", ADMIN_PASSWORD), ("a@b.test", "short")],
)
def test_invalid_admin_rejected_before_anything_is_written(
    engine: Engine, email: str, password: str
) -> None:
    slug = unique_slug("bad")
    before = tenant_count(engine)
    with pytest.raises(ValueError):
        create_tenant(engine, new_tenant(slug, email=email, password=password))
    assert tenant_count(engine) == before
    assert registry_row(engine, slug) is None
    assert not any_schema_of(engine, slug)


def next_tenant_id(engine: Engine) -> int:
    """The id the next tenant will get (this worker's database has no other writers)."""
    with engine.begin() as conn:
        return conn.execute(
            text("SELECT nextval(pg_get_serial_sequence('public.tenants', 'id')) + 1")
        ).scalar_one()


def test_existing_schema_makes_creation_fail_without_registry_row(engine: Engine) -> None:
    slug = unique_slug("pre")
    schema = schema_for(next_tenant_id(engine), slug)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        conn.execute(text(f'CREATE TABLE "{schema}".keep_me (x int)'))
    try:
        with pytest.raises(TenantExists, match=schema):
            create_tenant(engine, new_tenant(slug))
        assert registry_row(engine, slug) is None
        # The stranger's schema is untouched.
        with engine.connect() as conn:
            assert (
                conn.execute(
                    text("SELECT count(*) FROM pg_tables WHERE schemaname = :s"), {"s": schema}
                ).scalar_one()
                == 1
            )
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def test_failure_after_tables_are_built_rolls_everything_back(database_url: str) -> None:
    """A statement failing late (the admin insert) leaves neither schema nor registry row."""
    slug = unique_slug("late")
    engine = create_engine(database_url, poolclass=NullPool)
    seen_ddl: list[str] = []
    schema = re.compile(rf"t\d+_{slug}")

    @event.listens_for(engine, "before_cursor_execute")
    def fail_on_admin_insert(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("CREATE INDEX") and schema.search(statement):
            seen_ddl.append(statement)
        if statement.startswith("INSERT INTO") and re.match(
            rf"INSERT INTO {schema.pattern}\.users", statement
        ):
            raise RuntimeError("injected failure after the schema was built")

    try:
        with pytest.raises(RuntimeError, match="injected failure"):
            create_tenant(engine, new_tenant(slug))
        assert len(seen_ddl) > 10  # the tables and indexes really were built first
        assert registry_row(engine, slug) is None
        assert not any_schema_of(engine, slug)
    finally:
        event.remove(engine, "before_cursor_execute", fail_on_admin_insert)
        engine.dispose()


# --- slugs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "slug",
    ["A", "1abc", "a", "ab-c", "x" * 42, "public", "t; drop", "", "ab c", "Ab", "é_school", "_ab"],
)
def test_bad_slugs_rejected(slug: str) -> None:
    with pytest.raises(InvalidSlug):
        validate_slug(slug)
    with pytest.raises(InvalidSlug):
        schema_for(1, slug)
    assert issubclass(InvalidSlug, ValueError)


@pytest.mark.parametrize("slug", ["ab", "x" * 41, "school_1", "a1", "lincoln_high_2024"])
def test_good_slugs_accepted(slug: str) -> None:
    assert validate_slug(slug) == slug
    assert schema_for(7, slug) == "t7_" + slug
    assert len(schema_for(2**63 - 1, slug)) <= 63  # the largest bigint id still fits


def test_bad_slug_never_reaches_the_database(engine: Engine) -> None:
    before = tenant_count(engine)
    with pytest.raises(InvalidSlug):
        create_tenant(engine, new_tenant("t; drop schema public"))
    assert tenant_count(engine) == before


# --- isolation -------------------------------------------------------------------------


def _fill(app: Flask, tenant: TenantInfo, label: str) -> None:
    with app.app_context(), tenant_scope(tenant):
        db.session.add_all(
            [
                User(id=100, email=f"{label}-100@x.test", name=f"{label} hundred", role="student"),
                User(
                    id=101, email=f"{label}-101@x.test", name=f"{label} one-oh-one", role="student"
                ),
            ]
        )
        db.session.flush()
        db.session.add(Course(id=100, title=f"{label} course", instructor_id=100))
        db.session.commit()


def test_same_ids_never_cross_tenants(app: Flask, make_tenant) -> None:
    a = make_tenant(name="School A")
    b = make_tenant(name="School B")
    _fill(app, a, "alpha")
    _fill(app, b, "beta")

    for tenant, label, other in ((a, "alpha", "beta"), (b, "beta", "alpha")):
        with app.app_context(), tenant_scope(tenant):
            users = db.session.execute(select(User.id, User.email).order_by(User.id)).all()
            assert [tuple(u) for u in users] == [
                (1, f"admin@{tenant.slug}.test"),
                (100, f"{label}-100@x.test"),
                (101, f"{label}-101@x.test"),
            ]
            assert db.session.get(User, 100).name == f"{label} hundred"
            courses = db.session.execute(select(Course.id, Course.title)).all()
            assert [tuple(c) for c in courses] == [(100, f"{label} course")]
            assert (
                db.session.scalar(
                    select(func.count()).select_from(User).where(User.email.like(f"{other}-%"))
                )
                == 0
            )

    # An update in one tenant leaves the same id in the other alone.
    with app.app_context(), tenant_scope(a):
        db.session.execute(update(Course).where(Course.id == 100).values(title="changed"))
        db.session.commit()
    with app.app_context(), tenant_scope(b):
        assert db.session.get(Course, 100).title == "beta course"
    with app.app_context(), tenant_scope(a):
        assert db.session.get(Course, 100).title == "changed"


def test_pooled_connection_carries_no_tenant_state(app: Flask, make_tenant) -> None:
    tenant = make_tenant()
    with app.app_context():
        with db.engine.connect() as conn:
            default_path = conn.execute(text("SHOW search_path")).scalar_one()
        with tenant_scope(tenant):
            pid = db.session.execute(select(func.pg_backend_pid())).scalar_one()
            # The tenant's rows are found without touching search_path.
            path_inside = db.session.execute(text("SHOW search_path")).scalar_one()
            assert db.session.scalar(select(func.count()).select_from(User)) == 1
            db.session.commit()
        db.session.close()
        assert path_inside == default_path
        assert tenant.schema_name not in default_path

        # Find the very connection the tenant used among the pool's idle connections.
        held = []
        try:
            found = None
            for _ in range(db.engine.pool.size() + 5):
                conn = db.engine.connect()
                held.append(conn)
                if conn.execute(select(func.pg_backend_pid())).scalar_one() == pid:
                    found = conn
                    break
            assert found is not None, "the tenant's connection was not returned to the pool"
            assert found.execute(text("SHOW search_path")).scalar_one() == default_path
            # Unqualified names do not resolve into the tenant's schema.
            assert found.execute(text("SELECT to_regclass('users')")).scalar_one() is None
        finally:
            for conn in held:
                conn.close()


# --- HTTP resolution -------------------------------------------------------------------


def test_header_resolves_tenant(client, make_tenant) -> None:
    tenant = make_tenant(name="Header School")
    r = client.get("/api/v1/tenant", headers={"X-Tenant": tenant.slug})
    assert r.status_code == 200
    assert r.json["slug"] == tenant.slug
    assert r.json["name"] == "Header School"
    assert r.json["status"] == "active"
    # Header values are case-insensitive and trimmed.
    r = client.get("/api/v1/tenant", headers={"X-Tenant": f"  {tenant.slug.upper()} "})
    assert r.status_code == 200 and r.json["slug"] == tenant.slug


def test_missing_tenant_is_400(client) -> None:
    body = assert_error(client.get("/api/v1/tenant"), 400)
    assert "tenant" in body["message"].lower()
    assert "errors" not in body
    assert_error(client.get("/api/v1/tenant", headers={"X-Tenant": "  "}), 400)


@pytest.mark.parametrize("slug", ["ab-c", "t; drop", "1abc", "x" * 42, "a"])
def test_malformed_tenant_is_400(client, slug: str) -> None:
    body = assert_error(client.get("/api/v1/tenant", headers={"X-Tenant": slug}), 400)
    assert "malformed" in body["message"]


def test_unknown_tenant_is_404(client) -> None:
    slug = unique_slug("nobody")
    body = assert_error(client.get("/api/v1/tenant", headers={"X-Tenant": slug}), 404)
    assert slug in body["message"]


def test_suspended_tenant_is_403(app: Flask, client, engine: Engine, make_tenant) -> None:
    tenant = make_tenant()
    assert client.get("/api/v1/tenant", headers={"X-Tenant": tenant.slug}).status_code == 200
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE public.tenants SET status = 'suspended' WHERE slug = :s"),
            {"s": tenant.slug},
        )
    with app.app_context():
        registry().invalidate(tenant.slug)
    body = assert_error(client.get("/api/v1/tenant", headers={"X-Tenant": tenant.slug}), 403)
    assert "suspended" in body["message"]

    with engine.begin() as conn:
        conn.execute(
            text("UPDATE public.tenants SET status = 'active' WHERE slug = :s"),
            {"s": tenant.slug},
        )
    with app.app_context():
        registry().invalidate(tenant.slug)
    assert client.get("/api/v1/tenant", headers={"X-Tenant": tenant.slug}).status_code == 200


@pytest.fixture(scope="module")
def subdomain_app(database_url: str, redis_url: str, tmp_path_factory) -> Iterator[Flask]:
    app = make_app(database_url, redis_url, tmp_path_factory.mktemp("subdomain"))
    app.config["TENANT_BASE_DOMAIN"] = "lms.test"
    yield app
    with app.app_context():
        db.engine.dispose()


def test_subdomain_resolves_tenant(subdomain_app: Flask, make_tenant) -> None:
    tenant = make_tenant(slug=unique_slug("sub").replace("_", ""))
    other = make_tenant()
    client = subdomain_app.test_client()
    r = client.get("/api/v1/tenant", base_url=f"http://{tenant.slug}.lms.test")
    assert r.status_code == 200 and r.json["slug"] == tenant.slug
    r = client.get("/api/v1/tenant", base_url=f"http://{tenant.slug}.lms.test:8080")
    assert r.status_code == 200 and r.json["slug"] == tenant.slug
    # The header wins over the subdomain.
    r = client.get(
        "/api/v1/tenant",
        base_url=f"http://{tenant.slug}.lms.test",
        headers={"X-Tenant": other.slug},
    )
    assert r.status_code == 200 and r.json["slug"] == other.slug
    # The bare base domain and foreign hosts name no tenant.
    assert_error(client.get("/api/v1/tenant", base_url="http://lms.test"), 400)
    assert_error(client.get("/api/v1/tenant", base_url=f"http://{tenant.slug}.other.test"), 400)
    assert_error(
        client.get(
            "/api/v1/tenant", base_url=f"http://{unique_slug('nope').replace('_', '')}.lms.test"
        ),
        404,
    )
    # Host names cannot carry "_": a slug's underscores are written as hyphens.
    underscored = make_tenant(slug=unique_slug("sub"))
    host = underscored.slug.replace("_", "-")
    r = client.get("/api/v1/tenant", base_url=f"http://{host}.lms.test")
    assert r.status_code == 200 and r.json["slug"] == underscored.slug
    assert_error(client.get("/api/v1/tenant", base_url="http://9bad.lms.test"), 400)


def test_tenant_dropped_by_another_process_is_404_not_500(
    app: Flask, database_url: str, redis_url: str, tmp_path_factory
) -> None:
    """A worker whose registry cache still holds a dropped school answers 404."""
    other_worker = make_app(database_url, redis_url, tmp_path_factory.mktemp("worker2"))
    with app.app_context():
        tenant = create_tenant(db.engine, new_tenant(unique_slug("gone")))
    client = other_worker.test_client()
    headers = {"X-Tenant": tenant.slug}
    r = client.post(
        "/api/v1/auth/token",
        json={"email": f"admin@{tenant.slug}.test", "password": ADMIN_PASSWORD},
        headers=headers,
    )
    assert r.status_code == 200  # the second worker now caches the tenant
    with app.app_context():
        drop_tenant(db.engine, tenant.slug)
    r = client.post(
        "/api/v1/auth/token",
        json={"email": f"admin@{tenant.slug}.test", "password": ADMIN_PASSWORD},
        headers=headers,
    )
    assert_error(r, 404)
    with other_worker.app_context():
        db.engine.dispose()


def test_warm_registry_costs_no_query(app: Flask, client, engine: Engine, make_tenant) -> None:
    tenant = make_tenant()
    headers = {"X-Tenant": tenant.slug}
    with count_statements(engine) as cold:
        assert client.get("/api/v1/tenant", headers=headers).status_code == 200
    assert any("tenants" in s for s in cold)  # the first request did look it up
    with count_statements(engine) as warm:
        r = client.get("/api/v1/tenant", headers=headers)
    assert r.status_code == 200 and r.json["slug"] == tenant.slug
    assert warm == []


def test_unknown_tenant_lookups_are_cached_too(client, engine: Engine) -> None:
    headers = {"X-Tenant": unique_slug("ghost")}
    with count_statements(engine) as cold:
        assert client.get("/api/v1/tenant", headers=headers).status_code == 404
    assert len(cold) >= 1
    with count_statements(engine) as warm:
        assert client.get("/api/v1/tenant", headers=headers).status_code == 404
    assert warm == []


# --- error shape -----------------------------------------------------------------------


def test_unknown_route_is_404_json(client, make_tenant) -> None:
    body = assert_error(client.get("/no/such/route"), 404)
    assert "<html" not in client.get("/no/such/route").get_data(as_text=True).lower()
    assert "errors" not in body
    tenant = make_tenant()
    assert_error(client.get("/api/v1/no-such-thing", headers={"X-Tenant": tenant.slug}), 404)


def test_wrong_method_is_405_json(client) -> None:
    r = client.post("/healthz")
    assert_error(r, 405)
    assert "GET" in r.headers.get("Allow", "")
    assert client.get("/healthz").json == {"status": "ok"}


@pytest.fixture(scope="module")
def crashing_app(database_url: str, redis_url: str, tmp_path_factory) -> Iterator[Flask]:
    app = make_app(database_url, redis_url, tmp_path_factory.mktemp("crash"))

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret-internal-detail at /srv/lms_app/boom.py")

    yield app
    with app.app_context():
        db.engine.dispose()


def test_unexpected_exception_is_500_json_without_traceback(crashing_app: Flask) -> None:
    r = crashing_app.test_client().get("/boom")
    body = assert_error(r, 500)
    text_body = r.get_data(as_text=True)
    assert "Traceback" not in text_body
    assert "secret-internal-detail" not in text_body
    assert "RuntimeError" not in text_body
    assert "<html" not in text_body.lower()
    assert body["status"] == "Internal Server Error"
