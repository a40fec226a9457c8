"""Database errors: never personal data in a log line, never a 500 for a lost race
(issue 8, finding 3)."""

from __future__ import annotations

import logging
import threading
import uuid

import pytest
from flask import Flask
from sqlalchemy import event, insert, text

from lms_app.accounts.models import User
from lms_app.db.retry import retrying
from lms_app.extensions import db
from lms_app.tenancy.context import require_tenant
from tests.conftest import ADMIN_PASSWORD, another_process, assert_error, dispose, login, make_app

PII_EMAIL = "private.person@family.example"


@pytest.fixture(scope="module")
def failing_app(database_url, redis_url, tmp_path_factory) -> Flask:
    """An app with two extra routes that fail inside PostgreSQL the way real code can."""
    app = make_app(database_url, redis_url, tmp_path_factory.mktemp("failing"))

    def duplicate_user():
        values = {"email": PII_EMAIL, "name": "Private Person", "role": "student"}
        db.session.execute(insert(User).values(**values))
        db.session.execute(insert(User).values(**values))  # a unique violation quotes the key
        return {}

    calls = {"n": 0}

    def deadlocks_once():
        calls["n"] += 1
        if calls["n"] == 1:
            # A deadlock is what PostgreSQL raises; RAISE with its SQLSTATE is the same
            # error to the client library without staging two transactions.
            db.session.execute(
                text("DO $$ BEGIN RAISE EXCEPTION 'staged' USING ERRCODE = '40P01'; END $$")
            )
        return {"tenant": require_tenant().slug, "calls": calls["n"]}

    def always_deadlocks():
        db.session.execute(
            text("DO $$ BEGIN RAISE EXCEPTION 'staged' USING ERRCODE = '40001'; END $$")
        )

    for name, view in (
        ("duplicate", duplicate_user),
        ("deadlock-once", deadlocks_once),
        ("deadlock", always_deadlocks),
    ):
        # Wrapped as create_app wraps every view it registers.
        app.add_url_rule(f"/api/v1/_test/{name}", view_func=retrying(view), methods=["POST"])
    yield app
    dispose(app)


def test_an_unexpected_database_error_logs_no_bind_values_or_row_data(
    failing_app, make_tenant, caplog
):
    tenant = make_tenant()
    with caplog.at_level(logging.DEBUG):
        r = failing_app.test_client().post(
            "/api/v1/_test/duplicate", headers={"X-Tenant": tenant.slug}
        )
    assert_error(r, 500)
    logged = caplog.text
    assert "IntegrityError" in logged and "pgcode=23505" in logged  # still diagnosable
    assert PII_EMAIL not in logged and "Private Person" not in logged
    assert "[parameters" not in logged and "Key (email)" not in logged
    assert PII_EMAIL not in r.get_data(as_text=True)


def test_a_transaction_that_loses_a_race_runs_again_once(failing_app, make_tenant):
    tenant = make_tenant()
    client = failing_app.test_client()
    r = client.post("/api/v1/_test/deadlock-once", headers={"X-Tenant": tenant.slug})
    assert r.status_code == 200 and r.get_json() == {"tenant": tenant.slug, "calls": 2}
    r = client.post("/api/v1/_test/deadlock", headers={"X-Tenant": tenant.slug})
    assert_error(r, 503)
    assert r.headers["Retry-After"] == "1"


def test_concurrent_bulk_upserts_in_opposite_orders_never_fail(app, make_tenant, tmp_path, caplog):
    """The review's reproduction: four concurrent bulk upserts of the same 3,000 users,
    two in each order, made to reach PostgreSQL at the same moment. Rows are written
    in e-mail order, so the four queue behind each other instead of deadlocking."""
    tenant = make_tenant()
    admin = login(app.test_client(), tenant, f"admin@{tenant.slug}.test", ADMIN_PASSWORD)
    domain = f"race-{uuid.uuid4().hex[:6]}.test"
    users = [
        {"email": f"learner{i:05d}@{domain}", "name": f"Learner {i}", "role": "student"}
        for i in range(3000)
    ]
    together = threading.Barrier(4, timeout=20)

    def start_together(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO") and ".users " in statement:
            together.wait()

    with another_process(app, tmp_path) as worker, caplog.at_level(logging.INFO):
        with worker.app_context():
            event.listen(db.engine, "before_cursor_execute", start_together)
        statuses: list[int] = []

        def post(order: list[dict]) -> None:
            r = worker.test_client().post(
                "/api/v1/users/bulk", json={"users": order}, headers=admin
            )
            statuses.append(r.status_code)

        for _ in range(2):  # inserts, then updates of the same rows
            threads = [
                threading.Thread(target=post, args=(users if i % 2 else users[::-1],))
                for i in range(4)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            together.reset()
        with worker.app_context():
            event.remove(db.engine, "before_cursor_execute", start_together)
    assert statuses == [200] * 8
    assert domain not in caplog.text
