"""The catalog page cache: shared rows cached per tenant, the user's overlay always live.

Writes retire cached pages through the tenant's catalog generation (a row in the
tenant's `cache_generations`, moved by the writing transaction): at once in the
process that wrote, within CACHE_LOCAL_SECONDS in other processes, and never by
scanning keys. A cache outage degrades to the database.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from lms_app.caching.generations import CATALOG
from lms_app.caching.keys import tenant_key
from lms_app.caching.local import shared_copies
from lms_app.caching.safe import breaker
from lms_app.catalog.page_cache import CACHED_PAGE_SIZES
from lms_app.extensions import cache
from lms_app.web.pagination import encode_cursor
from tests import servers
from tests.conftest import (
    another_process,
    cache_reads_of,
    count_statements,
    dispose,
    login,
    make_app,
    user_email,
)
from tests.test_catalog_api import (
    API,
    insert_courses,
    make_school,
    new_course,
    new_lesson,
    walk_catalog,
)
from tests.test_generation_snapshots import stored_generation
from tests.test_learning_api import enroll_row, progress_row


@pytest.fixture
def school(app, make_tenant):
    return make_school(app, make_tenant())


def catalog(client, headers, **query) -> dict:
    r = client.get(f"{API}/courses", query_string=query, headers=headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def titles(body: dict) -> list[str]:
    return [item["title"] for item in body["items"]]


def test_a_cached_page_costs_only_the_overlay(app, client, school, count_queries):
    insert_courses(app, school.tenant, 12, difficulty_level="beginner")
    student = school.headers["student"]
    catalog(client, student, limit=7)  # also warms the auth state
    with count_queries() as q:
        first = catalog(client, student, limit=10)
    assert q.count == 1, q.statements  # the page with this user's overlay
    assert cached_pages(app, school.tenant) == 1
    with count_queries() as q:
        again = catalog(client, student, limit=10)
    assert q.count == 1, q.statements  # overlay only
    assert again == first
    assert "page_ids" in q.statements[0]  # the overlay statement

    # Another user of the school shares the page, with their own overlay.
    with count_queries() as q:
        catalog(client, school.headers["other"], limit=10)
    assert q.count == 2, q.statements  # their auth state + overlay

    # An empty page has no overlay to ask for.
    catalog(client, student, difficulty_level="advanced")
    with count_queries() as q:
        assert catalog(client, student, difficulty_level="advanced")["items"] == []
    assert q.count == 0, q.statements


def cached_pages(app, tenant) -> int:
    """Catalog pages stored in Redis for `tenant` (a test may list keys; the app never does)."""
    with app.app_context():
        client = cache.cache._read_client
        pattern = f"{app.config['CACHE_KEY_PREFIX']}{tenant_key(tenant, CATALOG)}:*"
        keys = client.scan_iter(match=pattern, count=1000)
        # Single-flight claims (a short PX each) are not pages.
        return sum(1 for key in keys if not key.endswith(b":claim"))


def test_only_pages_reached_through_next_cursor_are_cached(app, client, school):
    """Finding 8 of issue 8: any signed-in student could make Redis store one page per
    cursor they invented. Invented positions are served, from the database, uncached."""
    insert_courses(app, school.tenant, 30)
    student = school.headers["student"]
    walked = walk_catalog(client, student, limit=10)
    assert len(walked) == 30
    reachable = cached_pages(app, school.tenant)
    assert reachable == 3  # the three pages a client walks

    base = datetime.fromisoformat(walked[-1]["created_at"])
    invented = [encode_cursor(base + timedelta(seconds=17 * i + 1), 10**6 + i) for i in range(100)]
    # The same real position, written with other UTC offsets.
    real = walked[9]
    instant = datetime.fromisoformat(real["created_at"])
    invented += [
        encode_cursor(instant.astimezone(timezone(timedelta(hours=h))), real["id"])
        for h in range(-11, 12)
    ]
    for cursor in invented:
        assert catalog(client, student, cursor=cursor, limit=10)["items"] is not None
    for limit in range(1, 101):  # every page size
        catalog(client, student, limit=limit)
    for category_id in range(1000, 1050):  # categories that do not exist
        assert catalog(client, student, category_id=category_id)["items"] == []
    # The real position under another offset is the page already cached; beyond the
    # walk, only the first page of each of the few shared sizes was added.
    assert cached_pages(app, school.tenant) == reachable + len(CACHED_PAGE_SIZES) - 1
    assert local_pages(app, school.tenant) <= reachable + len(CACHED_PAGE_SIZES) - 1


def local_pages(app, tenant) -> int:
    """Catalog pages this process keeps a copy of for `tenant`, whatever the generation."""
    prefix = tenant_key(tenant, CATALOG) + ":"
    with app.app_context():
        return sum(1 for key in list(shared_copies()._entries) if key.startswith(prefix))


def test_the_overlay_is_never_cached(app, client, school):
    """Enrolment and progress show on the very next request, with no write to the
    catalog and no generation bump."""
    owner = school.headers["instructor"]
    course = new_course(client, owner, is_published=True)
    lessons = [new_lesson(client, owner, course["id"], is_published=True) for _ in range(4)]
    student_id, student = school.ids["student"], school.headers["student"]
    (item,) = catalog(client, student)["items"]
    assert item["is_enrolled"] is False and item["progress_percentage"] == 0

    enroll_row(app, school.tenant, student_id, course["id"])
    progress_row(app, school.tenant, student_id, lessons[0]["id"], 100)
    (item,) = catalog(client, student)["items"]
    assert item["is_enrolled"] is True and item["progress_percentage"] == 25


@pytest.mark.parametrize(
    "change",
    ["create course", "rename course", "archive course", "add lesson", "unpublish lesson"],
)
def test_catalog_writes_show_at_once_in_the_writing_process(client, school, change):
    owner, student = school.headers["instructor"], school.headers["student"]
    course = new_course(client, owner, is_published=True, title="Before")
    lesson = new_lesson(client, owner, course["id"], is_published=True)
    before = catalog(client, student)
    assert titles(before) == ["Before"] and before["items"][0]["total_lessons"] == 1

    if change == "create course":
        new_course(client, owner, is_published=True, title="Newer")
        assert titles(catalog(client, student)) == ["Newer", "Before"]
        return
    if change == "rename course":
        r = client.patch(f"{API}/courses/{course['id']}", json={"title": "After"}, headers=owner)
        assert r.status_code == 200
        assert titles(catalog(client, student)) == ["After"]
    elif change == "archive course":
        assert client.delete(f"{API}/courses/{course['id']}", headers=owner).status_code == 204
        assert catalog(client, student)["items"] == []
    elif change == "add lesson":
        new_lesson(client, owner, course["id"], is_published=True)
        assert catalog(client, student)["items"][0]["total_lessons"] == 2
    else:
        r = client.patch(
            f"{API}/lessons/{lesson['id']}", json={"is_published": False}, headers=owner
        )
        assert r.status_code == 200
        assert catalog(client, student)["items"][0]["total_lessons"] == 0


def test_a_write_reaches_other_processes_through_the_generation(
    app, client, school, database_url, redis_url, tmp_path
):
    """Another worker (same cache, no local copies) sees the write on its next request;
    with local copies, within CACHE_LOCAL_SECONDS."""
    prefix = app.config["CACHE_KEY_PREFIX"]
    no_copies = make_app(database_url, redis_url, tmp_path / "a", prefix, cache_local_s=0)
    short_copies = make_app(database_url, redis_url, tmp_path / "b", prefix, cache_local_s=0.3)
    owner, student = school.headers["instructor"], school.headers["student"]
    course = new_course(client, owner, is_published=True, title="Before")
    there, later = no_copies.test_client(), short_copies.test_client()
    assert titles(catalog(there, student)) == ["Before"]
    assert titles(catalog(later, student)) == ["Before"]

    r = client.patch(f"{API}/courses/{course['id']}", json={"title": "After"}, headers=owner)
    assert r.status_code == 200
    assert titles(catalog(there, student)) == ["After"]
    deadline = time.monotonic() + 0.3 + 1.0
    while titles(catalog(later, student)) != ["After"]:
        assert time.monotonic() < deadline, "the write never reached the other process"
        time.sleep(0.05)
    dispose(no_copies, short_copies)


def test_invalidation_is_one_counter(app, client, school):
    """A write moves the tenant's catalog generation (its row in PostgreSQL) by one, and
    the next read uses a key of the new generation; keys are never listed."""
    owner, student = school.headers["instructor"], school.headers["student"]
    catalog(client, student)
    before = stored_generation(app, school.tenant, CATALOG)
    assert cached_pages(app, school.tenant) == 1
    new_course(client, owner, is_published=True)
    assert stored_generation(app, school.tenant, CATALOG) == before + 1
    catalog(client, student)
    assert cached_pages(app, school.tenant) == 2  # the old page stays until its TTL


def test_pages_of_two_schools_never_mix(app, client, make_tenant):
    a, b = make_school(app, make_tenant()), make_school(app, make_tenant())
    new_course(client, a.headers["instructor"], is_published=True, title="A course")
    new_course(client, b.headers["instructor"], is_published=True, title="B course")
    for _ in range(2):  # the second round is served from the cache
        assert titles(catalog(client, a.headers["student"])) == ["A course"]
        assert titles(catalog(client, b.headers["student"])) == ["B course"]


def test_cache_outage_degrades_to_the_database(
    app, make_tenant, database_url, tmp_path, count_queries
):
    """Redis hung (it accepts connections and never answers): every catalog request
    still answers, from the database; after the first timeout the breaker keeps
    requests off the cache, so none of them tries Redis again (counted on the hung
    server, not timed). Logging in works too: the throttle falls back to memory."""
    hung = servers.SilentServer()
    down = make_app(database_url, hung.url, tmp_path, cache_breaker_s=60)
    school = make_school(app, make_tenant())
    new_course(app.test_client(), school.headers["instructor"], is_published=True, title="Up")
    client = down.test_client()
    assert titles(catalog(client, school.headers["student"])) == ["Up"]
    with down.app_context():
        assert breaker().is_open
    tried = (hung.connections, hung.received)
    assert tried[0] >= 1 and tried[1] > 0  # the first request did wait on Redis
    for _ in range(3):
        assert titles(catalog(client, school.headers["student"])) == ["Up"]
    email = user_email(app, school.tenant, school.ids["student"])
    assert titles(catalog(client, login(client, school.tenant, email))) == ["Up"]
    assert (hung.connections, hung.received) == tried  # nobody tried it again
    dispose(down)
    hung.close()


def test_page_cache_can_be_switched_off(app, make_tenant, database_url, redis_url, tmp_path):
    off = make_app(database_url, redis_url, tmp_path, cache_catalog_pages=False)
    school = make_school(app, make_tenant())
    new_course(app.test_client(), school.headers["instructor"], is_published=True, title="X")
    client = off.test_client()
    first = catalog(client, school.headers["student"])
    with count_statements(off) as q:
        assert titles(catalog(client, school.headers["student"])) == ["X"]
    assert q.count == 1, q.statements
    # Both ways of rendering give the same body.
    assert first == catalog(app.test_client(), school.headers["student"])
    dispose(off)


def test_in_process_cache_without_redis(make_tenant, database_url, tmp_path):
    """REDIS_URL unset (the quick start): SimpleCache holds pages and counters."""
    local = make_app(database_url, None, tmp_path)
    school = make_school(local, make_tenant())
    client, owner = local.test_client(), school.headers["instructor"]
    course = new_course(client, owner, is_published=True, title="Before")
    assert titles(catalog(client, school.headers["student"])) == ["Before"]
    with count_statements(local) as q:
        assert titles(catalog(client, school.headers["student"])) == ["Before"]
    assert q.count == 1, q.statements  # the page came from the cache
    r = client.patch(f"{API}/courses/{course['id']}", json={"title": "After"}, headers=owner)
    assert r.status_code == 200
    assert titles(catalog(client, school.headers["student"])) == ["After"]
    with local.app_context():
        assert not breaker().is_open
    dispose(local)


def test_a_page_read_from_redis_is_kept_as_a_process_copy(app, client, school, tmp_path):
    """Found by the review of issue 8: the reachability guard refused pages that came
    from Redis too, so every catalog GET of every other worker cost a Redis round trip."""
    insert_courses(app, school.tenant, 3)
    student = school.headers["student"]
    catalog(client, student)  # this process reads the page from the database, fills Redis
    with another_process(app, tmp_path, cache_local_s=30) as other, cache_reads_of(other) as calls:
        there = other.test_client()
        catalog(there, student)  # from Redis
        read_from_redis = len(calls)
        assert read_from_redis >= 1
        for _ in range(3):
            catalog(there, student)
        assert len(calls) == read_from_redis  # the process copy served the rest


def test_pages_the_previous_release_cached_are_never_read(app, client, school):
    """The release before issue 9 kept the catalog generation in Redis and stored pages
    under `t<id>.<ts>:catalog:g<redis generation>:v2:...` (git 85bc3ca,
    lms_app/caching/reads.py). Generations now start again from 0 in PostgreSQL, so
    once a school's PostgreSQL generation reaches a number its Redis counter had used,
    a page the previous release cached under that number (alive for its TTL, 300 s)
    must not be served: the key has to differ (PAGE_FORMAT, or the generation's part).

    Here: the previous release had cached the page while the course was "Old title",
    under a Redis generation this school's PostgreSQL generation reaches at its next
    write after the deploy."""
    from lms_app.catalog.page_cache import _page_key

    owner, student = school.headers["instructor"], school.headers["student"]
    (course_id,) = insert_courses(app, school.tenant, 1)  # there before the deploy
    admin = school.headers["admin"]
    r = client.patch(f"{API}/courses/{course_id}", json={"title": "New title"}, headers=admin)
    assert r.status_code == 200
    generation = stored_generation(app, school.tenant, CATALOG)
    assert titles(catalog(client, student)) == ["New title"]
    page_key = _page_key(limit=20, after=None, category_id=None, difficulty_level=None)
    with app.app_context():
        current = cache.get(tenant_key(school.tenant, CATALOG, f"p{generation}", page_key))
        assert current is not None  # the page this release cached
        fragments, unpublished, next_cursor = current
        stale = (
            [(i, n, text.replace("New title", "Old title")) for i, n, text in fragments],
            unpublished,
            next_cursor,
        )
        previous_release_key = f"{tenant_key(school.tenant, CATALOG)}:g{generation + 1}:{page_key}"
        cache.set(previous_release_key, stale, timeout=300)

    new_course(client, owner, is_published=True, title="Another")  # the next write
    assert stored_generation(app, school.tenant, CATALOG) == generation + 1
    assert titles(catalog(client, student)) == ["Another", "New title"]
