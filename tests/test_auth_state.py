"""Revocation across processes: immediate in the process that made it, within
CACHE_LOCAL_SECONDS elsewhere (the auth generation lives in PostgreSQL), and verified
tokens kept per process never outlive their school, their version or their TTL."""

from __future__ import annotations

import threading
import time

from sqlalchemy import event

from lms_app.extensions import db
from tests.conftest import (
    ADMIN_PASSWORD,
    USER_PASSWORD,
    add_user,
    admin_id,
    another_process,
    dispose,
    headers_for,
    login,
    make_app,
    user_email,
)
from tests.test_generation_snapshots import stored_generation


def test_deactivation_reaches_other_processes_within_cache_local_s(
    app, make_tenant, tmp_path
) -> None:
    """The auth state is cached under the school's auth generation: another process sees
    a deactivation once its generation snapshot is CACHE_LOCAL_SECONDS old."""
    tenant = make_tenant()
    window = 0.3
    student = add_user(app, tenant, "student")
    here = app.test_client()
    student_headers = login(here, tenant, user_email(app, tenant, student))
    with another_process(app, tmp_path, cache_local_s=window) as other_process:
        there = other_process.test_client()
        assert there.get("/api/v1/me", headers=student_headers).status_code == 200  # cached

        admin = login(here, tenant, f"admin@{tenant.slug}.test", ADMIN_PASSWORD)
        r = here.patch(f"/api/v1/users/{student}", json={"is_active": False}, headers=admin)
        assert r.status_code == 200
        assert here.get("/api/v1/me", headers=student_headers).status_code == 401  # at once

        deadline = time.monotonic() + window + 2.0  # a loaded machine's margin
        while there.get("/api/v1/me", headers=student_headers).status_code != 401:
            assert time.monotonic() < deadline, "revocation never reached the other process"
            time.sleep(0.05)


def test_another_process_keeps_the_old_state_no_longer_than_its_window(
    app, make_tenant, tmp_path
) -> None:
    """The bound is CACHE_LOCAL_SECONDS, not the auth state's TTL: with a long window the
    other process still accepts the token (documented staleness), and a process whose
    window has passed, or that starts afterwards, refuses it."""
    tenant = make_tenant()
    student = add_user(app, tenant, "student")
    here = app.test_client()
    student_headers = headers_for(app, tenant, student)
    admin = headers_for(app, tenant, admin_id(app, tenant))
    with (
        another_process(app, tmp_path / "slow", cache_local_s=30) as slow,
        another_process(app, tmp_path / "zero", cache_local_s=0) as zero,
    ):
        for process in (slow, zero):
            assert (
                process.test_client().get("/api/v1/me", headers=student_headers).status_code == 200
            )
        r = here.patch(f"/api/v1/users/{student}", json={"is_active": False}, headers=admin)
        assert r.status_code == 200
        assert slow.test_client().get("/api/v1/me", headers=student_headers).status_code == 200
        assert zero.test_client().get("/api/v1/me", headers=student_headers).status_code == 401
        with another_process(app, tmp_path / "new", cache_local_s=30) as new:
            assert new.test_client().get("/api/v1/me", headers=student_headers).status_code == 401


def test_a_fill_read_before_a_change_cannot_outlive_it(app, make_tenant, tmp_path) -> None:
    """The race of issue 8 (finding 2), made deterministic: a worker reads the user row
    (still active), an admin deactivates the user and invalidates, then the worker
    stores what it read. No later request, in any process, may accept the token."""
    tenant = make_tenant()
    student = add_user(app, tenant, "student")
    here = app.test_client()
    student_headers = login(here, tenant, user_email(app, tenant, student))
    admin = login(here, tenant, f"admin@{tenant.slug}.test", ADMIN_PASSWORD)
    read_done, go_on = threading.Event(), threading.Event()

    def pause_after_state_read(conn, cursor, statement, parameters, context, executemany):
        if "token_version" in statement and not go_on.is_set():
            read_done.set()
            go_on.wait(10)

    no_copies = {"cache_local_s": 0}  # every request reads the generations
    with (
        another_process(app, tmp_path / "slow", **no_copies) as slow,
        another_process(app, tmp_path / "fresh", **no_copies) as fresh,
    ):
        with slow.app_context():
            engines = list(db.engines.values())
        for engine in engines:
            event.listen(engine, "after_cursor_execute", pause_after_state_read)
        answers: list[int] = []
        worker = threading.Thread(
            target=lambda: answers.append(
                slow.test_client().get("/api/v1/me", headers=student_headers).status_code
            )
        )
        worker.start()
        assert read_done.wait(10)
        r = here.patch(f"/api/v1/users/{student}", json={"is_active": False}, headers=admin)
        assert r.status_code == 200
        go_on.set()
        worker.join(10)
        for engine in engines:
            event.remove(engine, "after_cursor_execute", pause_after_state_read)
        assert answers == [200]  # it had read the row before the change

        assert fresh.test_client().get("/api/v1/me", headers=student_headers).status_code == 401
        assert slow.test_client().get("/api/v1/me", headers=student_headers).status_code == 401
        assert here.get("/api/v1/me", headers=student_headers).status_code == 401


def test_the_shared_auth_state_lives_auth_state_ttl_seconds(app, make_tenant, redis_url) -> None:
    """The TTL bounds memory now, not staleness (a change moves the auth generation in
    PostgreSQL), but the value still expires: 0 < TTL <= AUTH_STATE_TTL_SECONDS."""
    import redis

    from lms_app.caching.generations import AUTH
    from lms_app.caching.keys import tenant_key

    tenant = make_tenant()
    student = add_user(app, tenant, "student")
    here = app.test_client()
    headers = headers_for(app, tenant, student)
    assert here.get("/api/v1/me", headers=headers).status_code == 200
    generation = stored_generation(app, tenant, AUTH)
    key = app.config["CACHE_KEY_PREFIX"] + tenant_key(tenant, AUTH, f"p{generation}", f"u{student}")
    ttl = redis.Redis.from_url(redis_url).ttl(key)
    assert 0 < ttl <= app.config["LMS_SETTINGS"].auth_state_ttl_s == 60


def test_a_verified_token_is_accepted_only_by_the_school_that_signed_it(app, make_tenant) -> None:
    """Verified tokens are kept per process, keyed by school and token: a token checked
    (and kept) for school A is still a 401 in school B, where the same user id exists."""
    a, b = make_tenant(), make_tenant()
    student_a, student_b = add_user(app, a, "student"), add_user(app, b, "student")
    assert student_a == student_b  # the same id in both schools
    client = app.test_client()
    headers = headers_for(app, a, student_a)
    for _ in range(2):  # the second time from the process's verified tokens
        assert client.get("/api/v1/me", headers=headers).status_code == 200
        crossed = {**headers, "X-Tenant": b.slug}
        assert client.get("/api/v1/me", headers=crossed).status_code == 401


def test_a_verified_token_is_still_revoked_by_a_password_change(app, make_tenant) -> None:
    tenant = make_tenant()
    student = add_user(app, tenant, "student")
    client = app.test_client()
    old = login(client, tenant, user_email(app, tenant, student))
    assert client.get("/api/v1/me", headers=old).status_code == 200  # verified and kept
    r = client.patch(
        f"/api/v1/users/{student}",
        json={"password": "another-password-456", "current_password": USER_PASSWORD},
        headers=old,
    )
    assert r.status_code == 200, r.get_json()
    assert client.get("/api/v1/me", headers=old).status_code == 401
    new = login(client, tenant, user_email(app, tenant, student), "another-password-456")
    assert client.get("/api/v1/me", headers=new).status_code == 200


def test_a_verified_token_expires_on_time(make_tenant, database_url, redis_url, tmp_path):
    """A token kept as verified is refused once its TTL has passed (counted from its
    signature, not from when this process checked it)."""
    short = make_app(database_url, redis_url, tmp_path, token_ttl_s=1)
    try:
        tenant = make_tenant()
        student = add_user(short, tenant, "student")
        headers = headers_for(short, tenant, student)
        client = short.test_client()
        assert client.get("/api/v1/me", headers=headers).status_code == 200
        time.sleep(2.1)
        assert client.get("/api/v1/me", headers=headers).status_code == 401
    finally:
        dispose(short)
