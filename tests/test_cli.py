"""`flask tenants create / list / drop` through Flask's CLI runner."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import Engine, select, text

from lms_app.accounts.models import User
from lms_app.extensions import db
from lms_app.tenancy.context import tenant_scope
from lms_app.tenancy.models import Tenant
from lms_app.tenancy.provisioning import TenantNotFound, drop_tenant
from lms_app.tenancy.registry import load_tenant
from tests.conftest import ADMIN_PASSWORD, any_schema_of, unique_slug


@pytest.fixture
def engine(app: Flask) -> Engine:
    with app.app_context():
        return db.engine


@pytest.fixture
def cli_slugs(engine: Engine) -> Iterator[list[str]]:
    """Slugs a test creates through the CLI; whatever is left is dropped afterwards."""
    slugs: list[str] = []
    yield slugs
    for slug in slugs:
        with contextlib.suppress(TenantNotFound):
            drop_tenant(engine, slug)


def schema_exists(engine: Engine, schema: str) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": schema}
            ).scalar_one()
        )


def tenant_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(Tenant.slug)).all())


def create_args(slug: str, **overrides: str) -> list[str]:
    options = {
        "--name": "CLI School",
        "--admin-email": f"Admin@{slug}.Test",
        "--admin-password": ADMIN_PASSWORD,
        **overrides,
    }
    args = ["tenants", "create", slug]
    for key, value in options.items():
        args += [key, value]
    return args


def test_create_list_drop(app: Flask, engine: Engine, cli_slugs: list[str]) -> None:
    runner = app.test_cli_runner()
    slug = unique_slug("cli")
    cli_slugs.append(slug)

    result = runner.invoke(args=create_args(slug, **{"--admin-name": "Ada Admin"}))
    assert result.exit_code == 0, result.output
    tenant = load_tenant(engine, slug)
    assert tenant is not None
    schema = f"t{tenant.id}_{slug}"
    assert f"created tenant {slug} (schema {schema})" in result.output
    assert (tenant.name, tenant.schema_name, tenant.status) == ("CLI School", schema, "active")
    assert schema_exists(engine, schema)
    with app.app_context(), tenant_scope(tenant):
        admin = db.session.execute(select(User.email, User.name, User.role)).one()
    assert tuple(admin) == (f"admin@{slug}.test", "Ada Admin", "admin")

    result = runner.invoke(args=["tenants", "list"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.split()[:1] == [slug]]
    assert len(lines) == 1
    assert lines[0].split()[:3] == [slug, "active", schema]
    assert lines[0].endswith("CLI School")
    assert f"{tenant_count(engine)} tenant(s)" in result.output

    result = runner.invoke(args=["tenants", "drop", slug, "--yes"])
    assert result.exit_code == 0, result.output
    assert f"dropped tenant {slug}" in result.output
    assert load_tenant(engine, slug) is None
    assert not any_schema_of(engine, slug)

    result = runner.invoke(args=["tenants", "list"])
    assert slug not in result.output


def test_drop_without_yes_refuses(app: Flask, engine: Engine, make_tenant) -> None:
    tenant = make_tenant()
    result = app.test_cli_runner().invoke(args=["tenants", "drop", tenant.slug])
    assert result.exit_code != 0
    assert "--yes" in result.output
    assert load_tenant(engine, tenant.slug) is not None
    assert schema_exists(engine, tenant.schema_name)


def test_drop_unknown_tenant_fails(app: Flask) -> None:
    slug = unique_slug("ghost")
    result = app.test_cli_runner().invoke(args=["tenants", "drop", slug, "--yes"])
    assert result.exit_code != 0
    assert f"no tenant '{slug}'" in result.output


@pytest.mark.parametrize("slug", ["Bad-Slug", "1school", "x", "t; drop schema public", "public"])
def test_create_with_bad_slug_fails_clearly(app: Flask, engine: Engine, slug: str) -> None:
    before = tenant_count(engine)
    result = app.test_cli_runner().invoke(args=create_args(slug))
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Error:" in result.output
    assert "slug" in result.output
    assert "Traceback" not in result.output
    assert tenant_count(engine) == before


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"--admin-password": "short"}, "password must be at least 10 characters"),
        ({"--admin-email": "not-an-email"}, "not a valid e-mail address"),
        ({"--name": "   "}, "name must be 1-120 characters"),
    ],
)
def test_create_with_bad_input_fails_clearly(
    app: Flask, engine: Engine, overrides: dict[str, str], message: str
) -> None:
    slug = unique_slug("badin")
    result = app.test_cli_runner().invoke(args=create_args(slug, **overrides))
    assert result.exit_code != 0
    assert message in result.output
    assert load_tenant(engine, slug) is None
    assert not any_schema_of(engine, slug)


def test_create_duplicate_fails(app: Flask, engine: Engine, make_tenant) -> None:
    tenant = make_tenant(name="Original")
    result = app.test_cli_runner().invoke(args=create_args(tenant.slug))
    assert result.exit_code != 0
    assert "already exists" in result.output
    assert load_tenant(engine, tenant.slug).name == "Original"


def test_create_requires_options(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["tenants", "create", unique_slug("opt")])
    assert result.exit_code == 2
    assert "--name" in result.output


def test_cli_changes_are_seen_by_requests_at_once(app: Flask, client, cli_slugs: list[str]) -> None:
    """The CLI forgets its process's cached registry entry (a cached miss included)."""
    slug = unique_slug("seen")
    cli_slugs.append(slug)
    headers = {"X-Tenant": slug}
    runner = app.test_cli_runner()

    assert client.get("/api/v1/tenant", headers=headers).status_code == 404  # miss cached
    assert runner.invoke(args=create_args(slug)).exit_code == 0
    r = client.get("/api/v1/tenant", headers=headers)
    assert r.status_code == 200 and r.json["slug"] == slug

    assert runner.invoke(args=["tenants", "drop", slug, "--yes"]).exit_code == 0
    assert client.get("/api/v1/tenant", headers=headers).status_code == 404


def test_retire_caches_moves_every_generation_of_every_school(app: Flask, make_tenant) -> None:
    from lms_app.caching import generations
    from lms_app.caching.models import CacheGeneration

    schools = [make_tenant(), make_tenant()]

    def generations_of(tenant) -> dict[str, int]:
        with app.app_context(), tenant_scope(tenant):
            rows = db.session.execute(select(CacheGeneration.namespace, CacheGeneration.generation))
            found = {row.namespace: row.generation for row in rows}
            db.session.rollback()
            return found

    before = [generations_of(t) for t in schools]
    result = app.test_cli_runner().invoke(args=["tenants", "retire-caches"])
    assert result.exit_code == 0, result.output
    for tenant, was in zip(schools, before, strict=True):
        now = generations_of(tenant)
        assert now == {ns: was.get(ns, 0) + 1 for ns in generations.ALL}
