"""A school's identity is never reusable: a deleted school's slug, created again, is a
new school that no stale registry entry, token or cache key can reach (issue 8, 1)."""

from __future__ import annotations

import re
import threading
import time

from flask import Flask
from sqlalchemy import event

from lms_app.extensions import db
from tests.conftest import (
    ADMIN_PASSWORD,
    PLATFORM_HEADERS,
    another_process,
    assert_error,
    login,
    unique_slug,
)


def create_school(client, slug: str, admin_email: str) -> dict:
    body = {"slug": slug, "name": "Gamma", "admin_email": admin_email}
    r = client.post(
        "/platform/tenants",
        json={**body, "admin_password": ADMIN_PASSWORD},
        headers=PLATFORM_HEADERS,
    )
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def drop_school(client, slug: str) -> None:
    r = client.delete(f"/platform/tenants/{slug}?confirm={slug}", headers=PLATFORM_HEADERS)
    assert r.status_code == 204


def test_a_recreated_slug_is_out_of_reach_of_the_old_schools_tokens(app: Flask, tmp_path) -> None:
    slug = unique_slug("gamma")
    operator = app.test_client()
    old = create_school(operator, slug, f"old-head@{slug}.test")
    with another_process(app, tmp_path) as stale:
        worker = stale.test_client()
        old_token = login(worker, _tenant_of(stale, slug), f"old-head@{slug}.test", ADMIN_PASSWORD)
        # The other worker now holds the old school in its registry and auth caches, and
        # its (empty) catalog page in the shared cache.
        assert worker.get("/api/v1/users", headers=old_token).status_code == 200
        assert worker.get("/api/v1/courses", headers=old_token).get_json()["items"] == []
        time.sleep(stale.config["LMS_SETTINGS"].cache_local_s)  # its own copy expires

        drop_school(operator, slug)
        new = create_school(operator, slug, f"new-head@{slug}.test")
        assert new["created_at"] != old["created_at"]

        # Before the fix the stale worker answered 200 with the *new* school's users.
        for path in ("/api/v1/courses", "/api/v1/users", "/api/v1/me"):
            r = worker.get(path, headers=old_token)
            assert r.status_code in (401, 404), (path, r.status_code, r.get_json())
            assert_error(r, r.status_code)
        r = worker.post(
            "/api/v1/users",
            json={"email": "x@x.test", "name": "X", "role": "admin", "password": "0123456789ab"},
            headers=old_token,
        )
        assert r.status_code in (401, 404)

        # Once the worker has learned of the new school, the old token is a 401 there.
        assert_error(operator.get("/api/v1/me", headers=old_token), 401)
        assert_error(worker.get("/api/v1/me", headers=old_token), 401)
        new_token = login(operator, _tenant_of(app, slug), f"new-head@{slug}.test", ADMIN_PASSWORD)
        me = worker.get("/api/v1/me", headers=new_token)
        assert me.status_code == 200 and me.get_json()["email"] == f"new-head@{slug}.test"
    drop_school(operator, slug)


def test_the_schema_name_carries_the_tenant_id(app: Flask) -> None:
    slug = unique_slug("sch")
    client = app.test_client()
    create_school(client, slug, f"head@{slug}.test")
    tenant = _tenant_of(app, slug)
    assert re.fullmatch(rf"t{tenant.id}_{slug}", tenant.schema_name)
    drop_school(client, slug)


def _tenant_of(app: Flask, slug: str):
    from lms_app.extensions import db
    from lms_app.tenancy.registry import load_tenant

    with app.app_context():
        return load_tenant(db.engine, slug)


def test_a_suspension_reaches_every_process_within_a_second(app: Flask, tmp_path) -> None:
    """Found by the review of issue 8: other workers kept serving a suspended school's
    tokens for up to TENANT_CACHE_TTL (30 s); the registry follows a shared generation."""
    slug = unique_slug("susp")
    operator = app.test_client()
    create_school(operator, slug, f"head@{slug}.test")
    with another_process(app, tmp_path) as other:
        worker = other.test_client()
        token = login(worker, _tenant_of(other, slug), f"head@{slug}.test", ADMIN_PASSWORD)
        assert worker.get("/api/v1/me", headers=token).status_code == 200  # entry cached
        assert other.config["TENANT_CACHE_TTL"] >= 30

        r = operator.patch(
            f"/platform/tenants/{slug}", json={"status": "suspended"}, headers=PLATFORM_HEADERS
        )
        assert r.status_code == 200
        # Margin for a loaded CI machine; without the shared generation it takes 30 s.
        deadline = time.monotonic() + other.config["LMS_SETTINGS"].cache_local_s + 4.0
        while (status := worker.get("/api/v1/me", headers=token).status_code) != 403:
            assert status == 200
            assert time.monotonic() < deadline, "the suspension never reached the worker"
            time.sleep(0.05)

        # A school created under a slug the worker had found unknown is there at once too.
        fresh = unique_slug("late")
        assert_error(worker.get("/api/v1/tenant", headers={"X-Tenant": fresh}), 404)
        create_school(operator, fresh, f"head@{fresh}.test")
        # Margin for a loaded CI machine; without the shared generation it takes 30 s.
        deadline = time.monotonic() + other.config["LMS_SETTINGS"].cache_local_s + 4.0
        while worker.get("/api/v1/tenant", headers={"X-Tenant": fresh}).status_code != 200:
            assert time.monotonic() < deadline, "the new school never reached the worker"
            time.sleep(0.05)
        drop_school(operator, fresh)
    drop_school(operator, slug)


def test_a_registry_read_that_raced_a_change_is_not_kept(app: Flask, tmp_path) -> None:
    """Found by the review of issue 8: under threaded workers, a thread that read the
    registry row before a suspension stored it after another thread had followed the
    change, and the suspended school answered 200 there for TENANT_CACHE_TTL."""
    slug = unique_slug("race")
    operator = app.test_client()
    create_school(operator, slug, f"head@{slug}.test")
    read_done, go_on = threading.Event(), threading.Event()

    def pause_after_registry_read(conn, cursor, statement, parameters, context, executemany):
        if "public.tenants" in statement and threading.current_thread().name == "slow":
            read_done.set()
            go_on.wait(10)

    with another_process(app, tmp_path, cache_local_s=0) as other:
        registry = other.extensions["lms_tenant_registry"]
        with other.app_context():
            event.listen(db.engine, "after_cursor_execute", pause_after_registry_read)

        def slow_lookup() -> None:
            with other.app_context():
                registry.get(db.engine, slug)

        slow = threading.Thread(target=slow_lookup, name="slow")
        slow.start()
        assert read_done.wait(10)
        r = operator.patch(
            f"/platform/tenants/{slug}", json={"status": "suspended"}, headers=PLATFORM_HEADERS
        )
        assert r.status_code == 200
        worker = other.test_client()
        assert worker.get("/api/v1/tenant", headers={"X-Tenant": slug}).status_code == 403
        go_on.set()
        slow.join(10)
        with other.app_context():
            event.remove(db.engine, "after_cursor_execute", pause_after_registry_read)
        for _ in range(3):
            assert worker.get("/api/v1/tenant", headers={"X-Tenant": slug}).status_code == 403
    drop_school(operator, slug)
