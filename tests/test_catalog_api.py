"""Catalog API: categories, courses, lessons (writes), the catalog page and its overlay."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from lms_app.catalog.models import Category, Course, Lesson
from lms_app.extensions import db
from lms_app.learning.models import Enrollment, LessonProgress
from lms_app.tenancy.context import TenantInfo, tenant_scope
from tests.conftest import (
    ADMIN_PASSWORD,
    add_user,
    admin_id,
    assert_error,
    headers_for,
    login,
    tenant_headers,
    user_email,
)

API = "/api/v1"
HUGE_ID = "99999999999999999999"
CATALOG_ITEM_KEYS = {
    "id",
    "title",
    "description",
    "difficulty_level",
    "estimated_hours",
    "thumbnail_url",
    "category_id",
    "instructor_id",
    "total_lessons",
    "created_at",
    "is_enrolled",
    "progress_percentage",
}
COURSE_KEYS = CATALOG_ITEM_KEYS - {"is_enrolled", "progress_percentage"} | {
    "is_published",
    "is_archived",
    "updated_at",
}
LESSON_KEYS = {
    "id",
    "course_id",
    "title",
    "content",
    "order_index",
    "is_published",
    "created_at",
    "updated_at",
}


# --- helpers ---------------------------------------------------------------------


@dataclass
class School:
    tenant: TenantInfo
    ids: dict[str, int]
    headers: dict[str, dict[str, str]]


def make_school(app: Flask, tenant: TenantInfo) -> School:
    ids = {
        "admin": admin_id(app, tenant),
        "instructor": add_user(app, tenant, "instructor", name="Ada Instructor"),
        "other": add_user(app, tenant, "instructor"),
        "student": add_user(app, tenant, "student"),
    }
    headers = {role: headers_for(app, tenant, user_id) for role, user_id in ids.items()}
    headers["anonymous"] = tenant_headers(tenant)
    return School(tenant, ids, headers)


def new_course(client: FlaskClient, headers: dict[str, str], **fields) -> dict:
    body = {"title": f"Course {uuid.uuid4().hex[:8]}", **fields}
    r = client.post(f"{API}/courses", json=body, headers=headers)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def new_lesson(client: FlaskClient, headers: dict[str, str], course_id: int, **fields) -> dict:
    body = {"title": f"Lesson {uuid.uuid4().hex[:8]}", **fields}
    r = client.post(f"{API}/courses/{course_id}/lessons", json=body, headers=headers)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def course_row(app: Flask, tenant: TenantInfo, course_id: int) -> Course:
    with app.app_context(), tenant_scope(tenant):
        course = db.session.get(Course, course_id)
        db.session.expunge(course)
        return course


def published_lessons(app: Flask, tenant: TenantInfo, course_id: int) -> int:
    with app.app_context(), tenant_scope(tenant):
        return db.session.scalar(
            select(func.count())
            .select_from(Lesson)
            .where(Lesson.course_id == course_id, Lesson.is_published)
        )


def total_lessons(app: Flask, tenant: TenantInfo, course_id: int) -> int:
    """total_lessons as stored, after checking it matches the lessons themselves."""
    stored = course_row(app, tenant, course_id).total_lessons
    assert stored == published_lessons(app, tenant, course_id)
    return stored


def insert_courses(app: Flask, tenant: TenantInfo, count: int, **fields) -> list[int]:
    """Published courses straight into the tenant, with distinct created_at values."""
    base = datetime.now(UTC) - timedelta(days=1)
    with app.app_context(), tenant_scope(tenant):
        rows = [
            Course(
                title=f"Bulk course {i}",
                description="bulk",
                is_published=True,
                created_at=base + timedelta(seconds=i),
                **fields,
            )
            for i in range(count)
        ]
        db.session.add_all(rows)
        db.session.commit()
        return [row.id for row in rows]


def walk_catalog(client: FlaskClient, headers: dict[str, str], **query) -> list[dict]:
    items: list[dict] = []
    cursor = None
    for _ in range(1000):
        params = dict(query)
        if cursor:
            params["cursor"] = cursor
        r = client.get(f"{API}/courses", query_string=params, headers=headers)
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination does not end")


@pytest.fixture(scope="module")
def school(app, make_tenant) -> School:
    return make_school(app, make_tenant())


@pytest.fixture(scope="module")
def category(app, school) -> dict:
    with app.app_context(), tenant_scope(school.tenant):
        row = Category(name="Programming", slug=f"prog-{uuid.uuid4().hex[:6]}")
        db.session.add(row)
        db.session.commit()
        return {"id": row.id, "name": row.name, "slug": row.slug}


# --- categories ------------------------------------------------------------------


def test_categories_create_and_list(app, client, make_tenant):
    school = make_school(app, make_tenant())
    admin = school.headers["admin"]
    created = []
    for i in range(5):
        r = client.post(
            f"{API}/categories", json={"name": f"  Cat {i} ", "slug": f"cat-{i}"}, headers=admin
        )
        assert r.status_code == 201, r.get_json()
        body = r.get_json()
        assert body == {"id": body["id"], "name": f"Cat {i}", "slug": f"cat-{i}"}
        created.append(body)

    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = client.get(f"{API}/categories", query_string=params, headers=school.headers["student"])
        assert r.status_code == 200
        body = r.get_json()
        assert len(body["items"]) <= 2
        seen.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == created


def test_category_duplicate_slug_is_409(client, school):
    body = {"name": "Dup", "slug": f"dup-{uuid.uuid4().hex[:6]}"}
    assert (
        client.post(f"{API}/categories", json=body, headers=school.headers["admin"]).status_code
        == 201
    )
    r = client.post(f"{API}/categories", json=body, headers=school.headers["admin"])
    assert "slug" in assert_error(r, 409)["message"]


@pytest.mark.parametrize(
    ("role", "code"), [("instructor", 403), ("other", 403), ("student", 403), ("anonymous", 401)]
)
def test_category_create_roles(client, school, role, code):
    body = {"name": "X", "slug": f"x-{uuid.uuid4().hex[:6]}"}
    assert_error(client.post(f"{API}/categories", json=body, headers=school.headers[role]), code)


def test_category_list_needs_a_token(client, school):
    assert_error(client.get(f"{API}/categories", headers=school.headers["anonymous"]), 401)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slug": "ok"}, "name"),
        ({"name": "ok"}, "slug"),
        ({"name": "   ", "slug": "ok"}, "name"),
        ({"name": "n" * 121, "slug": "ok"}, "name"),
        ({"name": "ok", "slug": "Not A Slug"}, "slug"),
        ({"name": "ok", "slug": "s" * 121}, "slug"),
        ({"name": "ok", "slug": "ok\n"}, "slug"),
        ({"name": "o\x00k", "slug": "ok"}, "name"),
        ({"name": 5, "slug": "ok"}, "name"),
        ({"name": "ok", "slug": "ok", "extra": 1}, "extra"),
    ],
)
def test_category_validation(client, school, body, field):
    r = client.post(f"{API}/categories", json=body, headers=school.headers["admin"])
    assert field in assert_error(r, 422)["errors"]


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 101}, {"cursor": "garbage!"}])
def test_category_list_bad_query(client, school, query):
    r = client.get(f"{API}/categories", query_string=query, headers=school.headers["student"])
    assert_error(r, 422)


# --- creating courses ------------------------------------------------------------


def test_create_course_defaults(client, school):
    body = new_course(client, school.headers["instructor"], title="  Intro to SQL  ")
    assert set(body) == COURSE_KEYS
    assert body["title"] == "Intro to SQL"
    assert body["instructor_id"] == school.ids["instructor"]
    assert body["description"] == ""
    assert body["difficulty_level"] == "beginner"
    assert body["is_published"] is False and body["is_archived"] is False
    assert body["total_lessons"] == 0
    assert body["category_id"] is None and body["estimated_hours"] is None
    assert body["thumbnail_url"] is None
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None


def test_create_course_all_fields(client, school, category):
    body = new_course(
        client,
        school.headers["instructor"],
        title="Advanced Postgres",
        description="Indexes, plans and locks.",
        category_id=category["id"],
        difficulty_level="advanced",
        estimated_hours=12,
        thumbnail_url="https://cdn.example.test/pg.png",
        is_published=True,
    )
    assert body["category_id"] == category["id"]
    assert body["difficulty_level"] == "advanced"
    assert body["estimated_hours"] == 12
    assert body["thumbnail_url"] == "https://cdn.example.test/pg.png"
    assert body["is_published"] is True


def test_admin_creates_course_for_an_instructor(client, school):
    admin = school.headers["admin"]
    body = new_course(client, admin, instructor_id=school.ids["instructor"])
    assert body["instructor_id"] == school.ids["instructor"]
    assert new_course(client, admin)["instructor_id"] == school.ids["admin"]

    for bad in (school.ids["student"], 987_654_321):
        r = client.post(f"{API}/courses", json={"title": "x", "instructor_id": bad}, headers=admin)
        assert "instructor_id" in assert_error(r, 422)["errors"]


def test_instructor_cannot_create_for_someone_else(client, school):
    own = new_course(client, school.headers["instructor"], instructor_id=school.ids["instructor"])
    assert own["instructor_id"] == school.ids["instructor"]
    r = client.post(
        f"{API}/courses",
        json={"title": "x", "instructor_id": school.ids["other"]},
        headers=school.headers["instructor"],
    )
    assert_error(r, 403)


@pytest.mark.parametrize(("role", "code"), [("student", 403), ("anonymous", 401)])
def test_create_course_roles(client, school, role, code):
    assert_error(
        client.post(f"{API}/courses", json={"title": "x"}, headers=school.headers[role]), code
    )


def test_no_token_is_401_even_with_a_bad_body(client, school):
    r = client.post(f"{API}/courses", json={"nope": 1}, headers=school.headers["anonymous"])
    assert_error(r, 401)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "t" * 201}, "title"),
        ({"title": None}, "title"),
        ({"title": "t\x00"}, "title"),
        ({"title": "ok", "description": "d" * 10_001}, "description"),
        ({"title": "ok", "description": None}, "description"),
        ({"title": "ok", "difficulty_level": "expert"}, "difficulty_level"),
        ({"title": "ok", "estimated_hours": -1}, "estimated_hours"),
        ({"title": "ok", "estimated_hours": 100_001}, "estimated_hours"),
        ({"title": "ok", "estimated_hours": "5"}, "estimated_hours"),
        ({"title": "ok", "estimated_hours": 1.5}, "estimated_hours"),
        ({"title": "ok", "thumbnail_url": "ftp://example.test/a.png"}, "thumbnail_url"),
        ({"title": "ok", "thumbnail_url": "not a url"}, "thumbnail_url"),
        ({"title": "ok", "thumbnail_url": "https://x.test/" + "a" * 2048}, "thumbnail_url"),
        ({"title": "ok", "category_id": 0}, "category_id"),
        ({"title": "ok", "category_id": "1"}, "category_id"),
        ({"title": "ok", "category_id": 2**63}, "category_id"),
        ({"title": "ok", "is_published": "yes"}, "is_published"),
        ({"title": "ok", "is_published": 1}, "is_published"),
        ({"title": "ok", "is_archived": True}, "is_archived"),
        ({"title": "ok", "unknown": 1}, "unknown"),
    ],
)
def test_create_course_validation(client, school, body, field):
    r = client.post(f"{API}/courses", json=body, headers=school.headers["instructor"])
    assert field in assert_error(r, 422)["errors"]


def test_create_course_unknown_category_is_422(client, school):
    r = client.post(
        f"{API}/courses",
        json={"title": "ok", "category_id": 987_654_321},
        headers=school.headers["instructor"],
    )
    assert assert_error(r, 422)["errors"] == {"category_id": ["no such category"]}


def test_lone_surrogate_is_422(client, school):
    r = client.post(
        f"{API}/courses",
        data='{"title": "bad \\ud800 text"}',
        content_type="application/json",
        headers=school.headers["instructor"],
    )
    assert "title" in assert_error(r, 422)["errors"]


@pytest.mark.parametrize(
    ("data", "code"), [('{"title": ', 400), ("{'title': 'x'}", 400), ("[1, 2]", 422), ('"x"', 422)]
)
def test_malformed_or_non_object_json(client, school, data, code):
    r = client.post(
        f"{API}/courses",
        data=data,
        content_type="application/json",
        headers=school.headers["admin"],
    )
    assert_error(r, code)


# --- course detail ---------------------------------------------------------------


def test_course_detail_visibility(app, client, school, category):
    owner = school.headers["instructor"]
    course = new_course(client, owner, category_id=category["id"], description="About it")
    shown = new_lesson(client, owner, course["id"], title="Shown", order_index=2)
    hidden = new_lesson(
        client, owner, course["id"], title="Hidden", order_index=1, is_published=False
    )
    first = new_lesson(client, owner, course["id"], title="First", order_index=0)
    url = f"{API}/courses/{course['id']}"

    # Unpublished: only the owner and admins see it at all.
    for role in ("student", "other"):
        assert_error(client.get(url, headers=school.headers[role]), 404)
    for role in ("instructor", "admin"):
        r = client.get(url, headers=school.headers[role])
        assert r.status_code == 200
        assert [lesson["id"] for lesson in r.get_json()["lessons"]] == [
            first["id"],
            hidden["id"],
            shown["id"],
        ]

    client.patch(url, json={"is_published": True}, headers=owner)
    r = client.get(url, headers=school.headers["student"])
    assert r.status_code == 200
    body = r.get_json()
    assert set(body) == COURSE_KEYS | {"lessons", "category", "instructor"}
    assert body["category"] == category
    assert body["instructor"] == {"id": school.ids["instructor"], "name": "Ada Instructor"}
    assert body["total_lessons"] == 2
    assert body["lessons"] == [
        {"id": first["id"], "title": "First", "order_index": 0, "is_published": True},
        {"id": shown["id"], "title": "Shown", "order_index": 2, "is_published": True},
    ]
    # Another instructor is a reader here: published lessons only.
    r = client.get(url, headers=school.headers["other"])
    assert [lesson["id"] for lesson in r.get_json()["lessons"]] == [first["id"], shown["id"]]

    assert client.delete(url, headers=owner).status_code == 204
    assert_error(client.get(url, headers=school.headers["student"]), 404)
    r = client.get(url, headers=owner)
    assert r.status_code == 200 and r.get_json()["is_archived"] is True


def test_course_detail_without_category_or_instructor(app, client, school):
    course = new_course(client, school.headers["admin"], is_published=True)
    with app.app_context(), tenant_scope(school.tenant):
        db.session.execute(
            Course.__table__.update().where(Course.id == course["id"]).values(instructor_id=None)
        )
        db.session.commit()
    body = client.get(f"{API}/courses/{course['id']}", headers=school.headers["student"]).get_json()
    assert body["category"] is None and body["instructor"] is None
    assert body["lessons"] == []


@pytest.mark.parametrize("course_id", ["987654321", HUGE_ID, "0", "-1", "abc"])
def test_course_detail_unknown_is_404(client, school, course_id):
    assert_error(client.get(f"{API}/courses/{course_id}", headers=school.headers["admin"]), 404)


def test_course_detail_needs_a_token(client, school):
    course = new_course(client, school.headers["instructor"], is_published=True)
    assert_error(
        client.get(f"{API}/courses/{course['id']}", headers=school.headers["anonymous"]), 401
    )


@pytest.mark.parametrize("n_lessons", [1, 50])
def test_course_detail_query_budget(app, client, school, count_queries, n_lessons):
    course = new_course(client, school.headers["instructor"], is_published=True)
    with app.app_context(), tenant_scope(school.tenant):
        db.session.add_all(
            Lesson(course_id=course["id"], title=f"L{i}", order_index=i) for i in range(n_lessons)
        )
        db.session.commit()
    url = f"{API}/courses/{course['id']}"
    headers = school.headers["student"]
    assert client.get(f"{API}/me", headers=headers).status_code == 200  # warms the auth state
    # Course + category + instructor, then the outline; then nothing: the detail is
    # cached (written straight to the tables above, the lessons bumped nothing).
    for expected in (2, 0):
        with count_queries() as q:
            r = client.get(url, headers=headers)
        assert r.status_code == 200 and len(r.get_json()["lessons"]) == n_lessons
        assert q.count == expected, q.statements


# --- updating and archiving courses ----------------------------------------------


def test_patch_course(client, school, category):
    course = new_course(client, school.headers["instructor"])
    url = f"{API}/courses/{course['id']}"
    changes = {
        "title": "Renamed",
        "description": "New text",
        "category_id": category["id"],
        "difficulty_level": "intermediate",
        "estimated_hours": 3,
        "thumbnail_url": "http://img.example.test/x.jpg",
        "is_published": True,
    }
    r = client.patch(url, json=changes, headers=school.headers["instructor"])
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert {key: body[key] for key in changes} == changes
    # Strictly later: `>=` would pass with no bump at all.
    assert datetime.fromisoformat(body["updated_at"]) > datetime.fromisoformat(course["updated_at"])

    r = client.patch(
        url, json={"category_id": None, "thumbnail_url": None}, headers=school.headers["admin"]
    )
    assert r.status_code == 200
    assert r.get_json()["category_id"] is None and r.get_json()["thumbnail_url"] is None

    r = client.patch(url, json={}, headers=school.headers["instructor"])
    assert r.status_code == 200 and r.get_json()["title"] == "Renamed"


@pytest.mark.parametrize(
    ("role", "code"), [("other", 403), ("student", 403), ("anonymous", 401), ("admin", 200)]
)
def test_patch_course_roles(client, school, role, code):
    course = new_course(client, school.headers["instructor"])
    r = client.patch(
        f"{API}/courses/{course['id']}", json={"title": "Mine"}, headers=school.headers[role]
    )
    assert r.status_code == code, r.get_json()


@pytest.mark.parametrize("course_id", ["987654321", HUGE_ID])
def test_patch_and_delete_unknown_course(client, school, course_id):
    url = f"{API}/courses/{course_id}"
    assert_error(client.patch(url, json={"title": "x"}, headers=school.headers["admin"]), 404)
    assert_error(client.delete(url, headers=school.headers["instructor"]), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": None}, "title"),
        ({"title": ""}, "title"),
        ({"difficulty_level": None}, "difficulty_level"),
        ({"estimated_hours": -5}, "estimated_hours"),
        ({"category_id": 987_654_321}, "category_id"),
        ({"is_published": None}, "is_published"),
        ({"total_lessons": 5}, "total_lessons"),
    ],
)
def test_patch_course_validation(client, school, body, field):
    course = new_course(client, school.headers["instructor"])
    r = client.patch(
        f"{API}/courses/{course['id']}", json=body, headers=school.headers["instructor"]
    )
    assert field in assert_error(r, 422)["errors"]


def test_admin_hands_a_course_to_another_instructor(client, school):
    course = new_course(client, school.headers["instructor"])
    url = f"{API}/courses/{course['id']}"
    r = client.patch(
        url, json={"instructor_id": school.ids["other"]}, headers=school.headers["instructor"]
    )
    assert_error(r, 403)
    r = client.patch(
        url, json={"instructor_id": school.ids["student"]}, headers=school.headers["admin"]
    )
    assert "instructor_id" in assert_error(r, 422)["errors"]
    r = client.patch(
        url, json={"instructor_id": school.ids["other"]}, headers=school.headers["admin"]
    )
    assert r.status_code == 200 and r.get_json()["instructor_id"] == school.ids["other"]
    # The previous instructor no longer manages it; the new one does.
    assert_error(client.patch(url, json={"title": "x"}, headers=school.headers["instructor"]), 403)
    assert (
        client.patch(url, json={"title": "y"}, headers=school.headers["other"]).status_code == 200
    )


@pytest.mark.parametrize(
    ("role", "code"),
    [("other", 403), ("student", 403), ("anonymous", 401), ("instructor", 204), ("admin", 204)],
)
def test_archive_course_roles(app, client, school, role, code):
    course = new_course(client, school.headers["instructor"], is_published=True)
    r = client.delete(f"{API}/courses/{course['id']}", headers=school.headers[role])
    assert r.status_code == code
    assert course_row(app, school.tenant, course["id"]).is_archived is (code == 204)
    if code == 204:
        assert r.get_data() == b""
        # Archiving twice is fine: the course simply stays archived.
        again = client.delete(f"{API}/courses/{course['id']}", headers=school.headers[role])
        assert again.status_code == 204


# --- lessons ---------------------------------------------------------------------


def test_create_lessons_appends_and_counts(app, client, school):
    owner = school.headers["instructor"]
    course = new_course(client, owner)
    first = new_lesson(client, owner, course["id"], title=" Welcome ", content="Hello")
    assert set(first) == LESSON_KEYS
    assert first["title"] == "Welcome" and first["content"] == "Hello"
    assert first["course_id"] == course["id"]
    assert first["order_index"] == 0 and first["is_published"] is True
    assert new_lesson(client, owner, course["id"])["order_index"] == 1
    assert new_lesson(client, owner, course["id"], order_index=10)["order_index"] == 10
    assert new_lesson(client, owner, course["id"])["order_index"] == 11
    draft = new_lesson(client, owner, course["id"], is_published=False)
    assert draft["content"] == "" and draft["order_index"] == 12
    assert total_lessons(app, school.tenant, course["id"]) == 4
    # The admin may add lessons to anyone's course.
    new_lesson(client, school.headers["admin"], course["id"])
    assert total_lessons(app, school.tenant, course["id"]) == 5


def test_total_lessons_follows_publish_changes_and_deletes(app, client, school):
    owner = school.headers["instructor"]
    course = new_course(client, owner)
    a = new_lesson(client, owner, course["id"])
    b = new_lesson(client, owner, course["id"], is_published=False)
    assert total_lessons(app, school.tenant, course["id"]) == 1

    def patch(lesson, **changes):
        r = client.patch(f"{API}/lessons/{lesson['id']}", json=changes, headers=owner)
        assert r.status_code == 200, r.get_json()
        return r.get_json()

    assert patch(b, is_published=True)["is_published"] is True
    assert total_lessons(app, school.tenant, course["id"]) == 2
    patch(a, is_published=False)
    assert total_lessons(app, school.tenant, course["id"]) == 1
    patched = patch(a, title="Renamed", content="Body", order_index=7)
    assert (patched["title"], patched["content"], patched["order_index"]) == ("Renamed", "Body", 7)
    assert total_lessons(app, school.tenant, course["id"]) == 1
    assert patch(a)["title"] == "Renamed"  # an empty PATCH changes nothing

    assert client.delete(f"{API}/lessons/{b['id']}", headers=owner).status_code == 204
    assert total_lessons(app, school.tenant, course["id"]) == 0
    assert client.delete(f"{API}/lessons/{a['id']}", headers=owner).status_code == 204
    assert total_lessons(app, school.tenant, course["id"]) == 0
    assert_error(client.patch(f"{API}/lessons/{a['id']}", json={}, headers=owner), 404)


def test_total_lessons_drift_is_repaired_by_the_next_write(app, client, school):
    owner = school.headers["instructor"]
    course = new_course(client, owner)
    new_lesson(client, owner, course["id"])
    with app.app_context(), tenant_scope(school.tenant):
        db.session.execute(
            Course.__table__.update().where(Course.id == course["id"]).values(total_lessons=42)
        )
        db.session.commit()
    new_lesson(client, owner, course["id"])
    assert total_lessons(app, school.tenant, course["id"]) == 2


@pytest.mark.parametrize(
    ("role", "code"),
    [("other", 403), ("student", 403), ("anonymous", 401), ("admin", 201), ("instructor", 201)],
)
def test_create_lesson_roles(client, school, role, code):
    course = new_course(client, school.headers["instructor"])
    r = client.post(
        f"{API}/courses/{course['id']}/lessons", json={"title": "L"}, headers=school.headers[role]
    )
    assert r.status_code == code, r.get_json()


@pytest.mark.parametrize(
    ("role", "patch_code", "delete_code"),
    [
        ("other", 403, 403),
        ("student", 403, 403),
        ("anonymous", 401, 401),
        ("admin", 200, 204),
        ("instructor", 200, 204),
    ],
)
def test_lesson_write_roles(client, school, role, patch_code, delete_code):
    course = new_course(client, school.headers["instructor"])
    lesson = new_lesson(client, school.headers["instructor"], course["id"])
    url = f"{API}/lessons/{lesson['id']}"
    assert (
        client.patch(url, json={"title": "T"}, headers=school.headers[role]).status_code
        == patch_code
    )
    assert client.delete(url, headers=school.headers[role]).status_code == delete_code


@pytest.mark.parametrize("object_id", ["987654321", HUGE_ID])
def test_lessons_of_unknown_things_are_404(client, school, object_id):
    admin = school.headers["admin"]
    r = client.post(f"{API}/courses/{object_id}/lessons", json={"title": "L"}, headers=admin)
    assert_error(r, 404)
    assert_error(
        client.patch(f"{API}/lessons/{object_id}", json={"title": "T"}, headers=admin), 404
    )
    assert_error(client.delete(f"{API}/lessons/{object_id}", headers=admin), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": " "}, "title"),
        ({"title": "t" * 201}, "title"),
        ({"title": "ok", "content": "c" * 1_000_001}, "content"),
        ({"title": "ok", "content": "a\x00b"}, "content"),
        ({"title": "ok", "order_index": -1}, "order_index"),
        ({"title": "ok", "order_index": "1"}, "order_index"),
        ({"title": "ok", "order_index": 2**31}, "order_index"),
        ({"title": "ok", "is_published": "false"}, "is_published"),
        ({"title": "ok", "course_id": 1}, "course_id"),
    ],
)
def test_lesson_validation(client, school, body, field):
    course = new_course(client, school.headers["instructor"])
    r = client.post(
        f"{API}/courses/{course['id']}/lessons", json=body, headers=school.headers["instructor"]
    )
    assert field in assert_error(r, 422)["errors"]


def test_lesson_content_at_the_limit(client, school):
    course = new_course(client, school.headers["instructor"])
    content = "word " * 200_000
    lesson = new_lesson(client, school.headers["instructor"], course["id"], content=content)
    assert len(lesson["content"]) == 1_000_000


def test_delete_lesson_with_progress_is_409(app, client, school):
    owner = school.headers["instructor"]
    course = new_course(client, owner, is_published=True)
    lesson = new_lesson(client, owner, course["id"])
    with app.app_context(), tenant_scope(school.tenant):
        db.session.add(Enrollment(user_id=school.ids["student"], course_id=course["id"]))
        db.session.add(
            LessonProgress(
                user_id=school.ids["student"],
                lesson_id=lesson["id"],
                course_id=course["id"],
                progress_percentage=40,
            )
        )
        db.session.commit()
    r = client.delete(f"{API}/lessons/{lesson['id']}", headers=school.headers["admin"])
    assert "unpublish" in assert_error(r, 409)["message"]
    assert total_lessons(app, school.tenant, course["id"]) == 1
    # Unpublishing is the way out, and it keeps the learner's progress.
    r = client.patch(f"{API}/lessons/{lesson['id']}", json={"is_published": False}, headers=owner)
    assert r.status_code == 200
    assert total_lessons(app, school.tenant, course["id"]) == 0
    with app.app_context(), tenant_scope(school.tenant):
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(LessonProgress)
                .where(LessonProgress.lesson_id == lesson["id"])
            )
            == 1
        )


def test_concurrent_lesson_creates_keep_the_count(app, school):
    """Two writers at once: the course lock serialises them, so nothing is lost."""
    owner = school.headers["instructor"]
    client = app.test_client()
    course = new_course(client, owner)
    rounds, writers = 5, 2
    results: list[dict] = []
    errors: list[BaseException] = []

    def write(barrier: threading.Barrier) -> None:
        try:
            with app.app_context():
                own_client = app.test_client()
                barrier.wait(timeout=10)
                r = own_client.post(
                    f"{API}/courses/{course['id']}/lessons", json={"title": "T"}, headers=owner
                )
                assert r.status_code == 201, r.get_json()
                results.append(r.get_json())
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    for _ in range(rounds):
        barrier = threading.Barrier(writers)
        threads = [threading.Thread(target=write, args=(barrier,)) for _ in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors, errors
    assert len(results) == rounds * writers
    assert sorted(lesson["order_index"] for lesson in results) == list(range(rounds * writers))
    assert total_lessons(app, school.tenant, course["id"]) == rounds * writers


# --- the catalog -----------------------------------------------------------------


def test_catalog_lists_published_courses_newest_first(app, client, make_tenant):
    school = make_school(app, make_tenant())
    owner = school.headers["instructor"]
    a = new_course(client, owner, is_published=True, title="A")
    new_course(client, owner, is_published=False, title="Draft")
    archived = new_course(client, owner, is_published=True, title="Archived")
    b = new_course(client, owner, is_published=True, title="B", difficulty_level="advanced")
    client.delete(f"{API}/courses/{archived['id']}", headers=owner)
    new_lesson(client, owner, b["id"])

    r = client.get(f"{API}/courses", headers=school.headers["student"])
    assert r.status_code == 200
    body = r.get_json()
    assert body["next_cursor"] is None
    assert [item["id"] for item in body["items"]] == [b["id"], a["id"]]
    item = body["items"][0]
    assert set(item) == CATALOG_ITEM_KEYS
    assert item["total_lessons"] == 1 and item["difficulty_level"] == "advanced"
    assert item["instructor_id"] == school.ids["instructor"]
    assert item["is_enrolled"] is False and item["progress_percentage"] == 0


def test_catalog_json_equals_the_documented_schema(app, client, make_tenant):
    """The catalog skips marshmallow for speed; its body must still be exactly what
    CatalogPageSchema (the OpenAPI document) would produce."""
    from lms_app.catalog import queries
    from lms_app.catalog.schemas import CatalogPageSchema

    school = make_school(app, make_tenant())
    owner = school.headers["instructor"]
    for title in ("One", "Two", "Three"):
        course = new_course(client, owner, is_published=True, title=title)
        new_lesson(client, owner, course["id"])
    r = client.get(f"{API}/courses?limit=2", headers=school.headers["student"])
    with app.app_context(), tenant_scope(school.tenant):
        items, next_cursor = queries.catalog_page(
            school.ids["student"], limit=2, after=None, category_id=None, difficulty_level=None
        )
        documented = CatalogPageSchema().dump({"items": items, "next_cursor": next_cursor})
    assert r.get_json() == json.loads(json.dumps(documented))


def test_catalog_filters(app, client, make_tenant):
    tenant = make_tenant()
    school = make_school(app, tenant)
    with app.app_context(), tenant_scope(tenant):
        cats = [Category(name="One", slug="one"), Category(name="Two", slug="two")]
        db.session.add_all(cats)
        db.session.commit()
        one, two = cats[0].id, cats[1].id
    in_one = insert_courses(app, tenant, 7, category_id=one, difficulty_level="advanced")
    in_two = insert_courses(app, tenant, 4, category_id=two)
    headers = school.headers["student"]

    got = walk_catalog(client, headers, category_id=one, limit=3)
    assert [item["id"] for item in got] == sorted(in_one, reverse=True)
    got = walk_catalog(client, headers, difficulty_level="beginner", limit=3)
    assert [item["id"] for item in got] == sorted(in_two, reverse=True)
    got = walk_catalog(client, headers, difficulty_level="advanced", category_id=two)
    assert got == []
    got = walk_catalog(client, headers, category_id=987_654_321)
    assert got == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "WzEsMl0"}, "cursor"),  # valid base64 JSON, wrong shape
        ({"category_id": "abc"}, "category_id"),
        ({"category_id": "0"}, "category_id"),
        ({"category_id": HUGE_ID}, "category_id"),
        ({"difficulty_level": "expert"}, "difficulty_level"),
    ],
)
def test_catalog_bad_query(client, school, query, field):
    r = client.get(f"{API}/courses", query_string=query, headers=school.headers["student"])
    assert field in assert_error(r, 422)["errors"]


def test_catalog_needs_a_token(client, school):
    assert_error(client.get(f"{API}/courses", headers=school.headers["anonymous"]), 401)


def test_catalog_pagination_walks_every_course_once(app, client, make_tenant):
    tenant = make_tenant()
    school = make_school(app, tenant)
    ids = insert_courses(app, tenant, 17)
    # Courses created in one transaction share created_at: the id breaks the tie.
    with app.app_context(), tenant_scope(tenant):
        same_time = [
            Course(title=f"Same {i}", is_published=True, created_at=datetime.now(UTC))
            for i in range(6)
        ]
        for row in same_time[1:]:
            row.created_at = same_time[0].created_at
        db.session.add_all(same_time)
        db.session.commit()
        ids += [row.id for row in same_time]
    for limit in (1, 5, 23, 100):
        got = walk_catalog(client, school.headers["student"], limit=limit)
        assert len(got) == len(ids) == len({item["id"] for item in got})
        keys = [(item["created_at"], item["id"]) for item in got]
        assert keys == sorted(keys, reverse=True)


@pytest.mark.parametrize("n_courses", [1, 50])
def test_catalog_query_budget(app, client, make_tenant, count_queries, n_courses):
    tenant = make_tenant()
    school = make_school(app, tenant)
    course_ids = insert_courses(app, tenant, n_courses)
    with app.app_context(), tenant_scope(tenant):
        # Give the user an overlay worth computing on every course of the page.
        lessons = []
        for course_id in course_ids:
            lesson = Lesson(course_id=course_id, title="L")
            db.session.add(lesson)
            db.session.add(Enrollment(user_id=school.ids["student"], course_id=course_id))
            lessons.append(lesson)
        db.session.flush()
        db.session.add_all(
            LessonProgress(
                user_id=school.ids["student"],
                lesson_id=lesson.id,
                course_id=lesson.course_id,
                progress_percentage=100,
            )
            for lesson in lessons
        )
        db.session.execute(Course.__table__.update().values(total_lessons=1))
        db.session.commit()
    headers = school.headers["student"]
    assert client.get(f"{API}/courses", headers=headers).status_code == 200  # warm auth cache
    with count_queries() as q:
        r = client.get(f"{API}/courses", query_string={"limit": 50}, headers=headers)
    items = r.get_json()["items"]
    assert len(items) == n_courses
    assert all(item["is_enrolled"] and item["progress_percentage"] == 100 for item in items)
    assert q.count == 1, q.statements  # page (not cached yet) with the overlay

    # An empty page costs one statement: there is nothing to overlay.
    with count_queries() as q:
        r = client.get(f"{API}/courses", query_string={"category_id": 987_654}, headers=headers)
    assert r.get_json()["items"] == []
    assert q.count == 1, q.statements


SEED_CATALOG_SQL = """
SELECT c.id, (e.user_id IS NOT NULL) AS is_enrolled,
       COALESCE(ROUND(COUNT(lp.lesson_id) FILTER (WHERE lp.progress_percentage = 100)::numeric
                      / NULLIF(c.total_lessons, 0) * 100, 2), 0) AS progress_percentage
FROM {schema}.courses c
LEFT JOIN {schema}.enrollments e ON c.id = e.course_id AND e.user_id = :u
LEFT JOIN {schema}.lesson_progress lp ON c.id = lp.course_id AND lp.user_id = :u
WHERE c.is_published AND NOT c.is_archived
GROUP BY c.id, e.user_id
ORDER BY c.created_at DESC, c.id DESC
"""


def test_catalog_matches_the_seed_sql(app, client, make_tenant):
    """Same rows, order, enrollment flags and percentages as the (corrected) seed query.

    The data keeps to where the two agree by definition: enrollments are active or
    completed (the seed counts any row), progress only on published lessons.
    """
    tenant = make_tenant()
    school = make_school(app, tenant)
    student = school.ids["student"]
    owner = school.headers["instructor"]
    # lessons per course, published lessons the student completed, other progress
    plan = [
        (3, 1, [50]),  # 33.33
        (3, 2, []),  # 66.67
        (3, 3, []),  # 100
        (0, 0, []),  # no lessons: 0, not an error
        (7, 1, [99, 10]),  # 14.29
        (6, 1, []),  # 16.67
        (8, 1, []),  # 12.5
        (1, 0, [0]),
        (2, 0, []),
    ]
    statuses = ["active", "completed", "active", "active", None, "active", "completed", "active"]
    course_ids = []
    for index, (n_lessons, done, partial) in enumerate(plan):
        course = new_course(client, owner, is_published=True, title=f"Seed {index}")
        lessons = [new_lesson(client, owner, course["id"]) for _ in range(n_lessons)]
        course_ids.append(course["id"])
        with app.app_context(), tenant_scope(tenant):
            status = statuses[index] if index < len(statuses) else None
            if status is not None:
                db.session.add(Enrollment(user_id=student, course_id=course["id"], status=status))
            percentages = [100] * done + partial
            for lesson, percentage in zip(lessons, percentages, strict=False):
                db.session.add(
                    LessonProgress(
                        user_id=student,
                        lesson_id=lesson["id"],
                        course_id=course["id"],
                        progress_percentage=percentage,
                    )
                )
            db.session.commit()
    # Someone else's progress and enrollments must not leak into the student's view.
    other_student = add_user(app, tenant, "student")
    with app.app_context(), tenant_scope(tenant):
        db.session.add(Enrollment(user_id=other_student, course_id=course_ids[-1]))
        db.session.commit()
    new_course(client, owner, is_published=False)

    api_rows = [
        (item["id"], item["is_enrolled"], item["progress_percentage"])
        for item in walk_catalog(client, school.headers["student"], limit=4)
    ]
    with app.app_context(), tenant_scope(tenant):
        seed = db.session.execute(
            text(SEED_CATALOG_SQL.format(schema=f'"{tenant.schema_name}"')), {"u": student}
        ).all()
    seed_rows = [(row.id, row.is_enrolled, float(row.progress_percentage)) for row in seed]
    assert api_rows == seed_rows
    by_id = {row[0]: row for row in api_rows}
    assert [by_id[cid][2] for cid in course_ids] == [
        33.33,
        66.67,
        100.0,
        0.0,
        14.29,
        16.67,
        12.5,
        0.0,
        0.0,
    ]
    assert isinstance(seed[0].progress_percentage, Decimal)


def test_catalog_overlay_edges(app, client, make_tenant):
    """Dropped enrollments are not enrolled; unpublished lessons do not count."""
    tenant = make_tenant()
    school = make_school(app, tenant)
    owner = school.headers["instructor"]
    student = school.ids["student"]
    course = new_course(client, owner, is_published=True)
    lessons = [new_lesson(client, owner, course["id"]) for _ in range(4)]
    with app.app_context(), tenant_scope(tenant):
        db.session.add(Enrollment(user_id=student, course_id=course["id"], status="dropped"))
        db.session.add_all(
            LessonProgress(
                user_id=student,
                lesson_id=lesson["id"],
                course_id=course["id"],
                progress_percentage=100,
            )
            for lesson in lessons[:3]
        )
        db.session.commit()
    item = walk_catalog(client, school.headers["student"])[0]
    assert item["is_enrolled"] is False
    assert item["progress_percentage"] == 75.0

    r = client.patch(
        f"{API}/lessons/{lessons[0]['id']}", json={"is_published": False}, headers=owner
    )
    assert r.status_code == 200
    item = walk_catalog(client, school.headers["student"])[0]
    assert item["total_lessons"] == 3
    assert item["progress_percentage"] == pytest.approx(66.67)

    with app.app_context(), tenant_scope(tenant):
        db.session.execute(
            Enrollment.__table__.update()
            .where(Enrollment.user_id == student)
            .values(status="completed")
        )
        db.session.commit()
    assert walk_catalog(client, school.headers["student"])[0]["is_enrolled"] is True
    # Another user sees their own (empty) overlay on the same page.
    item = walk_catalog(client, school.headers["other"])[0]
    assert item["is_enrolled"] is False and item["progress_percentage"] == 0


# --- tenant isolation ------------------------------------------------------------


def test_tenant_isolation(app, client, make_tenant):
    a_tenant, b_tenant = make_tenant(), make_tenant()
    a, b = make_school(app, a_tenant), make_school(app, b_tenant)
    b_course = new_course(client, b.headers["instructor"], is_published=True, title="B secret")
    b_lesson = new_lesson(client, b.headers["instructor"], b_course["id"], title="B lesson")
    # Enough courses in A that its newest ids do not exist in B.
    for _ in range(3):
        new_course(client, a.headers["instructor"], is_published=True, title="A course")
    a_course = new_course(client, a.headers["instructor"], is_published=True, title="A course")
    a_lessons = [new_lesson(client, a.headers["instructor"], a_course["id"]) for _ in range(3)]
    a_lesson = a_lessons[-1]
    assert a_course["id"] > b_course["id"] and a_lesson["id"] > b_lesson["id"]

    # A's tokens are not tokens in B.
    for role in ("admin", "instructor", "student"):
        foreign = {"X-Tenant": b_tenant.slug, "Authorization": a.headers[role]["Authorization"]}
        calls = [
            client.get(f"{API}/categories", headers=foreign),
            client.post(f"{API}/categories", json={"name": "x", "slug": "x"}, headers=foreign),
            client.get(f"{API}/courses", headers=foreign),
            client.post(f"{API}/courses", json={"title": "x"}, headers=foreign),
            client.get(f"{API}/courses/{b_course['id']}", headers=foreign),
            client.patch(f"{API}/courses/{b_course['id']}", json={"title": "x"}, headers=foreign),
            client.delete(f"{API}/courses/{b_course['id']}", headers=foreign),
            client.post(
                f"{API}/courses/{b_course['id']}/lessons", json={"title": "x"}, headers=foreign
            ),
            client.patch(f"{API}/lessons/{b_lesson['id']}", json={"title": "x"}, headers=foreign),
            client.delete(f"{API}/lessons/{b_lesson['id']}", headers=foreign),
            client.get(f"{API}/search", query_string={"q": "secret"}, headers=foreign),
        ]
        for r in calls:
            assert_error(r, 401)
            assert b"B secret" not in r.get_data()

    # B's own admin asking for A's ids finds nothing of A's (and nothing of B's).
    b_admin = b.headers["admin"]
    assert_error(client.get(f"{API}/courses/{a_course['id']}", headers=b_admin), 404)
    assert_error(
        client.patch(f"{API}/courses/{a_course['id']}", json={"title": "x"}, headers=b_admin), 404
    )
    assert_error(client.delete(f"{API}/courses/{a_course['id']}", headers=b_admin), 404)
    r = client.post(f"{API}/courses/{a_course['id']}/lessons", json={"title": "x"}, headers=b_admin)
    assert_error(r, 404)
    assert_error(
        client.patch(f"{API}/lessons/{a_lesson['id']}", json={"title": "x"}, headers=b_admin), 404
    )
    assert_error(client.delete(f"{API}/lessons/{a_lesson['id']}", headers=b_admin), 404)

    # Each catalog shows its own school only; nothing above changed either school.
    b_titles = [item["title"] for item in walk_catalog(client, b.headers["student"])]
    assert b_titles == ["B secret"]
    a_titles = {item["title"] for item in walk_catalog(client, a.headers["student"])}
    assert a_titles == {"A course"}
    assert course_row(app, a_tenant, a_course["id"]).title == "A course"
    assert total_lessons(app, a_tenant, a_course["id"]) == 3
    assert total_lessons(app, b_tenant, b_course["id"]) == 1


def test_login_token_works_end_to_end(app, client, school):
    """The catalog with a token from POST /auth/token (the other tests mint tokens)."""
    headers = login(client, school.tenant, user_email(app, school.tenant, school.ids["student"]))
    assert client.get(f"{API}/courses", headers=headers).status_code == 200
    admin = login(client, school.tenant, f"admin@{school.tenant.slug}.test", ADMIN_PASSWORD)
    assert client.get(f"{API}/categories", headers=admin).status_code == 200


def test_openapi_documents_the_catalog(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/courses"])
    assert {"get", "patch", "delete"} <= set(paths["/api/v1/courses/{course_id}"])
    assert "post" in paths["/api/v1/courses/{course_id}/lessons"]
    assert {"patch", "delete"} <= set(paths["/api/v1/lessons/{lesson_id}"])
    assert {"get", "post"} <= set(paths["/api/v1/categories"])
    assert "get" in paths["/api/v1/search"]
