"""Settings.from_env: every setting from the environment, parsed and checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import (
    PROJECT_ROOT,
    REQUIRED_IN_PRODUCTION,
    Settings,
    SettingsError,
    normalize_database_url,
)
from lms_app.db.engines import engine_options

PRODUCTION_ENV = {
    "LMS_ENV": "production",
    "DATABASE_URL": "postgres://u:p@db.example.com:5432/lms",
    "REDIS_URL": "redis://cache.example.com:6379/0",
    "SECRET_KEY": "s3cret-" + "k" * 32,
    "PLATFORM_API_KEY": "platform-key-" + "p" * 32,
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "postgres://u:p@db.example.com:5432/lms",
            "postgresql+psycopg2://u:p@db.example.com:5432/lms",
        ),
        (
            "postgresql://u:p@db.example.com:5432/lms",
            "postgresql+psycopg2://u:p@db.example.com:5432/lms",
        ),
        (
            "  postgresql://u@localhost/lms?sslmode=require  ",
            "postgresql+psycopg2://u@localhost/lms?sslmode=require",
        ),
        ("postgresql+psycopg2://u@localhost/lms", "postgresql+psycopg2://u@localhost/lms"),
    ],
)
def test_database_url_schemes(raw: str, expected: str) -> None:
    settings = Settings.from_env({"DATABASE_URL": raw})
    assert settings.database_url == expected


@pytest.mark.parametrize(
    "raw", ["mysql://u@localhost/lms", "sqlite:///lms.db", "localhost:5432/lms", "postgre://x/y"]
)
def test_database_url_bad_scheme_rejected(raw: str) -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        Settings.from_env({"DATABASE_URL": raw})
    with pytest.raises(SettingsError):
        normalize_database_url(raw)


def test_database_url_unset_outside_production_means_embedded() -> None:
    settings = Settings.from_env({})
    assert settings.env == "development"
    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.database_replica_urls == ()
    assert settings.instance_path == PROJECT_ROOT / "instance"


def test_replica_urls_comma_separated() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgres://primary/lms",
            "DATABASE_REPLICA_URLS": " postgres://r1/lms, postgresql://r2:6432/lms ,,",
        }
    )
    assert settings.database_replica_urls == (
        "postgresql+psycopg2://r1/lms",
        "postgresql+psycopg2://r2:6432/lms",
    )


def test_bad_replica_url_names_the_replica_setting() -> None:
    with pytest.raises(SettingsError, match="DATABASE_REPLICA_URLS"):
        Settings.from_env({"DATABASE_REPLICA_URLS": "postgres://r1/lms,mysql://r2/lms"})


def test_pool_defaults_follow_the_seed() -> None:
    pool = Settings.from_env({}).pool
    assert pool.size == 5
    assert pool.max_overflow == 15
    assert pool.size + pool.max_overflow == 20
    assert pool.timeout_s == 10
    assert pool.recycle_s == 1800
    assert pool.pre_ping is True
    assert pool.pre_ping_idle_s == 5.0
    assert pool.statement_timeout_ms == 30_000

    options = engine_options(pool)
    assert options["pool_size"] == 5
    assert options["max_overflow"] == 15
    assert options["pool_timeout"] == 10
    assert options["pool_recycle"] == 1800
    # Pre-ping is done by lms_app.db.pool_health on idle connections instead.
    assert options["pool_pre_ping"] is False
    connect = options["connect_args"]
    assert connect["options"] == (
        "-c statement_timeout=30000 -c timezone=UTC -c random_page_cost=1.1"
    )
    assert connect["keepalives"] == 1
    assert connect["keepalives_idle"] == pool.keepalives_idle_s


def test_pool_overrides() -> None:
    pool = Settings.from_env(
        {
            "DB_POOL_SIZE": "2",
            "DB_MAX_OVERFLOW": "0",
            "DB_POOL_TIMEOUT": "3",
            "DB_POOL_RECYCLE": "600",
            "DB_POOL_PRE_PING": "false",
            "DB_STATEMENT_TIMEOUT_MS": "5000",
            "DB_RANDOM_PAGE_COST": "0",
        }
    ).pool
    assert (pool.size, pool.max_overflow, pool.timeout_s, pool.recycle_s) == (2, 0, 3, 600)
    assert pool.pre_ping is False
    assert pool.statement_timeout_ms == 5000
    assert (
        engine_options(pool)["connect_args"]["options"]
        == "-c statement_timeout=5000 -c timezone=UTC"
    )


def test_slow_query_default_and_override() -> None:
    assert Settings.from_env({}).slow_query_ms == 1000
    assert Settings.from_env({"SLOW_QUERY_MS": "250"}).slow_query_ms == 250


def test_cache_ttl_defaults_follow_the_seed() -> None:
    ttl = Settings.from_env({}).cache_ttl
    assert ttl.course_list == 300
    assert ttl.course_detail == 1800
    assert ttl.user_progress == 60
    assert ttl.lesson_content == 3600
    assert ttl.analytics == 900


def test_cache_ttl_overrides() -> None:
    ttl = Settings.from_env(
        {
            "CACHE_TTL_COURSE_LIST": "10",
            "CACHE_TTL_COURSE_DETAIL": "20",
            "CACHE_TTL_USER_PROGRESS": "30",
            "CACHE_TTL_LESSON_CONTENT": "40",
            "CACHE_TTL_ANALYTICS": "50",
        }
    ).cache_ttl
    assert (
        ttl.course_list,
        ttl.course_detail,
        ttl.user_progress,
        ttl.lesson_content,
        ttl.analytics,
    ) == (10, 20, 30, 40, 50)


def test_blank_values_fall_back_to_defaults() -> None:
    settings = Settings.from_env({"DB_POOL_SIZE": "  ", "SLOW_QUERY_MS": "", "REDIS_URL": " "})
    assert settings.pool.size == 5
    assert settings.slow_query_ms == 1000
    assert settings.redis_url is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DB_POOL_SIZE", "five"),
        ("DB_POOL_SIZE", "0"),
        ("DB_MAX_OVERFLOW", "1.5"),
        ("DB_POOL_TIMEOUT", "10s"),
        ("SLOW_QUERY_MS", "fast"),
        ("CACHE_TTL_ANALYTICS", "-1"),
        ("DB_POOL_PRE_PING", "maybe"),
        ("REPLICA_MAX_LAG_SECONDS", "lots"),
    ],
)
def test_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: value})
    assert name in str(info.value)


def test_unknown_environment_rejected() -> None:
    with pytest.raises(SettingsError, match="LMS_ENV"):
        Settings.from_env({"LMS_ENV": "staging"})


def test_production_with_everything_set() -> None:
    settings = Settings.from_env(PRODUCTION_ENV)
    assert settings.is_production
    assert settings.database_url == "postgresql+psycopg2://u:p@db.example.com:5432/lms"
    assert settings.redis_url == "redis://cache.example.com:6379/0"
    assert settings.secret_key == PRODUCTION_ENV["SECRET_KEY"]
    assert settings.platform_api_key == PRODUCTION_ENV["PLATFORM_API_KEY"]


@pytest.mark.parametrize("missing", REQUIRED_IN_PRODUCTION)
def test_production_names_a_missing_setting(missing: str) -> None:
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    message = str(info.value)
    assert missing in message
    others = set(REQUIRED_IN_PRODUCTION) - {missing}
    assert not any(other in message for other in others)


def test_production_names_every_missing_setting() -> None:
    assert set(REQUIRED_IN_PRODUCTION) == {
        "DATABASE_URL",
        "REDIS_URL",
        "SECRET_KEY",
        "PLATFORM_API_KEY",
    }
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"LMS_ENV": "production", "SECRET_KEY": "   "})
    message = str(info.value)
    for name in REQUIRED_IN_PRODUCTION:
        assert name in message


@pytest.mark.parametrize("name", ["SECRET_KEY", "PLATFORM_API_KEY"])
@pytest.mark.parametrize("env", ["development", "production"])
def test_short_secrets_are_refused(name: str, env: str) -> None:
    """Finding 11 of issue 8: any key was accepted, "x" included."""
    base = PRODUCTION_ENV if env == "production" else {"LMS_ENV": env}
    with pytest.raises(SettingsError, match=f"{name} must be at least 32 characters"):
        Settings.from_env({**base, name: "x" * 31})
    assert getattr(Settings.from_env({**base, name: "x" * 32}), name.lower()) == "x" * 32


@pytest.mark.parametrize("name", ["LOGIN_LIMIT_PER_ACCOUNT", "LOGIN_LIMIT_PER_ADDRESS"])
def test_login_limits_are_checked_at_start_up(name: str) -> None:
    """Found by the review (issue 8): "ten a minute" started fine, then every login
    was a 500."""
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: "ten a minute"})
    assert getattr(Settings.from_env({name: "5 per hour"}), name.lower()) == "5 per hour"


def test_missing_settings_are_fine_outside_production() -> None:
    for env in ("development", "test"):
        settings = Settings.from_env({"LMS_ENV": env})
        assert settings.env == env
        assert not settings.is_production
        assert settings.secret_key is None


def test_instance_path_and_misc(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "LMS_INSTANCE_PATH": str(tmp_path),
            "SERVER_NAME": "lms.example.com",
            "LOG_LEVEL": "debug",
            "TOKEN_TTL_SECONDS": "3600",
            "REPLICA_MAX_LAG_SECONDS": "2.5",
        }
    )
    assert settings.instance_path == tmp_path
    assert settings.server_name == "lms.example.com"
    assert settings.log_level == "DEBUG"
    assert settings.token_ttl_s == 3600
    assert settings.replica_max_lag_s == 2.5


def test_connections_carry_the_planner_page_cost(app) -> None:
    from sqlalchemy import text

    from lms_app.extensions import db

    with app.app_context():
        for engine in db.engines.values():
            with engine.connect() as conn:
                assert conn.execute(text("SHOW random_page_cost")).scalar_one() == "1.1"
