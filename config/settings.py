"""Every setting lms_app reads, and only from the environment.

`Settings.from_env()` is the single place that parses environment variables; the
app factory turns the result into Flask config. Nothing tenant- or
deployment-specific lives in code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from limits import parse

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(RuntimeError):
    """A setting is missing or malformed; the message names it."""


# Required in production: without them the app would silently run on a
# throw-away database, a per-process cache or a guessable key.
REQUIRED_IN_PRODUCTION = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PLATFORM_API_KEY")

# The audit trigger (tenant migration 0006) refuses to delete audit events younger
# than this whatever a connection asks; a shorter AUDIT_RETENTION_DAYS would be a
# promise the database does not keep, so it is refused at start-up.
AUDIT_RETENTION_FLOOR_DAYS = 30


def normalize_database_url(url: str, setting: str = "DATABASE_URL") -> str:
    """Accept Heroku's `postgres://` and plain `postgresql://`; pin the psycopg2 driver."""
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    if url.startswith("postgresql+"):
        return url
    raise SettingsError(f"{setting} must start with postgres:// or postgresql://")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _share(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if not 0.0 <= value <= 1.0:
        raise SettingsError(f"{name} must be between 0 and 1, got {value}")
    return value


# Signing key and operators' key: long enough that guessing is out of the question
# (32 characters of `secrets.token_urlsafe` carry about 190 bits).
MIN_SECRET_LENGTH = 32


def _secret(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip() or None
    if value is not None and len(value) < MIN_SECRET_LENGTH:
        raise SettingsError(
            f"{name} must be at least {MIN_SECRET_LENGTH} characters "
            '(for one: python -c "import secrets; print(secrets.token_urlsafe(32))")'
        )
    return value


def _rate(env: Mapping[str, str], name: str, default: str) -> str:
    """A rate limit as `limits` reads it ("10/minute", "100 per hour"), checked now:
    a bad one would otherwise fail every login at run time."""
    value = (env.get(name) or default).strip()
    try:
        parse(value)
    except ValueError:
        raise SettingsError(f'{name} must be a rate such as "10/minute", got {value!r}') from None
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class CacheTTL:
    """Seconds each cached namespace lives (the seed's figures)."""

    course_list: int = 300
    course_detail: int = 1800
    user_progress: int = 60
    lesson_content: int = 3600
    analytics: int = 900
    search: int = 300
    categories: int = 3600


@dataclass(frozen=True)
class PoolSettings:
    """Per-process pool; workers x (size + overflow) must stay below max_connections."""

    size: int = 5
    max_overflow: int = 15
    timeout_s: int = 10
    recycle_s: int = 1800
    pre_ping: bool = True
    # Connections idle longer than this are pinged on checkout (0: ping every time).
    pre_ping_idle_s: float = 5.0
    statement_timeout_ms: int = 30_000
    connect_timeout_s: int = 10
    keepalives_idle_s: int = 30
    # The planner's price of a random page read on lms_app's connections. PostgreSQL's
    # default (4) models spinning disks and makes it scan a whole table rather than
    # follow a GIN index to a fifth of its rows (search for a common word: 8.7 ms
    # instead of 2.9 ms); 1.1 fits SSD, NVMe and cloud volumes. 0 keeps the server's.
    random_page_cost: float = 1.1
    # The hottest per-learner reads are PREPAREd once per connection
    # (lms_app.db.prepared). Off behind a transaction-mode pooler that cannot
    # carry prepared statements (PgBouncer before 1.21).
    prepared_statements: bool = True


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    database_url: str | None = None
    database_replica_urls: tuple[str, ...] = ()
    redis_url: str | None = None
    secret_key: str | None = None
    platform_api_key: str | None = None
    server_name: str | None = None
    slow_query_ms: int = 1000
    tenant_cache_ttl_s: int = 30
    token_ttl_s: int = 12 * 3600
    # Replicas (lms_app.db.replicas, lms_app.db.routing): skipped past this lag.
    replica_max_lag_s: float = 5.0
    replica_max_lag_bytes: int = 16 * 1024 * 1024
    # How often each process re-reads a replica's replay position and health.
    replica_check_s: float = 1.0
    # A replica that failed is out this long, doubling per failure (up to 16x).
    replica_backoff_s: float = 5.0
    # How long a user's last write position is kept: it must outlast the lag limit.
    replica_sticky_s: float = 30.0
    # A pool past this share in use, or with more requests waiting, logs a warning
    # (at most once a minute per pool and process).
    pool_warn_utilisation: float = 0.8
    pool_warn_waiting: int = 10
    # A cache namespace whose hit rate over a minute falls under this logs a warning.
    cache_warn_hit_rate: float = 0.8
    # Record metrics (GET /metrics); off only to measure what they cost.
    metrics: bool = True
    # Bearer token GET /metrics requires; None: open (keep it off the public network).
    metrics_token: str | None = None
    max_content_length: int = 2 * 1024 * 1024
    log_level: str = "INFO"
    # flask-limiter strings for POST /auth/token.
    login_limit_per_account: str = "10/minute"
    login_limit_per_address: str = "60/minute"
    # Reverse proxies in front of the app whose X-Forwarded-For we trust (Heroku: 1).
    proxy_hops: int = 0
    # Seconds a user's auth state is kept (shared cache and process copies). Every
    # change moves the school's auth generation in PostgreSQL, so this bounds memory,
    # not staleness (that is cache_local_s).
    auth_state_ttl_s: int = 60
    # Days audit events are kept before `flask audit prune` may delete them; never
    # less than the floor compiled into the audit trigger (migration 0006).
    audit_retention_days: int = 365
    # One JSON line per request on stdout (lms_app.observability.access_log).
    access_log: bool = True
    # Shared catalog pages cached per tenant (the per-user overlay is always live).
    cache_catalog_pages: bool = True
    # Seconds a process uses its snapshot of a school's cache generations before
    # reading them from PostgreSQL again: a write made in this process shows at
    # once, one made in another process within this time (even with Redis down).
    cache_local_s: float = 1.0
    # A cache call slower than this fails; after a failure the cache is skipped for
    # cache_breaker_s (reads go to the database), then tried again.
    cache_timeout_ms: int = 200
    cache_breaker_s: float = 5.0
    pool: PoolSettings = field(default_factory=PoolSettings)
    # Each replica's own pool (same shape; a short connect timeout by default).
    replica_pool: PoolSettings = field(default_factory=lambda: PoolSettings(connect_timeout_s=2))
    cache_ttl: CacheTTL = field(default_factory=CacheTTL)
    instance_path: Path = PROJECT_ROOT / "instance"

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        app_env = (env.get("LMS_ENV") or "development").strip().lower()
        if app_env not in {"development", "production", "test"}:
            raise SettingsError(f"LMS_ENV must be development, production or test, got {app_env!r}")

        if app_env == "production":
            missing = [name for name in REQUIRED_IN_PRODUCTION if not (env.get(name) or "").strip()]
            if missing:
                raise SettingsError(
                    "missing required setting(s) for production: " + ", ".join(missing)
                )

        raw_db = (env.get("DATABASE_URL") or "").strip()
        replicas = tuple(
            normalize_database_url(part, "DATABASE_REPLICA_URLS")
            for part in (env.get("DATABASE_REPLICA_URLS") or "").split(",")
            if part.strip()
        )
        defaults_pool = PoolSettings()
        pool = PoolSettings(
            size=_int(env, "DB_POOL_SIZE", defaults_pool.size, 1),
            max_overflow=_int(env, "DB_MAX_OVERFLOW", defaults_pool.max_overflow),
            timeout_s=_int(env, "DB_POOL_TIMEOUT", defaults_pool.timeout_s, 1),
            recycle_s=_int(env, "DB_POOL_RECYCLE", defaults_pool.recycle_s, 1),
            pre_ping=_bool(env, "DB_POOL_PRE_PING", defaults_pool.pre_ping),
            pre_ping_idle_s=_float(env, "DB_PRE_PING_IDLE_SECONDS", defaults_pool.pre_ping_idle_s),
            statement_timeout_ms=_int(
                env, "DB_STATEMENT_TIMEOUT_MS", defaults_pool.statement_timeout_ms
            ),
            connect_timeout_s=_int(env, "DB_CONNECT_TIMEOUT", defaults_pool.connect_timeout_s, 1),
            keepalives_idle_s=_int(env, "DB_KEEPALIVES_IDLE", defaults_pool.keepalives_idle_s, 1),
            random_page_cost=_float(env, "DB_RANDOM_PAGE_COST", defaults_pool.random_page_cost),
            prepared_statements=_bool(
                env, "DB_PREPARED_STATEMENTS", defaults_pool.prepared_statements
            ),
        )
        d_ttl = CacheTTL()
        ttl = CacheTTL(
            **{
                f.name: _int(env, f"CACHE_TTL_{f.name.upper()}", getattr(d_ttl, f.name), 1)
                for f in fields(CacheTTL)
            }
        )
        instance = env.get("LMS_INSTANCE_PATH")
        max_lag = _float(env, "REPLICA_MAX_LAG_SECONDS", 5.0)
        sticky = _float(env, "REPLICA_STICKY_SECONDS", 30.0)
        if sticky < max_lag + _float(env, "REPLICA_CHECK_SECONDS", 1.0):
            raise SettingsError(
                "REPLICA_STICKY_SECONDS must be at least REPLICA_MAX_LAG_SECONDS plus"
                " REPLICA_CHECK_SECONDS, or a user could read from a replica that has"
                " not replayed their write"
            )
        return cls(
            env=app_env,
            database_url=normalize_database_url(raw_db) if raw_db else None,
            database_replica_urls=replicas,
            redis_url=(env.get("REDIS_URL") or "").strip() or None,
            secret_key=_secret(env, "SECRET_KEY"),
            platform_api_key=_secret(env, "PLATFORM_API_KEY"),
            server_name=(env.get("SERVER_NAME") or "").strip() or None,
            slow_query_ms=_int(env, "SLOW_QUERY_MS", 1000, 1),
            tenant_cache_ttl_s=_int(env, "TENANT_CACHE_TTL", 30),
            token_ttl_s=_int(env, "TOKEN_TTL_SECONDS", 12 * 3600, 60),
            replica_max_lag_s=max_lag,
            replica_max_lag_bytes=_int(env, "REPLICA_MAX_LAG_BYTES", 16 * 1024 * 1024, 0),
            replica_check_s=_float(env, "REPLICA_CHECK_SECONDS", 1.0),
            replica_backoff_s=_float(env, "REPLICA_BACKOFF_SECONDS", 5.0),
            replica_sticky_s=sticky,
            metrics_token=(env.get("METRICS_TOKEN") or "").strip() or None,
            metrics=_bool(env, "METRICS", True),
            pool_warn_utilisation=_share(env, "POOL_WARN_UTILISATION", 0.8),
            pool_warn_waiting=_int(env, "POOL_WARN_WAITING", 10, 0),
            cache_warn_hit_rate=_share(env, "CACHE_WARN_HIT_RATE", 0.8),
            max_content_length=_int(env, "MAX_CONTENT_LENGTH", 2 * 1024 * 1024, 1024),
            log_level=(env.get("LOG_LEVEL") or "INFO").strip().upper(),
            login_limit_per_account=_rate(env, "LOGIN_LIMIT_PER_ACCOUNT", "10/minute"),
            login_limit_per_address=_rate(env, "LOGIN_LIMIT_PER_ADDRESS", "60/minute"),
            proxy_hops=_int(env, "PROXY_HOPS", 0),
            auth_state_ttl_s=_int(env, "AUTH_STATE_TTL_SECONDS", 60, 1),
            audit_retention_days=_int(env, "AUDIT_RETENTION_DAYS", 365, AUDIT_RETENTION_FLOOR_DAYS),
            cache_catalog_pages=_bool(env, "CACHE_CATALOG_PAGES", True),
            access_log=_bool(env, "ACCESS_LOG", True),
            cache_local_s=_float(env, "CACHE_LOCAL_SECONDS", 1.0),
            cache_timeout_ms=_int(env, "CACHE_TIMEOUT_MS", 200, 1),
            cache_breaker_s=_float(env, "CACHE_BREAKER_SECONDS", 5.0),
            pool=pool,
            replica_pool=replace(
                pool,
                size=_int(env, "DB_REPLICA_POOL_SIZE", pool.size, 1),
                max_overflow=_int(env, "DB_REPLICA_MAX_OVERFLOW", pool.max_overflow),
                connect_timeout_s=_int(env, "DB_REPLICA_CONNECT_TIMEOUT", 2, 1),
            ),
            cache_ttl=ttl,
            instance_path=Path(instance) if instance else PROJECT_ROOT / "instance",
        )
