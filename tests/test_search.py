"""GET /search: PostgreSQL full text over published courses and their published lessons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from lms_app.accounts.auth import issue_token
from lms_app.accounts.models import User
from lms_app.catalog.models import Course, Lesson
from lms_app.extensions import db
from lms_app.tenancy.context import TenantInfo, tenant_scope
from tests.conftest import add_user, tenant_headers

SEARCH = "/api/v1/search"
ITEM_KEYS = {
    "id",
    "title",
    "description",
    "difficulty_level",
    "category_id",
    "total_lessons",
    "rank",
}
LESSON_ONLY_RANK = 0.25


@dataclass
class World:
    tenant: TenantInfo
    headers: dict[str, dict[str, str]]
    ids: dict[str, int]


def headers_for(app: Flask, tenant: TenantInfo, user_id: int) -> dict[str, str]:
    with app.app_context(), tenant_scope(tenant):
        version = db.session.scalar(select(User.token_version).where(User.id == user_id))
        token, _ = issue_token(user_id, version)
    return tenant_headers(tenant, token)


def add_course(
    tenant: TenantInfo,
    title: str,
    description: str = "",
    *,
    lessons: tuple[tuple[str, str, bool], ...] = (),
    published: bool = True,
    archived: bool = False,
    created_at: datetime | None = None,
) -> int:
    """A course and its lessons (title, content, published); call inside app_context."""
    with tenant_scope(tenant):
        course = Course(
            title=title,
            description=description,
            is_published=published,
            is_archived=archived,
            total_lessons=sum(1 for *_, shown in lessons if shown),
        )
        if created_at is not None:
            course.created_at = created_at
        db.session.add(course)
        db.session.flush()
        db.session.add_all(
            Lesson(
                course_id=course.id, title=lt, content=content, order_index=i, is_published=shown
            )
            for i, (lt, content, shown) in enumerate(lessons)
        )
        db.session.commit()
        return course.id


@pytest.fixture(scope="module")
def world(app, make_tenant) -> World:
    tenant = make_tenant()
    ids: dict[str, int] = {}
    with app.app_context():
        ids["title"] = add_course(tenant, "Photosynthesis basics", "How plants eat light.")
        ids["description"] = add_course(
            tenant, "Garden care", "Watering, soil, and a word on photosynthesis."
        )
        ids["lesson"] = add_course(
            tenant,
            "Biology 101",
            "Cells and life.",
            lessons=(
                ("Chlorophyll", "Photosynthesis happens in the leaves.", True),
                ("Light", "More photosynthesis: the light reactions.", True),
                ("Dark", "And the photosynthesis dark reactions.", True),
            ),
        )
        ids["hidden_lesson"] = add_course(
            tenant,
            "Botany",
            "Plants in general.",
            lessons=(("Draft", "zygomorphic flowers, coming soon", False),),
        )
        ids["unpublished"] = add_course(tenant, "Photosynthesis secrets", published=False)
        ids["archived"] = add_course(tenant, "Photosynthesis archive", archived=True)
        ids["french"] = add_course(tenant, "Café crème brûlée", "Pâtisserie française.")
        ids["japanese"] = add_course(tenant, "日本語の授業", "初心者向け")
    headers = {
        role: headers_for(app, tenant, add_user(app, tenant, role))
        for role in ("student", "instructor", "admin")
    }
    headers["anonymous"] = tenant_headers(tenant)
    return World(tenant, headers, ids)


def search(client, world: World, q: str, role: str = "student", **params) -> list[dict]:
    r = client.get(SEARCH, query_string={"q": q, **params}, headers=world.headers[role])
    assert r.status_code == 200, (q, r.get_json())
    body = r.get_json()
    assert body["next_cursor"] is None
    for item in body["items"]:
        assert set(item) == ITEM_KEYS
    return body["items"]


def test_ranking_title_beats_description_beats_lesson_only(client, world):
    items = search(client, world, "photosynthesis")
    assert [item["id"] for item in items] == [
        world.ids["title"],
        world.ids["description"],
        world.ids["lesson"],
    ]
    ranks = [item["rank"] for item in items]
    assert ranks[0] > ranks[1] > ranks[2] == LESSON_ONLY_RANK
    assert all(0 < rank <= 1 for rank in ranks)
    assert items[2]["total_lessons"] == 3  # three matching lessons, one result


def test_search_item_fields(client, world):
    (item,) = search(client, world, "watering soil")
    assert item["id"] == world.ids["description"]
    assert item["title"] == "Garden care"
    assert item["difficulty_level"] == "beginner"
    assert item["category_id"] is None


def test_published_only(client, world):
    found = {item["id"] for item in search(client, world, "photosynthesis", role="admin")}
    assert world.ids["unpublished"] not in found and world.ids["archived"] not in found
    assert search(client, world, "secrets") == []
    assert search(client, world, "archive") == []
    # A word that only an unpublished lesson contains finds nothing.
    assert search(client, world, "zygomorphic") == []


def test_lesson_edits_are_searchable(app, client, world, make_tenant):
    tenant = make_tenant()
    with app.app_context():
        course_id = add_course(tenant, "Cells", lessons=(("Intro", "nothing here", True),))
    headers = headers_for(app, tenant, add_user(app, tenant, "student"))
    r = client.get(SEARCH, query_string={"q": "mitochondria"}, headers=headers)
    assert r.get_json()["items"] == []
    with app.app_context(), tenant_scope(tenant):
        lesson = db.session.scalars(select(Lesson).where(Lesson.course_id == course_id)).one()
    # Through the API: the edit retires the cached results of every query.
    admin = headers_for(app, tenant, add_user(app, tenant, "admin"))
    text = "The mitochondria is the powerhouse of the cell."
    r = client.patch(f"/api/v1/lessons/{lesson.id}", json={"content": text}, headers=admin)
    assert r.status_code == 200
    r = client.get(SEARCH, query_string={"q": "mitochondria"}, headers=headers)
    assert [item["id"] for item in r.get_json()["items"]] == [course_id]


def test_stemming_and_phrases(client, world):
    # "plants" in two descriptions: stemmed to the same lexeme as "plant".
    assert {i["id"] for i in search(client, world, "plant")} == {
        world.ids["title"],
        world.ids["hidden_lesson"],
    }
    assert [i["id"] for i in search(client, world, '"photosynthesis basics"')] == [
        world.ids["title"]
    ]
    assert search(client, world, '"basics photosynthesis"') == []


def test_operators(client, world):
    either = {i["id"] for i in search(client, world, "photosynthesis OR cells")}
    assert either == {world.ids["title"], world.ids["description"], world.ids["lesson"]}
    without = {i["id"] for i in search(client, world, "photosynthesis -garden")}
    assert world.ids["title"] in without and world.ids["description"] not in without


def test_non_ascii(client, world):
    assert [i["id"] for i in search(client, world, "café")] == [world.ids["french"]]
    assert [i["id"] for i in search(client, world, "CRÈME")] == [world.ids["french"]]
    search(client, world, "日本語")  # tokenisation of CJK depends on the locale: no 500


NASTY_QUERIES = [
    '"photosynthesis basics"',
    '"unterminated phrase',
    '"',
    '""',
    "photosynthesis OR",
    "OR",
    "OR OR OR",
    "-",
    "--photosynthesis",
    "-photosynthesis",
    "photosynthesis -",
    "!!!",
    "&&& ||| !!!",
    "(((",
    ")))",
    ":*",
    "photo:*",
    "a <-> b",
    "<->",
    "foo:ABCD",
    "photosynthesis & | ! ( ) : *",
    "the",
    "the and of a",
    "'; DROP TABLE courses; --",
    "\\",
    "\\\\'",
    "%_%",
    "🙂",
    "🙂 photosynthesis",
    "ÄÖÜ ß",
    "Ωμέγα",
    "مرحبا",
    "x" * 200,
    " ".join(["photosynthesis"] * 13),
    "a" * 199 + " ",
    "1",
    "2024-01-01",
    "http://example.test/path?q=1",
    "email@example.test",
]


@pytest.mark.parametrize("q", NASTY_QUERIES)
def test_nasty_queries_never_fail(client, world, q):
    items = search(client, world, q)
    assert len(items) <= 20


def test_stop_words_and_negations_only_give_empty_results(client, world):
    assert search(client, world, "the and of") == []
    assert search(client, world, "!!!") == []
    assert search(client, world, "-photosynthesis") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"q": ""}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "x" * 201}, "q"),
        ({"q": "photo\x00synthesis"}, "q"),
        ({"q": "ok", "limit": 0}, "limit"),
        ({"q": "ok", "limit": 51}, "limit"),
        ({"q": "ok", "limit": "ten"}, "limit"),
    ],
)
def test_bad_queries_are_422(client, world, params, field):
    r = client.get(SEARCH, query_string=params, headers=world.headers["student"])
    assert r.status_code == 422, r.get_json()
    body = r.get_json()
    assert body["code"] == 422 and field in body["errors"]


def test_surrounding_whitespace_does_not_count(client, world):
    assert len(search(client, world, "   " + "x" * 200 + "   ")) == 0


@pytest.mark.parametrize(
    ("role", "code"), [("student", 200), ("instructor", 200), ("admin", 200), ("anonymous", 401)]
)
def test_search_roles(client, world, role, code):
    r = client.get(SEARCH, query_string={"q": "photosynthesis"}, headers=world.headers[role])
    assert r.status_code == code


def test_limit(client, world):
    items = search(client, world, "photosynthesis", limit=2)
    assert [i["id"] for i in items] == [world.ids["title"], world.ids["description"]]
    assert len(search(client, world, "photosynthesis", limit=1)) == 1


def test_search_is_one_statement_then_cached(client, world, count_queries):
    search(client, world, "plant")  # warms the auth state cache
    # A query no other test of the module sends (they share one school and cache).
    for expected in (1, 0):
        with count_queries() as q:
            search(client, world, "photosynthesis   basics")
        assert q.count == expected, q.statements
    with count_queries() as q:  # the same query, normalised
        search(client, world, "  PHOTOSYNTHESIS BASICS ")
    assert q.count == 0, q.statements


def test_top_results_with_many_matches(app, client, make_tenant):
    """Each half of the search stops at `limit`; the page must still be the true top.

    Own matches come first by rank; after them, courses found only through lessons,
    newest first, including ones newer than every own match and courses matching
    both ways (which count once, as own matches).
    """
    tenant = make_tenant()
    base = datetime.now(UTC) - timedelta(days=1)
    own, lesson_only = [], []
    with app.app_context():
        for i in range(30):
            when = base + timedelta(minutes=i)
            if i % 6 == 0:
                lessons = (("L", "kayak trip", True),) if i % 12 == 0 else ()
                own.append(
                    add_course(tenant, f"Kayak course {i}", lessons=lessons, created_at=when)
                )
            else:
                lessons = (("L", "we paddle a kayak", True), ("M", "kayak again", True))
                lesson_only.append(
                    add_course(tenant, f"Course {i}", lessons=lessons, created_at=when)
                )
        add_course(tenant, "Hidden kayak", published=False)
        add_course(tenant, "Draft", lessons=(("L", "kayak", False),))
    headers = headers_for(app, tenant, add_user(app, tenant, "student"))
    for limit in (3, 5, 8, 20, 50):
        r = client.get(SEARCH, query_string={"q": "kayak", "limit": limit}, headers=headers)
        items = r.get_json()["items"]
        ids = [item["id"] for item in items]
        expected_own = sorted(own, reverse=True)  # equal ranks: newest first
        expected = (expected_own + sorted(lesson_only, reverse=True))[:limit]
        assert ids == expected, limit
        assert len(ids) == len(set(ids))
        assert all(item["rank"] > 0.5 for item in items if item["id"] in own)
        assert all(item["rank"] == LESSON_ONLY_RANK for item in items if item["id"] in lesson_only)
