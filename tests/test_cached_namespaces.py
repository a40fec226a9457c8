"""Every cached namespace, end to end through the API (issue 9).

For each namespace, each write that changes it is seen by the very next read in the
process that wrote, and by another process (which had the old value cached, locally
and in Redis) once its generation snapshot is CACHE_LOCAL_SECONDS old. Then: schools
never share an entry, a cache outage changes no answer, the cached bodies are the
schemas' dumps, the per-process counters, and single-flight on a miss.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select

from lms_app.caching.safe import breaker
from lms_app.catalog import queries
from lms_app.catalog.models import Lesson
from lms_app.catalog.queries import LESSON_COLUMNS
from lms_app.catalog.schemas import CategoryPageSchema, CourseDetailSchema, SearchPageSchema
from lms_app.extensions import cache, db
from lms_app.learning.models import LessonProgress
from lms_app.learning.schemas import LessonWithProgressSchema
from lms_app.tenancy.context import tenant_scope
from tests import servers
from tests.conftest import (
    PLATFORM_HEADERS,
    another_process,
    cache_reads_of,
    count_statements,
    dispose,
    make_app,
    user_email,
)
from tests.test_catalog_api import API, School, make_school, new_course, new_lesson
from tests.test_learning_api import enroll_row, progress_row

# The other process's CACHE_LOCAL_SECONDS, and what a loaded machine may add to it.
WINDOW_S = 0.2
MARGIN_S = 2.0

Check = Callable[[object], bool]


@pytest.fixture
def school(app, make_tenant) -> School:
    return make_school(app, make_tenant())


@pytest.fixture
def there(app, tmp_path) -> Iterator[FlaskClient]:
    """A client of another worker process of the deployment (same database and Redis
    keys, its own snapshot and copies), re-reading the generations every WINDOW_S."""
    with another_process(app, tmp_path, cache_local_s=WINDOW_S) as other:
        yield other.test_client()


def _describe(r) -> str:
    return f"{r.status_code} {r.get_data(as_text=True)[:300]}"


def warm(here: FlaskClient, there: FlaskClient, url: str, headers: dict, check: Check, **query):
    """Both processes read `url` (so each holds it: a copy, and the entry in Redis) and
    `check` holds for what they read: the state before the write."""
    for client in (here, there, here, there):
        r = client.get(url, headers=headers, query_string=query)
        assert check(r), _describe(r)


def converge(here: FlaskClient, there: FlaskClient, url: str, headers: dict, check: Check, **query):
    """`check` holds at once in the writing process, and in the other one within its
    window: the write retired what both had cached."""
    r = here.get(url, headers=headers, query_string=query)
    assert check(r), f"the writing process: {_describe(r)}"
    deadline = time.monotonic() + WINDOW_S + MARGIN_S
    while not check(r := there.get(url, headers=headers, query_string=query)):
        assert time.monotonic() < deadline, f"the other process: {_describe(r)}"
        time.sleep(0.05)


def ok(r) -> bool:
    return r.status_code == 200


def status(code: int) -> Check:
    return lambda r: r.status_code == code


def field(name: str, value) -> Check:
    return lambda r: r.status_code == 200 and r.get_json()[name] == value


def outline(titles: list[str]) -> Check:
    return lambda r: ok(r) and [lesson["title"] for lesson in r.get_json()["lessons"]] == titles


def item_titles(titles: list[str]) -> Check:
    return lambda r: ok(r) and [item["title"] for item in r.get_json()["items"]] == titles


def item_names(names: list[str]) -> Check:
    return lambda r: ok(r) and [item["name"] for item in r.get_json()["items"]] == names


def expect(r, code: int) -> dict | None:
    assert r.status_code == code, _describe(r)
    return None if code == 204 else r.get_json()


# --- course detail ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        "rename course",
        "archive course",
        "add lesson",
        "rename lesson",
        "delete lesson",
        "unpublish lesson",
        "publish lesson",
        "rename instructor",
        "bulk rename instructor",
    ],
)
def test_course_detail_follows_every_write(app, client, there, school, change):
    owner, student, admin = (school.headers[r] for r in ("instructor", "student", "admin"))
    course = new_course(client, owner, is_published=True, title="Before")
    shown = new_lesson(client, owner, course["id"], is_published=True, title="Shown")
    draft = new_lesson(client, owner, course["id"], is_published=False, title="Draft")
    url = f"{API}/courses/{course['id']}"
    warm(client, there, url, student, outline(["Shown"]))
    warm(client, there, url, owner, outline(["Shown", "Draft"]))

    if change == "rename course":
        expect(client.patch(url, json={"title": "After"}, headers=owner), 200)
        converge(client, there, url, student, field("title", "After"))
    elif change == "archive course":
        expect(client.delete(url, headers=owner), 204)
        converge(client, there, url, student, status(404))
        converge(client, there, url, owner, field("is_archived", True))
    elif change == "add lesson":
        new_lesson(client, owner, course["id"], is_published=True, title="Added")
        converge(client, there, url, student, outline(["Shown", "Added"]))
        converge(client, there, url, student, field("total_lessons", 2))
    elif change == "rename lesson":
        r = client.patch(f"{API}/lessons/{shown['id']}", json={"title": "Renamed"}, headers=owner)
        expect(r, 200)
        converge(client, there, url, student, outline(["Renamed"]))
    elif change == "delete lesson":
        expect(client.delete(f"{API}/lessons/{shown['id']}", headers=owner), 204)
        converge(client, there, url, student, outline([]))
        converge(client, there, url, owner, outline(["Draft"]))
    elif change == "unpublish lesson":
        body = {"is_published": False}
        expect(client.patch(f"{API}/lessons/{shown['id']}", json=body, headers=owner), 200)
        converge(client, there, url, student, outline([]))
        converge(client, there, url, owner, outline(["Shown", "Draft"]))
    elif change == "publish lesson":
        body = {"is_published": True}
        expect(client.patch(f"{API}/lessons/{draft['id']}", json=body, headers=owner), 200)
        converge(client, there, url, student, outline(["Shown", "Draft"]))
    else:
        instructor = school.ids["instructor"]
        if change == "rename instructor":
            body = {"name": "Grace Instructor"}
            expect(client.patch(f"{API}/users/{instructor}", json=body, headers=admin), 200)
        else:
            email = user_email(app, school.tenant, instructor)
            body = {"users": [{"email": email, "name": "Grace Instructor", "role": "instructor"}]}
            r = client.post(f"{API}/users/bulk", json=body, headers=admin)
            assert expect(r, 200)["updated"] == 1
        converge(
            client,
            there,
            url,
            student,
            field("instructor", {"id": instructor, "name": "Grace Instructor"}),
        )


# --- lesson ----------------------------------------------------------------------------------


@pytest.mark.parametrize("change", ["edit content", "rename", "archive course", "unpublish"])
def test_a_lesson_follows_every_write(app, client, there, school, change):
    owner, student = school.headers["instructor"], school.headers["student"]
    course = new_course(client, owner, is_published=True)
    lesson = new_lesson(client, owner, course["id"], is_published=True, content="old words")
    enroll_row(app, school.tenant, school.ids["student"], course["id"])
    url = f"{API}/lessons/{lesson['id']}"
    warm(client, there, url, student, field("content", "old words"))
    warm(client, there, url, owner, field("content", "old words"))

    if change == "edit content":
        expect(client.patch(url, json={"content": "new words"}, headers=owner), 200)
        converge(client, there, url, student, field("content", "new words"))
    elif change == "rename":
        expect(client.patch(url, json={"title": "New title"}, headers=owner), 200)
        converge(client, there, url, student, field("title", "New title"))
    elif change == "archive course":
        expect(client.delete(f"{API}/courses/{course['id']}", headers=owner), 204)
        converge(client, there, url, student, status(404))
        converge(client, there, url, owner, field("content", "old words"))
    else:
        expect(client.patch(url, json={"is_published": False}, headers=owner), 200)
        converge(client, there, url, student, status(404))
        converge(client, there, url, owner, field("is_published", False))


def test_a_lesson_shows_the_learners_own_progress_live(app, client, school):
    """The lesson is cached, the caller's progress is not: a progress write (which moves
    no generation) shows on the next read."""
    owner, student = school.headers["instructor"], school.headers["student"]
    course = new_course(client, owner, is_published=True)
    lesson = new_lesson(client, owner, course["id"], is_published=True)
    enroll_row(app, school.tenant, school.ids["student"], course["id"])
    url = f"{API}/lessons/{lesson['id']}"
    for _ in range(2):
        assert expect(client.get(url, headers=student), 200)["progress_percentage"] == 0
    body = {"progress_percentage": 60, "time_spent": 30}
    expect(client.put(f"{url}/progress", json=body, headers=student), 200)
    shown = expect(client.get(url, headers=student), 200)
    assert (shown["progress_percentage"], shown["time_spent"]) == (60, 30)
    assert expect(client.get(url, headers=owner), 200)["progress_percentage"] == 0  # theirs


# --- search ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change", ["create course", "rename course", "archive course", "edit lesson content"]
)
def test_search_follows_every_write(app, client, there, school, change):
    owner, student = school.headers["instructor"], school.headers["student"]
    course = new_course(client, owner, is_published=True, title="Quokka care")
    lesson = new_lesson(client, owner, course["id"], is_published=True, content="marsupials")
    url = f"{API}/search"
    if change == "edit lesson content":
        warm(client, there, url, student, item_titles([]), q="wombat burrows")
        r = client.patch(
            f"{API}/lessons/{lesson['id']}", json={"content": "wombat burrows"}, headers=owner
        )
        expect(r, 200)
        converge(client, there, url, student, item_titles(["Quokka care"]), q="wombat burrows")
        return
    warm(client, there, url, student, item_titles(["Quokka care"]), q="quokka")
    if change == "create course":
        new_course(client, owner, is_published=True, title="Quokka")  # ranks first
        converge(client, there, url, student, item_titles(["Quokka", "Quokka care"]), q="quokka")
    elif change == "rename course":
        body = {"title": "Quokka grooming"}
        expect(client.patch(f"{API}/courses/{course['id']}", json=body, headers=owner), 200)
        converge(client, there, url, student, item_titles(["Quokka grooming"]), q="quokka")
    else:
        expect(client.delete(f"{API}/courses/{course['id']}", headers=owner), 204)
        converge(client, there, url, student, item_titles([]), q="quokka")


@pytest.mark.parametrize(
    ("title", "q"),
    [
        ("Okapi trails", "OKAPI Trails"),
        ("İstanbul walking tours", "İstanbul"),  # Python lowers İ to i + U+0307
        ("ΣΟΦΟΣ and other Greek words", "ΣΟΦΟΣ"),  # Python lowers the last Σ to ς
    ],
)
def test_a_query_matches_what_it_matches_uncached(app, client, school, title, q):
    """The cache key is a normalised query, and the query sent is that normalised one:
    the normalisation must not change what PostgreSQL matches. PostgreSQL (C.UTF-8)
    lowers U+0130 to i and U+03A3 to U+03C3; Python's str.lower gives i + U+0307, and
    U+03C2 (final sigma) at the end of a word."""
    new_course(client, school.headers["instructor"], is_published=True, title=title)
    with app.app_context(), tenant_scope(school.tenant):
        uncached = [item["title"] for item in queries.search_courses(q, 20)]
        db.session.rollback()
    assert uncached == [title]  # what the route answered before issue 9
    r = client.get(f"{API}/search", query_string={"q": q}, headers=school.headers["student"])
    assert item_titles(uncached)(r), _describe(r)


def test_spellings_of_one_query_share_an_entry(app, client, school):
    """Results are cached per normalised query (case and spacing do not change what
    websearch_to_tsquery matches): the second spelling is a hit, with the same body."""
    new_course(client, school.headers["instructor"], is_published=True, title="Axolotl gills")
    student = school.headers["student"]
    first = client.get(f"{API}/search", query_string={"q": "Axolotl  GILLS"}, headers=student)
    before = search_stats(client)
    again = client.get(f"{API}/search", query_string={"q": " axolotl gills "}, headers=student)
    after = search_stats(client)
    assert again.get_json() == first.get_json() and item_titles(["Axolotl gills"])(again)
    assert (after["hits"] - before["hits"], after["misses"] - before["misses"]) == (1, 0)


# --- categories ------------------------------------------------------------------------------


def test_a_new_category_is_on_the_next_page_read(app, client, there, school):
    admin, student = school.headers["admin"], school.headers["student"]
    url = f"{API}/categories"
    warm(client, there, url, student, item_names([]))
    expect(client.post(url, json={"name": "Marine life", "slug": "marine"}, headers=admin), 201)
    converge(client, there, url, student, item_names(["Marine life"]))
    expect(client.post(url, json={"name": "Birds", "slug": "birds"}, headers=admin), 201)
    converge(client, there, url, student, item_names(["Marine life", "Birds"]))


# --- course analytics ------------------------------------------------------------------------


def as_of(r) -> datetime:
    return datetime.fromisoformat(r.get_json()["as_of"])


@pytest.mark.parametrize("change", ["publish lesson", "unpublish lesson", "patch course"])
def test_course_analytics_are_retired_by_course_and_lesson_writes(
    app, client, there, school, change
):
    owner = school.headers["instructor"]
    course = new_course(client, owner, is_published=True)
    done = new_lesson(client, owner, course["id"], is_published=True)
    other = new_lesson(client, owner, course["id"], is_published=change != "publish lesson")
    enroll_row(app, school.tenant, school.ids["student"], course["id"])
    progress_row(app, school.tenant, school.ids["student"], done["id"], 100)
    url = f"{API}/analytics/courses/{course['id']}"
    first = expect(client.get(url, headers=owner), 200)
    warm(client, there, url, owner, field("as_of", first["as_of"]))

    if change == "publish lesson":
        assert first["completed"] == 1  # one published lesson, done
        r = client.patch(f"{API}/lessons/{other['id']}", json={"is_published": True}, headers=owner)
        converge(client, there, url, owner, field("completed", 0))
    elif change == "unpublish lesson":
        assert first["completed"] == 0  # two published lessons, one done
        body = {"is_published": False}
        r = client.patch(f"{API}/lessons/{other['id']}", json=body, headers=owner)
        converge(client, there, url, owner, field("completed", 1))
    else:
        body = {"description": "changed"}
        r = client.patch(f"{API}/courses/{course['id']}", json=body, headers=owner)
    expect(r, 200)

    def newer(r) -> bool:
        return ok(r) and as_of(r) > datetime.fromisoformat(first["as_of"])

    converge(client, there, url, owner, newer)


def test_progress_does_not_retire_course_analytics(app, client, school):
    """By design (lms_app.analytics.cached): learners' progress would retire the figures
    constantly; they stay for CACHE_TTL_ANALYTICS and say `as_of`."""
    owner, student = school.headers["instructor"], school.headers["student"]
    course = new_course(client, owner, is_published=True)
    lesson = new_lesson(client, owner, course["id"], is_published=True)
    enroll_row(app, school.tenant, school.ids["student"], course["id"])
    url = f"{API}/analytics/courses/{course['id']}"
    first = expect(client.get(url, headers=owner), 200)
    body = {"progress_percentage": 100, "time_spent": 50}
    expect(client.put(f"{API}/lessons/{lesson['id']}/progress", json=body, headers=student), 200)
    assert expect(client.get(url, headers=owner), 200) == first  # same figures, same as_of
    live = expect(
        client.get(f"{API}/analytics/users/{school.ids['student']}", headers=student), 200
    )
    assert live["lessons_completed"] == 1  # a learner's own figures are live


# --- auth ------------------------------------------------------------------------------------


def test_a_deactivated_user_is_refused_at_once_here_and_soon_elsewhere(client, there, school):
    student = school.headers["student"]
    warm(client, there, f"{API}/me", student, ok)
    r = client.patch(
        f"{API}/users/{school.ids['student']}",
        json={"is_active": False},
        headers=school.headers["admin"],
    )
    expect(r, 200)
    converge(client, there, f"{API}/me", student, status(401))


def test_a_demoted_instructor_loses_staff_routes_at_once_here_and_soon_elsewhere(
    client, there, school
):
    owner = school.headers["instructor"]
    course = new_course(client, owner, is_published=True)
    url = f"{API}/courses/{course['id']}/enrollments"  # course staff only
    warm(client, there, url, owner, ok)
    r = client.patch(
        f"{API}/users/{school.ids['instructor']}",
        json={"role": "student"},
        headers=school.headers["admin"],
    )
    expect(r, 200)
    converge(client, there, url, owner, status(403))
    converge(client, there, f"{API}/me", owner, field("role", "student"))


# --- catalog (covered in test_catalog_cache; one sanity case) ---------------------------------


def test_the_catalog_follows_a_rename(client, there, school):
    owner, student = school.headers["instructor"], school.headers["student"]
    course = new_course(client, owner, is_published=True, title="Before")
    warm(client, there, f"{API}/courses", student, item_titles(["Before"]))
    body = {"title": "After"}
    expect(client.patch(f"{API}/courses/{course['id']}", json=body, headers=owner), 200)
    converge(client, there, f"{API}/courses", student, item_titles(["After"]))


# --- two schools -----------------------------------------------------------------------------


def _fill(client: FlaskClient, school: School, label: str) -> dict[str, int]:
    owner, admin = school.headers["instructor"], school.headers["admin"]
    course = new_course(client, owner, is_published=True, title=f"{label} zebu herding")
    lesson = new_lesson(client, owner, course["id"], is_published=True, content=f"{label} text")
    body = {"name": f"{label} category", "slug": "same-slug"}
    expect(client.post(f"{API}/categories", json=body, headers=admin), 201)
    return {"course": course["id"], "lesson": lesson["id"]}


def test_two_schools_never_share_an_entry(app, client, there, make_tenant):
    """Same course, lesson and user ids, same query, same category page in two schools:
    each reads its own, first from the database then from every cache level."""
    schools = {label: make_school(app, make_tenant()) for label in ("A", "B")}
    ids = {label: _fill(client, school, label) for label, school in schools.items()}
    assert ids["A"] == ids["B"]  # the same ids in both
    enroll_row(app, schools["A"].tenant, schools["A"].ids["student"], ids["A"]["course"])
    for reader in (client, there, client, there):
        for label, school in schools.items():
            student, owner = school.headers["student"], school.headers["instructor"]
            course_url = f"{API}/courses/{ids[label]['course']}"
            assert field("title", f"{label} zebu herding")(reader.get(course_url, headers=student))
            lesson = reader.get(f"{API}/lessons/{ids[label]['lesson']}", headers=owner)
            assert field("content", f"{label} text")(lesson), _describe(lesson)
            found = reader.get(f"{API}/search", query_string={"q": "zebu"}, headers=student)
            assert item_titles([f"{label} zebu herding"])(found), _describe(found)
            categories = reader.get(f"{API}/categories", headers=student)
            assert item_names([f"{label} category"])(categories), _describe(categories)
            figures = reader.get(f"{API}/analytics/courses/{ids[label]['course']}", headers=owner)
            assert field("enrolled", 1 if label == "A" else 0)(figures), _describe(figures)
            assert field("email", f"admin@{school.tenant.slug}.test")(
                reader.get(f"{API}/me", headers=school.headers["admin"])
            )
    # The same user id deactivated in one school only.
    a, b = schools["A"], schools["B"]
    assert a.ids["student"] == b.ids["student"]
    r = client.patch(
        f"{API}/users/{a.ids['student']}", json={"is_active": False}, headers=a.headers["admin"]
    )
    expect(r, 200)
    converge(client, there, f"{API}/me", a.headers["student"], status(401))
    for reader in (client, there):
        assert reader.get(f"{API}/me", headers=b.headers["student"]).status_code == 200


# --- the cache unusable ----------------------------------------------------------------------


def exercise_every_endpoint(client: FlaskClient, school: School) -> None:
    """Each read and write endpoint of the cached namespaces answers, and each read
    reflects the write before it (one process)."""
    owner, student, admin = (school.headers[r] for r in ("instructor", "student", "admin"))
    course = new_course(client, owner, is_published=True, title="Okapi studies")
    url = f"{API}/courses/{course['id']}"
    assert field("title", "Okapi studies")(client.get(url, headers=student))
    expect(client.patch(url, json={"title": "Okapi field studies"}, headers=owner), 200)
    assert field("title", "Okapi field studies")(client.get(url, headers=student))
    kept = new_lesson(client, owner, course["id"], is_published=True, title="Kept")
    gone = new_lesson(client, owner, course["id"], is_published=True, title="Gone")
    assert outline(["Kept", "Gone"])(client.get(url, headers=student))
    expect(client.delete(f"{API}/lessons/{gone['id']}", headers=owner), 204)
    assert outline(["Kept"])(client.get(url, headers=student))
    lesson_url = f"{API}/lessons/{kept['id']}"
    expect(client.patch(lesson_url, json={"content": "stripes"}, headers=owner), 200)
    expect(client.post(f"{url}/enroll", headers=student), 201)
    assert field("content", "stripes")(client.get(lesson_url, headers=student))
    body = {"progress_percentage": 100, "time_spent": 5}
    expect(client.put(f"{lesson_url}/progress", json=body, headers=student), 200)
    assert field("progress_percentage", 100)(client.get(lesson_url, headers=student))
    (item,) = expect(client.get(f"{API}/courses", headers=student), 200)["items"]
    assert (item["title"], item["progress_percentage"]) == ("Okapi field studies", 100.0)
    found = client.get(f"{API}/search", query_string={"q": "okapi"}, headers=student)
    assert item_titles(["Okapi field studies"])(found)
    found = client.get(f"{API}/search", query_string={"q": "stripes"}, headers=student)
    assert item_titles(["Okapi field studies"])(found)
    body = {"name": "Mammals", "slug": "mammals"}
    expect(client.post(f"{API}/categories", json=body, headers=admin), 201)
    assert item_names(["Mammals"])(client.get(f"{API}/categories", headers=student))
    figures = client.get(f"{API}/analytics/courses/{course['id']}", headers=owner)
    assert field("completed", 1)(figures)
    instructor = school.ids["instructor"]
    body = {"name": "Dian Instructor"}
    expect(client.patch(f"{API}/users/{instructor}", json=body, headers=admin), 200)
    renamed = {"id": instructor, "name": "Dian Instructor"}
    assert field("instructor", renamed)(client.get(url, headers=student))
    expect(client.delete(url, headers=owner), 204)
    assert client.get(url, headers=student).status_code == 404
    assert client.get(lesson_url, headers=student).status_code == 404
    assert item_titles([])(
        client.get(f"{API}/search", query_string={"q": "okapi"}, headers=student)
    )
    assert item_titles([])(client.get(f"{API}/courses", headers=student))
    body = {"is_active": False}
    expect(client.patch(f"{API}/users/{school.ids['student']}", json=body, headers=admin), 200)
    assert client.get(f"{API}/me", headers=student).status_code == 401


@pytest.mark.parametrize("how", ["nothing listening", "hung"])
def test_every_endpoint_answers_with_the_cache_unusable(
    app, make_tenant, database_url, tmp_path, how
):
    hung = servers.SilentServer() if how == "hung" else None
    url = hung.url if hung else f"redis://127.0.0.1:{servers.free_port()}/0"
    down = make_app(database_url, url, tmp_path, cache_breaker_s=60, cache_timeout_ms=100)
    try:
        exercise_every_endpoint(down.test_client(), make_school(app, make_tenant()))
        with down.app_context():
            assert breaker().is_open  # it did fail, and no request noticed
    finally:
        dispose(down)
        if hung:
            hung.close()


@contextlib.contextmanager
def switchable_redis_user(url: str) -> Iterator[tuple[str, Callable[[bool], None]]]:
    """A Redis user of the test's own, and a switch that makes the server refuse every
    command of it (an outage for that user only: nothing else on the server changes)."""
    admin = redis.Redis.from_url(url)
    name = f"lms-test-{uuid.uuid4().hex[:10]}"

    def usable(yes: bool) -> None:
        categories = ["+@all"] if yes else ["-@all"]
        admin.acl_setuser(
            name, enabled=True, nopass=True, keys=["*"], categories=categories, reset=True
        )

    usable(True)
    parts = url.split("//", 1)[1].rsplit("@", 1)[-1]
    try:
        yield f"redis://{name}:unused@{parts}", usable
    finally:
        admin.acl_deluser(name)


def test_after_an_outage_no_value_from_before_it_is_served(app, make_tenant, redis_url, tmp_path):
    """A process loses Redis, writes go on (its own and another process's), Redis comes
    back holding every entry cached before: none of them is served, and the cache is
    used again."""
    breaker_s = 0.3
    school = make_school(app, make_tenant())
    owner, student = school.headers["instructor"], school.headers["student"]
    course = new_course(app.test_client(), owner, is_published=True, title="Tapir before")
    reads = {
        "detail": (f"{API}/courses/{course['id']}", {}, lambda r: r.get_json()["title"]),
        "catalog": (f"{API}/courses", {}, lambda r: [i["title"] for i in r.get_json()["items"]]),
        "search": (
            f"{API}/search",
            {"q": "tapir"},
            lambda r: [i["title"] for i in r.get_json()["items"]],
        ),
    }

    def titles_seen(client: FlaskClient) -> dict[str, object]:
        seen = {}
        for name, (url, query, title) in reads.items():
            r = client.get(url, headers=student, query_string=query)
            assert r.status_code == 200, _describe(r)
            seen[name] = title(r)
        return seen

    def all_say(title: str) -> dict[str, object]:
        return {"detail": title, "catalog": [title], "search": [title]}

    settings = {"cache_local_s": WINDOW_S, "cache_breaker_s": breaker_s}
    with (
        switchable_redis_user(redis_url) as (url, usable),
        another_process(app, tmp_path / "other", **settings) as other,
    ):
        process = make_app(
            app.config["LMS_SETTINGS"].database_url,
            url,
            tmp_path / "process",
            app.config["CACHE_KEY_PREFIX"],
            **settings,
        )
        try:
            here, elsewhere = process.test_client(), other.test_client()
            for client in (here, elsewhere, here):
                assert titles_seen(client) == all_say("Tapir before")  # cached everywhere

            usable(False)
            body = {"title": "Tapir during"}
            expect(here.patch(f"{API}/courses/{course['id']}", json=body, headers=owner), 200)
            assert titles_seen(here) == all_say("Tapir during")
            with process.app_context():
                assert breaker().is_open
            deadline = time.monotonic() + WINDOW_S + MARGIN_S
            while titles_seen(elsewhere) != all_say("Tapir during"):
                assert time.monotonic() < deadline, "the other process kept the old title"
                time.sleep(0.05)
            body = {"title": "Tapir later"}  # a write elsewhere, Redis still gone here
            expect(elsewhere.patch(f"{API}/courses/{course['id']}", json=body, headers=owner), 200)
            deadline = time.monotonic() + WINDOW_S + MARGIN_S
            while titles_seen(here) != all_say("Tapir later"):
                assert time.monotonic() < deadline, "the write elsewhere never showed here"
                time.sleep(0.05)

            usable(True)
            time.sleep(breaker_s + 0.05)
            for client in (here, elsewhere, here):
                assert titles_seen(client) == all_say("Tapir later")
            with process.app_context():
                assert not breaker().is_open  # its cache calls succeed again
        finally:
            dispose(process)


# --- cached bodies are the schemas' dumps ----------------------------------------------------


def _as_json(app: Flask, data) -> object:
    return json.loads(app.json.dumps(data))


def test_cached_bodies_are_the_schemas_dumps(app, client, there, school):
    """Course detail (staff and learner), search, categories and the lesson as served,
    from the database, from this process's copy and from Redis (the other process),
    equal what the uncached queries give through the route's schema."""
    owner, student, admin = (school.headers[r] for r in ("instructor", "student", "admin"))
    for name, slug in (("Zoology", "zoology"), ("Botany", "botany"), ("Geology", "geology")):
        expect(
            client.post(f"{API}/categories", json={"name": name, "slug": slug}, headers=admin), 201
        )
    category_id = client.get(f"{API}/categories", headers=student).get_json()["items"][0]["id"]
    course = new_course(
        client,
        owner,
        is_published=True,
        title="Pangolin scales",
        description="Keratin armour",
        category_id=category_id,
        estimated_hours=7,
    )
    lesson = new_lesson(client, owner, course["id"], is_published=True, content="rolling up")
    new_lesson(client, owner, course["id"], is_published=False, title="Draft")
    new_course(client, owner, is_published=True, title="Pangolin diet", description="ants")
    enroll_row(app, school.tenant, school.ids["student"], course["id"])
    progress_row(app, school.tenant, school.ids["student"], lesson["id"], 40, time_spent=12)

    with app.app_context(), tenant_scope(school.tenant):
        staff = CourseDetailSchema().dump(queries.course_detail_for_staff(course["id"]))
        learner = {**staff, "lessons": [x for x in staff["lessons"] if x["is_published"]]}
        expected_detail = {"staff": _as_json(app, staff), "learner": _as_json(app, learner)}
        raw_q = "PANGOLIN   Scales OR  diet"
        items = queries.search_courses(raw_q, 20)
        expected_search = _as_json(
            app, SearchPageSchema().dump({"items": items, "next_cursor": None})
        )
        pages = []
        after = None
        for _ in range(2):
            rows, cursor = queries.category_page(limit=2, after=after)
            pages.append(
                _as_json(app, CategoryPageSchema().dump({"items": rows, "next_cursor": cursor}))
            )
            after = rows[-1]["id"]
        lesson_row = db.session.execute(
            select(*LESSON_COLUMNS).where(Lesson.id == lesson["id"])
        ).one()
        progress = db.session.scalars(
            select(LessonProgress).where(LessonProgress.lesson_id == lesson["id"])
        ).one()
        expected_lesson = _as_json(
            app,
            LessonWithProgressSchema().dump(
                {
                    **lesson_row._asdict(),
                    "progress_percentage": 40,
                    "time_spent": 12,
                    "completed_at": progress.completed_at,
                    "is_completed": False,
                }
            ),
        )
        db.session.rollback()
    assert len(expected_search["items"]) == 2
    assert pages[0]["next_cursor"] is not None and len(pages[1]["items"]) == 1

    for reader in (client, client, there, there):  # database, copy, Redis, copy
        url = f"{API}/courses/{course['id']}"
        assert expect(reader.get(url, headers=owner), 200) == expected_detail["staff"]
        assert expect(reader.get(url, headers=student), 200) == expected_detail["learner"]
        r = reader.get(f"{API}/search", query_string={"q": raw_q}, headers=student)
        assert expect(r, 200) == expected_search
        first = expect(reader.get(f"{API}/categories?limit=2", headers=student), 200)
        assert first == pages[0]
        r = reader.get(
            f"{API}/categories",
            query_string={"limit": 2, "cursor": first["next_cursor"]},
            headers=student,
        )
        assert expect(r, 200) == pages[1]
        r = reader.get(f"{API}/lessons/{lesson['id']}", headers=student)
        assert expect(r, 200) == expected_lesson


# --- per-process counters --------------------------------------------------------------------


def cache_stats_of(process: Flask) -> dict[str, dict]:
    r = process.test_client().get("/platform/cache-stats", headers=PLATFORM_HEADERS)
    assert r.status_code == 200, _describe(r)
    body = r.get_json()
    assert body["pid"] == os.getpid()  # the test client runs in this process
    return body["namespaces"]


def search_stats(client: FlaskClient) -> dict[str, int]:
    r = client.get("/platform/cache-stats", headers=PLATFORM_HEADERS)
    assert r.status_code == 200, _describe(r)
    return r.get_json()["namespaces"].get("search", Counter())


def test_cache_stats_count_a_miss_then_hits(app, client, school, tmp_path):
    new_course(client, school.headers["instructor"], is_published=True, title="Ibex horns")
    student = school.headers["student"]
    q = {"q": f"ibex {uuid.uuid4().hex[:6]}"}  # a key nobody looked up before
    assert client.get("/platform/cache-stats").status_code == 401  # operators only
    before = search_stats(client)
    expect(client.get(f"{API}/search", query_string=q, headers=student), 200)
    after_miss = search_stats(client)
    expect(client.get(f"{API}/search", query_string=q, headers=student), 200)
    after_hit = search_stats(client)
    step = lambda a, b: {k: b[k] - a.get(k, 0) for k in ("hits", "local_hits", "misses", "errors")}  # noqa: E731
    assert step(before, after_miss) == {"hits": 0, "local_hits": 0, "misses": 1, "errors": 0}
    assert step(after_miss, after_hit) == {"hits": 1, "local_hits": 1, "misses": 0, "errors": 0}
    assert after_hit["hit_rate"] == round(
        after_hit["hits"] / (after_hit["hits"] + after_hit["misses"]), 4
    )
    # Another process finds the value in Redis: a hit, not a local one.
    with another_process(app, tmp_path) as other:
        there = other.test_client()
        expect(there.get(f"{API}/search", query_string=q, headers=student), 200)
        assert cache_stats_of(other)["search"] == {
            "hits": 1,
            "local_hits": 0,
            "misses": 0,
            "errors": 0,
            "hit_rate": 1.0,
        }


def test_cache_stats_count_errors_while_the_cache_is_down(app, make_tenant, database_url, tmp_path):
    url = f"redis://127.0.0.1:{servers.free_port()}/0"
    down = make_app(database_url, url, tmp_path, cache_breaker_s=60)
    try:
        school = make_school(app, make_tenant())
        new_course(app.test_client(), school.headers["instructor"], is_published=True)
        client = down.test_client()
        for q in ("lynx", "puma", "ocelot"):
            r = client.get(
                f"{API}/search", query_string={"q": q}, headers=school.headers["student"]
            )
            expect(r, 200)
        stats = cache_stats_of(down)["search"]
        assert (stats["misses"], stats["errors"], stats["hits"]) == (3, 3, 0)
        # What a request loaded is still kept by this process (under its generation).
        r = client.get(
            f"{API}/search", query_string={"q": "lynx"}, headers=school.headers["student"]
        )
        expect(r, 200)
        stats = cache_stats_of(down)["search"]
        assert (stats["misses"], stats["errors"], stats["local_hits"]) == (3, 3, 1)
    finally:
        dispose(down)


# --- single-flight ---------------------------------------------------------------------------


def test_concurrent_misses_of_one_search_load_it_once(app, school, tmp_path):
    """N requests miss the same search key at once: one loads it, the others wait for
    its value. Staged without timing: the loader is held after its search statement
    until every other request is polling for the value, and their polls are held
    (delegated to Redis once the value is stored) so none runs out of patience."""
    n = 6
    owner, student = school.headers["instructor"], school.headers["student"]
    new_course(app.test_client(), owner, is_published=True, title="Narwhal tusks")
    with another_process(app, tmp_path, cache_local_s=30) as process:
        assert process.test_client().get(f"{API}/me", headers=student).status_code == 200
        with process.app_context():
            backend = cache.cache
            engines = list(db.engines.values())
        real_get_many, real_set = backend.get_many, backend.set
        lock = threading.Lock()
        gets_per_thread: Counter[int] = Counter()
        polling = threading.Semaphore(0)
        stored = threading.Event()

        def get_many(*keys):
            if any(":search:" in key for key in keys):
                with lock:
                    gets_per_thread[threading.get_ident()] += 1
                    polls = gets_per_thread[threading.get_ident()] > 1
                if polls:  # a request that found the key claimed: it waits for the value
                    polling.release()
                    assert stored.wait(20), "the loader never stored the value"
            return real_get_many(*keys)

        def set_(key, value, timeout=None):
            result = real_set(key, value, timeout=timeout)
            if ":search:" in key:
                stored.set()
            return result

        def hold_the_loader(conn, cursor, statement, parameters, context, executemany):
            if "websearch_to_tsquery" in statement:
                for _ in range(n - 1):
                    assert polling.acquire(timeout=20), "the others never waited"

        backend.get_many, backend.set = get_many, set_
        for engine in engines:
            event.listen(engine, "after_cursor_execute", hold_the_loader)
        answers: list[tuple[int, object]] = []

        def search():
            r = process.test_client().get(
                f"{API}/search", query_string={"q": "narwhal"}, headers=student
            )
            answers.append((r.status_code, r.get_json()))

        try:
            with count_statements(process) as q:
                threads = [threading.Thread(target=search) for _ in range(n)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(30)
        finally:
            for engine in engines:
                event.remove(engine, "after_cursor_execute", hold_the_loader)
            del backend.get_many, backend.set
        loads = [s for s in q.statements if "websearch_to_tsquery" in s]
        assert len(loads) == 1, q.statements
        assert len(answers) == n and all(code == 200 for code, _ in answers)
        assert all(body == answers[0][1] for _, body in answers)
        assert item_titles(["Narwhal tusks"])(
            process.test_client().get(
                f"{API}/search", query_string={"q": "narwhal"}, headers=student
            )
        )
        stats = cache_stats_of(process)["search"]
        assert (stats["misses"], stats["hits"] - stats["local_hits"]) == (1, n - 1)


@pytest.mark.parametrize("what", ["course", "lesson"])
def test_a_miss_that_stores_nothing_does_not_hold_up_the_next_request(app, school, tmp_path, what):
    """A load that finds nothing (a 404) stores nothing, but its claim on the key stays
    for CLAIM_MS (2 s): every request for the same key meanwhile takes the claim as
    another request's load in progress and polls Redis for a value that never comes
    (5 more GETs, 155 ms of sleeps) before loading itself. Counted in Redis calls, not
    timed: a repeated miss costs what the first one did (one GET)."""
    student = school.headers["student"]
    url = f"{API}/courses/424242" if what == "course" else f"{API}/lessons/424242"
    with another_process(app, tmp_path, cache_local_s=30) as process:
        client = process.test_client()
        assert client.get(f"{API}/me", headers=student).status_code == 200  # auth warm
        with cache_reads_of(process) as calls:
            gets = []
            for _ in range(3):
                before = len(calls)
                assert client.get(url, headers=student).status_code == 404
                gets.append(len(calls) - before)
    assert gets == [1, 1, 1]
