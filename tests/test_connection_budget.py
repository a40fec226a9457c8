"""The start-up check of workers x pools against the server's max_connections."""

from __future__ import annotations

import logging
from dataclasses import replace

import psycopg2
from sqlalchemy.engine import make_url

from config import connection_budget
from config.settings import PoolSettings, Settings


def _max_connections(url: str) -> int:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SHOW max_connections")
        value = int(cur.fetchone()[0])
    conn.close()
    return value


def test_pools_that_cannot_fit_are_warned_about_with_the_numbers(database_url, caplog):
    log = logging.getLogger("test.gunicorn")
    limit = _max_connections(database_url)
    settings = replace(Settings(), database_url=database_url, pool=PoolSettings(5, 15))
    with caplog.at_level(logging.WARNING, "test.gunicorn"):
        assert connection_budget.check(1, log, settings) == []  # 40 fit
        workers = limit // 40 + 1
        (warning,) = connection_budget.check(workers, log, settings)
    assert f"{workers} workers x 40 pooled connections each = {workers * 40}" in warning
    assert "the server accepts" in warning and warning in caplog.text


def test_a_server_out_of_reach_is_reported_not_fatal(caplog):
    log = logging.getLogger("test.gunicorn")
    settings = Settings(database_url="postgresql+psycopg2://nobody@127.0.0.1:1/none")
    with caplog.at_level(logging.WARNING, "test.gunicorn"):
        assert connection_budget.check(4, log, settings) == []
    assert "not checked (OperationalError)" in caplog.text
