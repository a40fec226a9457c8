"""Revocation across processes: immediate in the process that made it, bounded elsewhere."""

from __future__ import annotations

import time

from lms_app.extensions import db
from tests.conftest import ADMIN_PASSWORD, add_user, login, make_app, user_email


def test_deactivation_reaches_other_processes_within_the_local_ttl(
    app, make_tenant, database_url, redis_url, tmp_path
) -> None:
    tenant = make_tenant()
    other_process = make_app(
        database_url, redis_url, tmp_path, cache_prefix=app.config["CACHE_KEY_PREFIX"]
    )
    ttl = other_process.config["AUTH_LOCAL_CACHE_SECONDS"]
    assert 0 < ttl <= 5
    student = add_user(app, tenant, "student")
    here, there = app.test_client(), other_process.test_client()
    student_headers = login(here, tenant, user_email(app, tenant, student))
    assert there.get("/api/v1/me", headers=student_headers).status_code == 200  # cached there

    admin = login(here, tenant, f"admin@{tenant.slug}.test", ADMIN_PASSWORD)
    r = here.patch(f"/api/v1/users/{student}", json={"is_active": False}, headers=admin)
    assert r.status_code == 200
    assert here.get("/api/v1/me", headers=student_headers).status_code == 401  # at once here

    deadline = time.monotonic() + ttl + 1.0
    while there.get("/api/v1/me", headers=student_headers).status_code != 401:
        assert time.monotonic() < deadline, "revocation never reached the other process"
        time.sleep(0.1)
    with other_process.app_context():
        db.engine.dispose()
