"""Shared fixtures: one database per xdist worker, tenants per test module."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from config.settings import Settings
from lms_app import create_app
from lms_app.extensions import db
from lms_app.tenancy.context import TenantInfo
from lms_app.tenancy.migrations import upgrade_public
from lms_app.tenancy.provisioning import NewTenant, create_tenant, drop_tenant
from lms_app.tenancy.resolver import registry
from tests import servers

ADMIN_PASSWORD = "admin-password-123"


def worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


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


def make_app(database_url: str, redis_url: str | None, instance_path: Path) -> Flask:
    settings = Settings(
        env="test",
        database_url=database_url,
        redis_url=redis_url,
        secret_key="test-secret-key",
        platform_api_key="test-platform-key",
        instance_path=instance_path,
    )
    app = create_app(
        settings,
        TESTING=True,
        CACHE_KEY_PREFIX=f"lms:test:{worker_id()}:{uuid.uuid4().hex[:8]}:",
    )
    with app.app_context():
        upgrade_public(db.engine)
    return app


@pytest.fixture(scope="session")
def app(database_url: str, redis_url: str, tmp_path_factory) -> Flask:
    return make_app(database_url, redis_url, tmp_path_factory.mktemp("instance"))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def unique_slug(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


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
            try:
                drop_tenant(db.engine, slug)
            except Exception:
                pass  # the test dropped it itself
