"""lms_app: a multi-tenant learning-platform backend (the app factory)."""

from __future__ import annotations

import logging
import secrets
from importlib import import_module
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from config.settings import Settings, SettingsError
from lms_app.caching import generations as cache_generations
from lms_app.caching import local as cache_local
from lms_app.caching import safe as cache_safety
from lms_app.caching import stats as cache_stats
from lms_app.db import retry as db_retry
from lms_app.db import routing
from lms_app.db import session as db_session
from lms_app.db.engines import (
    READ_BIND,
    engine_options,
    read_engine_options,
    remember_schema_translation,
)
from lms_app.db.monitoring import instrument_engine
from lms_app.db.pool_health import install_idle_ping
from lms_app.errors import register_error_handlers
from lms_app.extensions import api, cache, db
from lms_app.observability import access_log, docs, metrics
from lms_app.observability.liveness import Liveness
from lms_app.observability.logging import configure_logging
from lms_app.web import bodies, converters, openapi, sessions
from lms_app.web.json import ApiJSONProvider

log = logging.getLogger(__name__)

# Each module defines `blp`, a flask-smorest Blueprint (documented in /openapi.json).
BLUEPRINT_MODULES = (
    "lms_app.observability.health",
    "lms_app.tenancy.routes",
    "lms_app.accounts.routes",
    "lms_app.catalog.routes",
    "lms_app.learning.routes",
    "lms_app.analytics.routes",
    "lms_app.privacy.routes",
    "lms_app.audit.routes",
    "lms_app.tenancy.platform_routes",
)
BEARER_DOC = (
    "Tenant routes: a token from POST /api/v1/auth/token, sent with X-Tenant. "
    "Platform routes: the PLATFORM_API_KEY."
)
SPEC_KWARGS = {
    "info": {"description": "lms_app: multi-tenant learning platform API (see API.md)."},
    "security": [{"bearerAuth": []}],
}


def create_app(settings: Settings | None = None, **config_overrides: Any) -> Flask:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    metrics.set_enabled(settings.metrics)
    app = Flask(__name__, instance_path=str(settings.instance_path))
    app.json = ApiJSONProvider(app)
    app.config.update(_flask_config(settings))
    app.config.update(config_overrides)

    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops
        )
    app.wsgi_app = Liveness(app.wsgi_app, log_requests=settings.access_log)
    # No redirects: `//` in a path is a 404, not a 308 with an HTML body and a
    # Location built from the Host header.
    app.url_map.merge_slashes = False
    # No automatic OPTIONS answers (an empty text/html 200 on every route, past tenant
    # and auth checks): lms_app serves no browser preflights; OPTIONS is a JSON 405.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    converters.init_app(app)
    access_log.init_app(app)
    sessions.init_app(app)
    bodies.init_app(app)
    db.init_app(app)
    cache.init_app(app)
    cache_safety.init_app(app, settings.cache_breaker_s)
    cache_local.init_app(app)
    cache_generations.init_app(app, settings.cache_local_s)
    cache_stats.init_app(app)
    api.init_app(app, spec_kwargs=SPEC_KWARGS)
    api.register_converter(
        converters.IdConverter,
        lambda _c: {"type": "integer", "format": "int64", "minimum": 1},
    )
    api.register_converter(
        converters.SlugConverter,
        lambda _c: {"type": "string", "pattern": converters.SlugConverter.regex},
    )
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": BEARER_DOC}
    )
    with app.app_context():
        routing.init_app(app, db.engines)
        binds = {("primary" if key is None else key): e for key, e in db.engines.items()}
        for replica in routing.replica_engines(app):
            binds[f"replica:{replica.url.host}:{replica.url.port}"] = replica
        for bind, engine in binds.items():
            remember_schema_translation(engine)
            instrument_engine(
                engine,
                settings.slow_query_ms,
                bind,
                settings.pool_warn_utilisation,
                settings.pool_warn_waiting,
            )
            if settings.pool.pre_ping:
                install_idle_ping(engine, settings.pool.pre_ping_idle_s)

    from lms_app.accounts import auth, throttle
    from lms_app.audit import cli as audit_cli
    from lms_app.db import cli as db_cli
    from lms_app.demo import cli as demo_cli
    from lms_app.tenancy import cli as tenancy_cli
    from lms_app.tenancy import resolver

    resolver.init_app(app)
    db_session.init_app(app)
    auth.init_app(app)
    throttle.init_app(app)
    for module in BLUEPRINT_MODULES:
        api.register_blueprint(import_module(module).blp)
    openapi.complete(api)
    # A page for people, not an API operation: outside /openapi.json; so are the
    # metrics, in Prometheus' own format.
    app.register_blueprint(docs.blp)
    app.register_blueprint(metrics.blp)
    db_retry.init_app(app)
    tenancy_cli.init_app(app)
    db_cli.init_app(app)
    demo_cli.init_app(app)
    audit_cli.init_app(app)
    # After flask-smorest's own handlers, so every error has one shape.
    register_error_handlers(app)
    return app


def _flask_config(settings: Settings) -> dict[str, Any]:
    database_url = settings.database_url
    if database_url is None:
        if settings.is_production:  # pragma: no cover - from_env already refuses this
            raise SettingsError("DATABASE_URL is required in production")
        from lms_app.db.embedded import start_embedded_postgres

        database_url = start_embedded_postgres(settings.instance_path / "pgdata")
        log.info("database=embedded path=%s", settings.instance_path / "pgdata")
    else:
        log.info("database=external replicas=%d", len(settings.database_replica_urls))

    if settings.redis_url:
        cache_config = {
            "CACHE_TYPE": "RedisCache",
            "CACHE_REDIS_URL": settings.redis_url,
            "CACHE_OPTIONS": _redis_options(settings.cache_timeout_ms),
        }
        log.info("cache=redis")
    else:
        # One process only: SimpleCache is not shared between gunicorn workers.
        cache_config = {"CACHE_TYPE": "SimpleCache", "CACHE_THRESHOLD": 10_000}
        log.info("cache=in-process")

    return {
        "LMS_SETTINGS": settings,
        "SECRET_KEY": settings.secret_key or _development_secret(settings.instance_path),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(settings.pool),
        # The primary seen through an autocommit pool: plain reads of read-only
        # requests when no replica may serve them (lms_app.db.routing).
        "SQLALCHEMY_BINDS": {READ_BIND: read_engine_options(settings.pool, database_url)},
        "SQLALCHEMY_TRACK_MODIFICATIONS": False,
        "MAX_CONTENT_LENGTH": settings.max_content_length,
        "TENANT_BASE_DOMAIN": settings.server_name,
        "TENANT_CACHE_TTL": settings.tenant_cache_ttl_s,
        "PLATFORM_API_KEY": settings.platform_api_key,
        "CACHE_KEY_PREFIX": "lms:",
        "LOGIN_THROTTLE_KEY_PREFIX": "lms-rl",
        "LOGIN_LIMIT_PER_ACCOUNT": settings.login_limit_per_account,
        "LOGIN_LIMIT_PER_ADDRESS": settings.login_limit_per_address,
        "CACHE_DEFAULT_TIMEOUT": settings.cache_ttl.course_list,
        **cache_config,
        "API_TITLE": "lms_app",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
    }


def _redis_options(timeout_ms: int) -> dict[str, Any]:
    """Fail fast, no retries: a slow cache must cost a request milliseconds, and the
    breaker in lms_app.caching.safe then keeps requests off it for a while."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    timeout_s = timeout_ms / 1000
    return {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 0),
    }


def _development_secret(instance_path: Path) -> str:
    """A key kept under instance/ so development tokens survive restarts."""
    instance_path.mkdir(parents=True, exist_ok=True)
    key_file = instance_path / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    return key_file.read_text().strip()
