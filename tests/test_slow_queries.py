"""Slow statements: logged with their fingerprint, request id and school (never
values), and reported as the top 10 by mean and by total time."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import text

from lms_app.db.statement_stats import STATS
from lms_app.extensions import db
from lms_app.observability import metrics
from lms_app.observability.logging import JsonFormatter
from lms_app.tenancy.context import tenant_scope
from tests.conftest import PLATFORM_HEADERS, assert_error, dispose, make_app


@pytest.fixture
def slow_app(database_url, redis_url, tmp_path):
    """An app whose slow threshold is 50 ms."""
    made = make_app(database_url, redis_url, tmp_path, slow_query_ms=50)
    yield made
    dispose(made)


def test_a_slow_statement_is_logged_and_reported(slow_app, make_tenant, caplog, monkeypatch):
    # This process has run the whole suite's statements: give the new one room.
    monkeypatch.setattr(metrics, "_known", set())
    tenant = make_tenant()
    secret = "private.value@example.org"
    with (
        slow_app.test_request_context("/x"),
        tenant_scope(tenant),
        caplog.at_level(logging.WARNING, "lms_app.sql"),
    ):
        from flask import g

        g.request_id = "slow-req-1"
        db.session.execute(text("SELECT pg_sleep(0.08), :v AS v"), {"v": secret})
        db.session.rollback()
    (record,) = [r for r in caplog.records if r.getMessage().startswith("slow_statement")]
    with slow_app.test_request_context("/x"), tenant_scope(tenant):
        from flask import g

        g.request_id = "slow-req-1"
        line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "slow-req-1" and line["tenant"] == tenant.slug
    assert "pg_sleep" in line["message"] and "fingerprint=select_" in line["message"]
    assert secret not in line["message"]
    report = STATS.top()
    slow = next(r for r in report["by_mean"] if "pg_sleep" in r["statement"])
    assert slow["max_ms"] >= 80 and slow["calls"] >= 1
    assert secret not in json.dumps(report)


def test_operators_read_the_top_statements(slow_app):
    client = slow_app.test_client()
    assert_error(client.get("/platform/slow-queries"), 401)
    r = client.get("/platform/slow-queries", headers=PLATFORM_HEADERS)
    assert r.status_code == 200
    body = r.get_json()
    assert len(body["process"]["by_mean"]) <= 10 and len(body["process"]["by_total"]) <= 10
    assert body["process"]["by_total"]  # this process ran statements
    # This server does not preload pg_stat_statements: the report says so.
    assert body["server"]["available"] in (True, False)
    if not body["server"]["available"]:
        assert body["server"]["reason"]
