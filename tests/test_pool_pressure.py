"""A pool near exhaustion warns with the numbers; an exhausted one answers 503 with
Retry-After after its timeout: never a hang, never a 500."""

from __future__ import annotations

import logging
import time

import pytest

from config.settings import PoolSettings
from lms_app.db import pool_watch
from lms_app.extensions import db
from tests.conftest import assert_error, dispose, make_app
from tests.test_catalog_api import API, make_school


@pytest.fixture
def tight_app(database_url, redis_url, tmp_path):
    """One connection per pool, given up on after 1 s."""
    made = make_app(
        database_url,
        redis_url,
        tmp_path,
        pool=PoolSettings(size=1, max_overflow=0, timeout_s=1),
    )
    yield made
    dispose(made)


def test_an_exhausted_pool_answers_503_and_warns(tight_app, app, make_tenant, caplog, monkeypatch):
    # The app's own start-up already used its one connection (and warned, once a
    # minute at most): let this test see its own warning.
    monkeypatch.setattr(pool_watch, "WARN_EVERY_S", 0.0)
    school = make_school(app, make_tenant())
    client = tight_app.test_client()
    with tight_app.app_context(), caplog.at_level(logging.WARNING, "lms_app.db.pool_watch"):
        held = db.engine.connect()  # the primary pool's only connection
        try:
            started = time.monotonic()
            r = client.post(f"{API}/courses", json={"title": "T"}, headers=school.headers["admin"])
            waited = time.monotonic() - started
        finally:
            held.close()
    body = assert_error(r, 503)
    assert r.headers["Retry-After"] and "busy" in body["message"]
    assert 0.9 <= waited < 10  # the pool's timeout, not a hang
    warnings = [m for m in caplog.messages if m.startswith("pool_pressure bind=primary")]
    assert warnings and "in_use=1 capacity=1 utilisation=1.00" in warnings[0]
    # Free again: the same request goes through.
    again = client.post(f"{API}/courses", json={"title": "T"}, headers=school.headers["admin"])
    assert again.status_code == 201
    text = client.get("/metrics").get_data(as_text=True)
    assert 'lms_db_pool_connections{bind="primary",state="idle"}' in text
    assert 'lms_db_pool_checkout_seconds_count{bind="primary"}' in text


def test_idle_connections_show_between_requests(tight_app, app, make_tenant, monkeypatch):
    """The gauges are sampled at checkin: sampled at checkout, a pool serving one
    request at a time showed its one connection in use and none idle (bench sample)."""
    monkeypatch.setattr(pool_watch, "PUBLISH_EVERY_S", 0.0)
    school = make_school(app, make_tenant())
    client = tight_app.test_client()
    r = client.post(f"{API}/courses", json={"title": "T"}, headers=school.headers["admin"])
    assert r.status_code == 201
    text = client.get("/metrics").get_data(as_text=True)
    idle = [
        line
        for line in text.splitlines()
        if line.startswith('lms_db_pool_connections{bind="primary",state="idle"}')
    ]
    assert idle and float(idle[0].rsplit(" ", 1)[1]) >= 1, idle
