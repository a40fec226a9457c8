"""Cache generations held in PostgreSQL (issue 9): how often a process reads them, that
a write moves them in its own transaction, and how soon every process sees a write,
whatever the shared cache was doing at the time.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import select, text

from lms_app.caching import generations
from lms_app.caching.generations import (
    ALL,
    ANALYTICS,
    AUTH,
    CATALOG,
    CATEGORIES,
    COURSE,
    LESSON,
    SEARCH,
)
from lms_app.caching.models import CacheGeneration
from lms_app.caching.safe import breaker
from lms_app.db.engines import for_schema
from lms_app.extensions import db
from lms_app.tenancy.context import TenantInfo, tenant_scope
from tests import servers
from tests.conftest import add_user, another_process, count_statements, dispose, make_app
from tests.test_catalog_api import API, School, make_school, new_course, new_lesson
from tests.test_learning_api import enroll_row, progress_row

# What each write retires (lms_app.catalog.service, lms_app.accounts.service).
COURSE_CHANGE = {CATALOG, COURSE, LESSON, SEARCH, ANALYTICS}
LESSON_TEXT_CHANGE = {COURSE, LESSON, SEARCH}
# Time another process may take beyond its CACHE_LOCAL_SECONDS on a loaded machine.
MARGIN_S = 2.0


def stored_generation(app: Flask, tenant: TenantInfo, namespace: str) -> int:
    """The namespace's generation as committed in the tenant's schema (no row: 0)."""
    stmt = select(CacheGeneration.generation).where(CacheGeneration.namespace == namespace)
    with app.app_context(), for_schema(db.engine, tenant.schema_name).connect() as conn:
        return conn.execute(stmt).scalar() or 0


def stored_generations(app: Flask, tenant: TenantInfo) -> dict[str, int]:
    return {namespace: stored_generation(app, tenant, namespace) for namespace in ALL}


def moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """namespace -> how far it moved, for those that did."""
    return {ns: after[ns] - before[ns] for ns in before if after[ns] != before[ns]}


def detail_title(client, headers: dict[str, str], course_id: int) -> str:
    r = client.get(f"{API}/courses/{course_id}", headers=headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()["title"]


def wait_for_title(client, headers, course_id: int, title: str, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while detail_title(client, headers, course_id) != title:
        assert time.monotonic() < deadline, f"{title!r} never reached the other process"
        time.sleep(0.05)


@pytest.fixture
def school(app, make_tenant) -> School:
    return make_school(app, make_tenant())


# --- (a) how often the snapshot is read -------------------------------------------------


def test_the_snapshot_is_read_once_per_window_per_tenant(app, make_tenant, tmp_path):
    schools = [make_school(app, make_tenant()) for _ in range(2)]
    client = app.test_client()
    courses = [new_course(client, s.headers["instructor"], is_published=True) for s in schools]
    with another_process(app, tmp_path, cache_local_s=30) as other:
        there = other.test_client()
        with count_statements(other) as q:
            for _ in range(4):
                for school, course in zip(schools, courses, strict=True):
                    student = school.headers["student"]
                    assert there.get(f"{API}/me", headers=student).status_code == 200
                    assert there.get(f"{API}/courses", headers=student).status_code == 200
                    detail_title(there, student, course["id"])
        assert q.snapshots == 2, q.statements  # one per school, for all 24 requests
        assert q.count > 0  # the requests did read the database otherwise


def test_the_snapshot_is_read_again_once_its_window_has_passed(app, school, tmp_path):
    course = new_course(app.test_client(), school.headers["instructor"], is_published=True)
    window = 0.5
    with another_process(app, tmp_path, cache_local_s=window) as other:
        there = other.test_client()
        for _ in range(3):
            time.sleep(window + 0.1)
            with count_statements(other) as q:
                detail_title(there, school.headers["student"], course["id"])
            assert q.snapshots == 1, q.statements


def test_the_writing_process_rereads_the_snapshot_after_its_commit(app, school, tmp_path):
    owner = school.headers["instructor"]
    with another_process(app, tmp_path, cache_local_s=30) as writer:
        here = writer.test_client()
        course = new_course(here, owner, is_published=True)
        detail_title(here, owner, course["id"])
        with count_statements(writer) as q:
            detail_title(here, owner, course["id"])
        assert q.snapshots == 0  # still in its window
        r = here.patch(f"{API}/courses/{course['id']}", json={"title": "New"}, headers=owner)
        assert r.status_code == 200
        with count_statements(writer) as q:
            assert detail_title(here, owner, course["id"]) == "New"
        assert q.snapshots == 1  # dropped at commit, read again


# --- (b) a bump commits or rolls back with its write ------------------------------------


def test_a_rolled_back_bump_leaves_the_generations_alone(app, school):
    before = stored_generations(app, school.tenant)
    with app.app_context(), tenant_scope(school.tenant):
        seen = generations.current(CATALOG)
        generations.bump(CATALOG, SEARCH, AUTH)
        # Not visible to anyone else before the commit...
        assert stored_generations(app, school.tenant) == before
        db.session.rollback()
        # ...and never, once rolled back; this process keeps its snapshot.
        assert generations.current(CATALOG) == seen == before[CATALOG]
    assert stored_generations(app, school.tenant) == before


def test_a_committed_bump_moves_each_namespace_by_one(app, school):
    before = stored_generations(app, school.tenant)
    with app.app_context(), tenant_scope(school.tenant):
        assert generations.current(CATEGORIES) == before[CATEGORIES]
        generations.bump(CATEGORIES, SEARCH, SEARCH)  # a namespace named twice moves once
        db.session.commit()
        assert generations.current(CATEGORIES) == before[CATEGORIES] + 1  # at once here
    assert moved(before, stored_generations(app, school.tenant)) == {CATEGORIES: 1, SEARCH: 1}


def _write(client, school: School, write: str) -> None:
    """One write through the API (the course and lesson it needs made beforehand)."""
    owner, admin = school.headers["instructor"], school.headers["admin"]
    course_id, lesson_id = school.ids["course"], school.ids["lesson"]
    calls = {
        "create course": ("post", f"{API}/courses", {"title": "T"}, owner, 201),
        "patch course": ("patch", f"{API}/courses/{course_id}", {"title": "T2"}, owner, 200),
        "archive course": ("delete", f"{API}/courses/{course_id}", None, owner, 204),
        "add lesson": ("post", f"{API}/courses/{course_id}/lessons", {"title": "L"}, owner, 201),
        "edit lesson text": ("patch", f"{API}/lessons/{lesson_id}", {"content": "x"}, owner, 200),
        "unpublish lesson": (
            "patch",
            f"{API}/lessons/{lesson_id}",
            {"is_published": False},
            owner,
            200,
        ),
        "delete lesson": ("delete", f"{API}/lessons/{lesson_id}", None, owner, 204),
        "create category": (
            "post",
            f"{API}/categories",
            {"name": "C", "slug": f"c-{course_id}"},
            admin,
            201,
        ),
        "rename user": (
            "patch",
            f"{API}/users/{school.ids['instructor']}",
            {"name": "Renamed"},
            admin,
            200,
        ),
        "deactivate user": (
            "patch",
            f"{API}/users/{school.ids['student']}",
            {"is_active": False},
            admin,
            200,
        ),
        "bulk update users": (
            "post",
            f"{API}/users/bulk",
            {
                "users": [
                    {
                        "email": f"student-{course_id}@x.test",
                        "name": "Bulk",
                        "role": "student",
                    }
                ]
            },
            admin,
            200,
        ),
    }
    method, url, body, headers, code = calls[write]
    r = getattr(client, method)(url, json=body, headers=headers)
    assert r.status_code == code, r.get_json()


@pytest.mark.parametrize(
    ("write", "retired"),
    [
        ("create course", COURSE_CHANGE),
        ("patch course", COURSE_CHANGE),
        ("archive course", COURSE_CHANGE),
        ("add lesson", COURSE_CHANGE),
        ("unpublish lesson", COURSE_CHANGE),
        ("delete lesson", COURSE_CHANGE),
        ("edit lesson text", LESSON_TEXT_CHANGE),
        ("create category", {CATEGORIES}),
        ("rename user", {COURSE}),  # an instructor: course details name them
        ("deactivate user", {AUTH}),
        ("bulk update users", {AUTH, COURSE}),
    ],
)
def test_each_write_moves_its_namespaces_by_exactly_one(app, client, school, write, retired):
    owner = school.headers["instructor"]
    course = new_course(client, owner, is_published=True)
    school.ids["course"] = course["id"]
    school.ids["lesson"] = new_lesson(client, owner, course["id"], is_published=True)["id"]
    if write == "bulk update users":
        # An existing row for the bulk call to update.
        add_user(app, school.tenant, "student", email=f"student-{course['id']}@x.test")
    before = stored_generations(app, school.tenant)
    _write(client, school, write)
    assert moved(before, stored_generations(app, school.tenant)) == dict.fromkeys(retired, 1)


def test_bulk_inserting_new_users_retires_nothing(app, client, school):
    before = stored_generations(app, school.tenant)
    body = {"users": [{"email": "brand-new@x.test", "name": "New", "role": "student"}]}
    r = client.post(f"{API}/users/bulk", json=body, headers=school.headers["admin"])
    assert r.status_code == 200, r.get_json()
    assert stored_generations(app, school.tenant) == before


@pytest.mark.parametrize("failure", ["duplicate category", "bad course patch", "lesson in use"])
def test_a_write_that_fails_moves_nothing(app, client, school, failure):
    owner, admin = school.headers["instructor"], school.headers["admin"]
    course = new_course(client, owner, is_published=True)
    lesson = new_lesson(client, owner, course["id"], is_published=True)
    body = {"name": "Dup", "slug": f"dup-{course['id']}"}
    assert client.post(f"{API}/categories", json=body, headers=admin).status_code == 201
    enroll_row(app, school.tenant, school.ids["student"], course["id"])
    progress_row(app, school.tenant, school.ids["student"], lesson["id"], 50)
    before = stored_generations(app, school.tenant)
    if failure == "duplicate category":
        r = client.post(f"{API}/categories", json=body, headers=admin)
        assert r.status_code == 409
    elif failure == "bad course patch":
        r = client.patch(
            f"{API}/courses/{course['id']}", json={"category_id": 10**9}, headers=owner
        )
        assert r.status_code == 422
    else:
        r = client.delete(f"{API}/lessons/{lesson['id']}", headers=owner)
        assert r.status_code == 409
    assert stored_generations(app, school.tenant) == before


# --- (c) who sees a write, and when -------------------------------------------------------


def test_the_writer_sees_its_write_at_once_others_within_their_window(app, school, tmp_path):
    """The writer drops its snapshot at commit; another process keeps using its own for
    CACHE_LOCAL_SECONDS: with 30 s it still serves the old title (the documented bound),
    with 0.3 s the new one shortly after."""
    owner, student = school.headers["instructor"], school.headers["student"]
    course = new_course(app.test_client(), owner, is_published=True, title="Before")
    with (
        another_process(app, tmp_path / "w", cache_local_s=30) as writer,
        another_process(app, tmp_path / "slow", cache_local_s=30) as slow,
        another_process(app, tmp_path / "quick", cache_local_s=0.3) as quick,
    ):
        here, late, soon = writer.test_client(), slow.test_client(), quick.test_client()
        for client in (here, late, soon):
            assert detail_title(client, student, course["id"]) == "Before"

        r = here.patch(f"{API}/courses/{course['id']}", json={"title": "After"}, headers=owner)
        assert r.status_code == 200
        assert detail_title(here, student, course["id"]) == "After"
        assert detail_title(late, student, course["id"]) == "Before"  # its snapshot is young
        wait_for_title(soon, student, course["id"], "After", 0.3 + MARGIN_S)
        assert detail_title(late, student, course["id"]) == "Before"
        # A process started after the write reads the new generation from the start.
        with another_process(app, tmp_path / "new", cache_local_s=30) as fresh:
            assert detail_title(fresh.test_client(), student, course["id"]) == "After"


# --- (d) a write while the shared cache is away --------------------------------------------


@contextlib.contextmanager
def writer_without_redis(app: Flask, tmp_path, how: str) -> Iterator[Flask]:
    """A worker of `app`'s deployment (same database and cache prefix) whose cache is
    unusable at the moment of its writes: writes refused, nobody listening, or hung."""
    settings = app.config["LMS_SETTINGS"]
    prefix = app.config["CACHE_KEY_PREFIX"]
    options = {"cache_local_s": 30, "cache_breaker_s": 60, "cache_timeout_ms": 100}
    if how == "writes refused":
        with servers.redis_user(settings.redis_url) as (url, refuse_writes):
            writer = make_app(settings.database_url, url, tmp_path, prefix, **options)
            refuse_writes(True)
            try:
                yield writer
            finally:
                refuse_writes(False)
                dispose(writer)
        return
    if how == "unreachable":
        url = f"redis://127.0.0.1:{servers.free_port()}/0"  # nothing listens there
        writer = make_app(settings.database_url, url, tmp_path, prefix, **options)
        try:
            yield writer
        finally:
            dispose(writer)
        return
    hung = servers.SilentServer()
    writer = make_app(settings.database_url, hung.url, tmp_path, prefix, **options)
    try:
        yield writer
    finally:
        dispose(writer)
        hung.close()


@pytest.mark.parametrize("how", ["writes refused", "unreachable", "hung"])
def test_a_write_made_without_the_cache_reaches_every_process(app, school, tmp_path, how):
    """The case issue 9 is about: with a generation counter in Redis, a rename made while
    the writer could not reach Redis left every other process serving the old course
    (detail, catalog page, search) until the entry's TTL. The generation now moves in
    the writing transaction, so the others see the rename after CACHE_LOCAL_SECONDS."""
    owner, student = school.headers["instructor"], school.headers["student"]
    course = new_course(app.test_client(), owner, is_published=True, title="Zebrafish basics")
    search = {"q": "zebrafish"}
    with (
        another_process(app, tmp_path / "reader", cache_local_s=0.3) as reader,
        writer_without_redis(app, tmp_path / "writer", how) as writer,
    ):
        there, here = reader.test_client(), writer.test_client()
        # The old values are in the real Redis (and in the reader's copies).
        assert detail_title(there, student, course["id"]) == "Zebrafish basics"
        r = there.get(f"{API}/courses", headers=student)
        assert [item["title"] for item in r.get_json()["items"]] == ["Zebrafish basics"]
        r = there.get(f"{API}/search", query_string=search, headers=student)
        assert [item["title"] for item in r.get_json()["items"]] == ["Zebrafish basics"]

        r = here.patch(
            f"{API}/courses/{course['id']}", json={"title": "Zebrafish advanced"}, headers=owner
        )
        assert r.status_code == 200  # the write never depends on the cache
        assert detail_title(here, student, course["id"]) == "Zebrafish advanced"
        with writer.app_context():
            assert breaker().is_open  # the cache did fail this process...
            assert breaker().pending == {}  # ...and no invalidation is owed to it

        wait_for_title(there, student, course["id"], "Zebrafish advanced", 0.3 + MARGIN_S)
        r = there.get(f"{API}/courses", headers=student)
        assert [item["title"] for item in r.get_json()["items"]] == ["Zebrafish advanced"]
        r = there.get(f"{API}/search", query_string=search, headers=student)
        assert [item["title"] for item in r.get_json()["items"]] == ["Zebrafish advanced"]


# --- (e) concurrent writers ----------------------------------------------------------------


def lock_waiters(app: Flask) -> int:
    with app.app_context(), db.engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()


def wait_for_lock_waiters(app: Flask, n: int) -> None:
    deadline = time.monotonic() + 20
    while lock_waiters(app) < n:
        assert time.monotonic() < deadline, f"fewer than {n} transactions ever waited"
        time.sleep(0.02)


def test_overlapping_bumps_in_opposite_orders_do_not_deadlock(app, make_tenant):
    """Staged so that rows taken in the order given would deadlock: a third transaction
    holds `search`; writer 1 (search, course, catalog) queues first, writer 2 (catalog,
    course, search) second. In the order given, writer 2 would hold catalog and course
    and writer 1, once given search, would wait for catalog: a deadlock. Taken in name
    order, both want catalog first, so one simply waits for the other."""
    tenant = make_tenant()
    namespaces = (CATALOG, COURSE, SEARCH)
    with app.app_context(), tenant_scope(tenant):
        generations.bump(*namespaces)  # the rows exist, so each writer locks them
        db.session.commit()
    before = stored_generations(app, tenant)
    outcomes: dict[str, str] = {}

    def writer(name: str, order: tuple[str, ...]) -> None:
        with app.app_context(), tenant_scope(tenant):
            try:
                generations.bump(*order)
                db.session.commit()
                outcomes[name] = "committed"
            except Exception as exc:  # a deadlock would land here
                db.session.rollback()
                outcomes[name] = repr(exc)

    with app.app_context(), for_schema(db.engine, tenant.schema_name).connect() as holder:
        holder.execute(
            select(CacheGeneration.namespace)
            .where(CacheGeneration.namespace == SEARCH)
            .with_for_update()
        )
        first = threading.Thread(target=writer, args=("first", (SEARCH, COURSE, CATALOG)))
        first.start()
        wait_for_lock_waiters(app, 1)
        second = threading.Thread(target=writer, args=("second", (CATALOG, COURSE, SEARCH)))
        second.start()
        wait_for_lock_waiters(app, 2)
        holder.rollback()
        first.join(20)
        second.join(20)
    assert not first.is_alive() and not second.is_alive()
    assert outcomes == {"first": "committed", "second": "committed"}
    after = stored_generations(app, tenant)
    assert moved(before, after) == dict.fromkeys(namespaces, 2)


def test_concurrent_writes_through_the_api_all_land(app, school, tmp_path):
    """Course and lesson writes of one school from two processes at once: each commits
    (no deadlock, no lost bump) and each bump is counted."""
    owner = school.headers["instructor"]
    client = app.test_client()
    courses = [new_course(client, owner, is_published=True) for _ in range(2)]
    lessons = [new_lesson(client, owner, c["id"], is_published=True) for c in courses]
    rounds = 8
    before = stored_generations(app, school.tenant)
    codes: list[int] = []

    def work(process: Flask, course: dict, lesson: dict) -> None:
        there = process.test_client()
        for i in range(rounds):
            r = there.patch(f"{API}/courses/{course['id']}", json={"title": f"T{i}"}, headers=owner)
            codes.append(r.status_code)
            r = there.patch(
                f"{API}/lessons/{lesson['id']}", json={"content": f"c{i}"}, headers=owner
            )
            codes.append(r.status_code)

    with another_process(app, tmp_path) as other:
        threads = [
            threading.Thread(target=work, args=(process, course, lesson))
            for process, course, lesson in zip((app, other), courses, lessons, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert codes == [200] * (4 * rounds)
    after = moved(before, stored_generations(app, school.tenant))
    # Each course patch moves the five course namespaces, each lesson edit three.
    writes = 2 * rounds
    assert after == {
        CATALOG: writes,
        ANALYTICS: writes,
        COURSE: 2 * writes,
        LESSON: 2 * writes,
        SEARCH: 2 * writes,
    }
