"""Lesson progress: single and batch writes, concurrency, course progress.

Semantics under test (API.md): progress never goes down, time_spent adds up,
completed_at is set the first time progress reaches 100 and never changes after,
and only an active enrollment may write.
"""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
from sqlalchemy import func, select, text

from lms_app.catalog.models import Lesson
from lms_app.extensions import db
from lms_app.learning.models import LessonProgress
from lms_app.tenancy.context import tenant_scope
from tests.conftest import add_user, admin_id, assert_error, headers_for, tenant_headers
from tests.test_learning_api import enroll_row, enrollment_status, make_course, progress_row


@pytest.fixture(scope="module")
def tenant(make_tenant):
    return make_tenant()


@pytest.fixture(scope="module")
def instructor(app, tenant) -> int:
    return add_user(app, tenant, "instructor")


@pytest.fixture
def learner(app, tenant, instructor):
    """(user id, headers, course id, lesson ids): an active learner of a fresh course."""
    course_id, lesson_ids = make_course(app, tenant, instructor, lessons=3, unpublished_lessons=1)
    uid = add_user(app, tenant, "student")
    enroll_row(app, tenant, uid, course_id)
    return uid, headers_for(app, tenant, uid), course_id, lesson_ids


def stored(app, tenant, user_id: int, lesson_id: int):
    with app.app_context(), tenant_scope(tenant):
        return db.session.execute(
            select(LessonProgress).where(
                LessonProgress.user_id == user_id, LessonProgress.lesson_id == lesson_id
            )
        ).scalar_one_or_none()


def progress_count(app, tenant, user_id: int) -> int:
    with app.app_context(), tenant_scope(tenant):
        return db.session.scalar(
            select(func.count())
            .select_from(LessonProgress)
            .where(LessonProgress.user_id == user_id)
        )


def put(client, headers, lesson_id, **body):
    return client.put(f"/api/v1/lessons/{lesson_id}/progress", json=body, headers=headers)


# --- PUT /lessons/<id>/progress -------------------------------------------------------


def test_put_progress_semantics(app, client, tenant, learner):
    _, h, course_id, lessons = learner
    lesson = lessons[0]

    r = put(client, h, lesson, progress_percentage=40, time_spent=60)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["lesson_id"] == lesson and body["course_id"] == course_id
    assert body["progress_percentage"] == 40 and body["time_spent"] == 60
    assert body["completed_at"] is None and body["is_completed"] is False
    assert body["updated_at"].endswith("+00:00")

    # Never down; time still adds up.
    body = put(client, h, lesson, progress_percentage=20, time_spent=30).get_json()
    assert body["progress_percentage"] == 40 and body["time_spent"] == 90

    # time_spent defaults to 0.
    body = put(client, h, lesson, progress_percentage=100).get_json()
    assert body["progress_percentage"] == 100 and body["time_spent"] == 90
    assert body["is_completed"] is True and body["completed_at"] is not None
    completed_at = body["completed_at"]

    # A later 100, or a lower value, leaves completed_at alone.
    again = put(client, h, lesson, progress_percentage=100, time_spent=5).get_json()
    assert again["completed_at"] == completed_at and again["time_spent"] == 95
    lower = put(client, h, lesson, progress_percentage=10).get_json()
    assert lower["completed_at"] == completed_at and lower["progress_percentage"] == 100
    # Every write is activity, even one that moves nothing (strictly later: `>=` would
    # pass without a bump).
    assert datetime.fromisoformat(lower["updated_at"]) > datetime.fromisoformat(again["updated_at"])

    # The first write at 100 completes at once.
    first = put(client, h, lessons[1], progress_percentage=100, time_spent=1).get_json()
    assert first["completed_at"] is not None and first["is_completed"] is True


def test_put_progress_denied(app, client, tenant, instructor, learner):
    uid, h, course_id, lessons = learner
    draft = lessons[-1]
    assert_error(put(client, h, draft, progress_percentage=10), 404)
    assert_error(put(client, h, 999_999_999, progress_percentage=10), 404)

    stranger = add_user(app, tenant, "student")
    r = put(client, headers_for(app, tenant, stranger), lessons[0], progress_percentage=10)
    assert assert_error(r, 403)["message"] == "not enrolled in this lesson's course"

    # Dropped: 403 and nothing written.
    client.delete(f"/api/v1/courses/{course_id}/enrollments/{uid}", headers=h)
    assert_error(put(client, h, lessons[0], progress_percentage=10), 403)
    assert progress_count(app, tenant, uid) == 0

    completed = add_user(app, tenant, "student")
    enroll_row(app, tenant, completed, course_id, status="completed")
    assert_error(
        put(client, headers_for(app, tenant, completed), lessons[0], progress_percentage=10), 403
    )

    # Staff are not learners unless enrolled; a draft lesson takes no progress.
    owner = headers_for(app, tenant, instructor)
    assert_error(put(client, owner, lessons[0], progress_percentage=10), 403)
    assert_error(put(client, owner, draft, progress_percentage=10), 403)
    admin = headers_for(app, tenant, admin_id(app, tenant))
    assert_error(put(client, admin, lessons[0], progress_percentage=10), 403)
    assert_error(put(client, tenant_headers(tenant), lessons[0], progress_percentage=10), 401)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "progress_percentage"),
        ({"progress_percentage": 101}, "progress_percentage"),
        ({"progress_percentage": -1}, "progress_percentage"),
        ({"progress_percentage": "50"}, "progress_percentage"),
        ({"progress_percentage": 50.5}, "progress_percentage"),
        ({"progress_percentage": None}, "progress_percentage"),
        ({"progress_percentage": 50, "time_spent": 86_401}, "time_spent"),
        ({"progress_percentage": 50, "time_spent": -5}, "time_spent"),
        ({"progress_percentage": 50, "time_spent": "10"}, "time_spent"),
        ({"progress_percentage": 50, "lesson_id": 1}, "lesson_id"),
    ],
)
def test_put_progress_validation(app, client, tenant, learner, payload, field):
    uid, h, _, lessons = learner
    r = client.put(f"/api/v1/lessons/{lessons[0]}/progress", json=payload, headers=h)
    assert field in assert_error(r, 422)["errors"]
    assert progress_count(app, tenant, uid) == 0


def test_put_progress_is_one_statement(app, client, tenant, learner, count_queries):
    _, h, _, lessons = learner
    put(client, h, lessons[0], progress_percentage=1)
    with count_queries() as q:
        r = put(client, h, lessons[1], progress_percentage=50, time_spent=10)
    assert r.status_code == 200
    assert q.count == 1, q.statements


def test_concurrent_time_spent_adds_up(app, tenant, learner):
    uid, h, _, lessons = learner
    lesson = lessons[0]
    threads_n = 20
    barrier = threading.Barrier(threads_n)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            client = app.test_client()
            barrier.wait(timeout=30)
            r = client.put(
                f"/api/v1/lessons/{lesson}/progress",
                json={"progress_percentage": 50, "time_spent": 10},
                headers=h,
            )
            statuses.append(r.status_code)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert statuses == [200] * threads_n
    row = stored(app, tenant, uid, lesson)
    assert row.time_spent == 200 and row.progress_percentage == 50


# --- POST /progress/batch -------------------------------------------------------------


def test_batch(app, client, tenant, learner):
    uid, h, _, lessons = learner
    put(client, h, lessons[0], progress_percentage=80, time_spent=100)
    r = client.post(
        "/api/v1/progress/batch",
        json={
            "updates": [
                {"lesson_id": lessons[0], "progress_percentage": 30, "time_spent": 20},
                {"lesson_id": lessons[1], "progress_percentage": 100, "time_spent": 40},
                {"lesson_id": lessons[2], "progress_percentage": 10},
            ]
        },
        headers=h,
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"updated": 3}
    first = stored(app, tenant, uid, lessons[0])
    assert (first.progress_percentage, first.time_spent, first.completed_at) == (80, 120, None)
    second = stored(app, tenant, uid, lessons[1])
    assert second.progress_percentage == 100 and second.completed_at is not None
    third = stored(app, tenant, uid, lessons[2])
    assert (third.progress_percentage, third.time_spent) == (10, 0)

    # completed_at set once, through the batch too.
    r = client.post(
        "/api/v1/progress/batch",
        json={"updates": [{"lesson_id": lessons[1], "progress_percentage": 100, "time_spent": 1}]},
        headers=h,
    )
    assert r.get_json() == {"updated": 1}
    again = stored(app, tenant, uid, lessons[1])
    assert again.completed_at == second.completed_at and again.time_spent == 41


def test_batch_is_atomic(app, client, tenant, instructor, learner):
    uid, h, _, lessons = learner
    put(client, h, lessons[0], progress_percentage=20, time_spent=5)
    _, other_lessons = make_course(app, tenant, instructor, lessons=1)
    r = client.post(
        "/api/v1/progress/batch",
        json={
            "updates": [
                {"lesson_id": lessons[0], "progress_percentage": 90, "time_spent": 5},
                {"lesson_id": lessons[1], "progress_percentage": 50},
                {"lesson_id": lessons[0], "progress_percentage": 95},
                {"lesson_id": other_lessons[0], "progress_percentage": 10},
                {"lesson_id": lessons[-1], "progress_percentage": 10},
                {"lesson_id": 999_999_999, "progress_percentage": 10},
            ]
        },
        headers=h,
    )
    errors = assert_error(r, 422)["errors"]["updates"]
    assert set(errors) == {"2", "3", "4", "5"}
    assert errors["2"]["lesson_id"] == ["duplicate of item 0 in this batch"]
    assert errors["3"]["lesson_id"] == ["not enrolled in this lesson's course"]
    assert errors["4"]["lesson_id"] == ["lesson not found"]  # unpublished, for a student
    assert errors["5"]["lesson_id"] == ["lesson not found"]
    # Nothing written: the good items neither.
    row = stored(app, tenant, uid, lessons[0])
    assert (row.progress_percentage, row.time_spent) == (20, 5)
    assert stored(app, tenant, uid, lessons[1]) is None


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({}, ["updates"]),
        ({"updates": []}, ["updates"]),
        ({"updates": [{"lesson_id": 1, "progress_percentage": 1}] * 1001}, ["updates"]),
        ({"updates": [{"progress_percentage": 1}]}, ["updates", "0", "lesson_id"]),
        ({"updates": [{"lesson_id": 1}]}, ["updates", "0", "progress_percentage"]),
        (
            {"updates": [{"lesson_id": 1, "progress_percentage": 1, "time_spent": 86_401}]},
            ["updates", "0", "time_spent"],
        ),
        ({"updates": [{"lesson_id": 1, "progress_percentage": 1, "x": 1}]}, ["updates", "0", "x"]),
        ({"updates": [{"lesson_id": 1, "progress_percentage": 1}], "x": 1}, ["x"]),
    ],
)
def test_batch_validation(app, client, tenant, learner, payload, path):
    _, h, _, _ = learner
    errors = assert_error(client.post("/api/v1/progress/batch", json=payload, headers=h), 422)
    node = errors["errors"]
    for key in path:
        assert key in node, (key, node)
        node = node[key]


@pytest.mark.parametrize("n", [1, 50])
def test_batch_query_budget(app, client, tenant, instructor, count_queries, n):
    course_id, lessons = make_course(app, tenant, instructor, lessons=n)
    uid = add_user(app, tenant, "student")
    enroll_row(app, tenant, uid, course_id)
    h = headers_for(app, tenant, uid)
    client.get("/api/v1/me/courses", headers=h)
    updates = [{"lesson_id": lid, "progress_percentage": 100, "time_spent": 3} for lid in lessons]
    with count_queries() as q:
        r = client.post("/api/v1/progress/batch", json={"updates": updates}, headers=h)
    assert r.get_json() == {"updated": n}
    assert q.count == 2, q.statements  # validate all items, then one upsert
    assert progress_count(app, tenant, uid) == n


# --- GET /courses/<id>/progress -------------------------------------------------------


def seed_course_progress(app, tenant, course_id: int, user_id: int):
    """The seed's course-progress SQL, corrected (DESIGN.md: count rows at 100 %,
    0 for a course without lessons). text() is not schema-translated: qualify it."""
    schema = tenant.schema_name
    sql = text(
        f"""
        SELECT c.id, c.total_lessons, COUNT(lp.lesson_id) AS completed,
               COALESCE(ROUND(COUNT(lp.lesson_id)::numeric
                              / NULLIF(c.total_lessons, 0) * 100, 2), 0) AS pct
        FROM "{schema}".courses c
        LEFT JOIN "{schema}".lesson_progress lp
               ON c.id = lp.course_id AND lp.user_id = :u AND lp.progress_percentage = 100
        WHERE c.id = :c
        GROUP BY c.id
        """
    )
    with app.app_context(), tenant_scope(tenant):
        return db.session.execute(sql, {"u": user_id, "c": course_id}).one()


def test_course_progress_matches_seed_sql(app, client, tenant, instructor):
    cases = [(3, [100, 50, 0]), (3, [100, 100, 100]), (7, [100, 100, 99]), (6, [100]), (0, [])]
    other = add_user(app, tenant, "student")
    for total, percentages in cases:
        course_id, lessons = make_course(app, tenant, instructor, lessons=total)
        uid = add_user(app, tenant, "student")
        enroll_row(app, tenant, uid, course_id)
        for lesson_id, pct in zip(lessons, percentages, strict=False):
            progress_row(app, tenant, uid, lesson_id, pct, time_spent=10)
        for lesson_id in lessons:  # another learner's rows must not count
            progress_row(app, tenant, other, lesson_id, 100)

        r = client.get(
            f"/api/v1/courses/{course_id}/progress", headers=headers_for(app, tenant, uid)
        )
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        seed = seed_course_progress(app, tenant, course_id, uid)
        assert body["course_id"] == seed.id == course_id
        assert body["total_lessons"] == seed.total_lessons == total
        assert body["completed_lessons"] == seed.completed
        assert body["progress_percentage"] == float(seed.pct)
        assert body["title"].startswith("Course ")
        assert (body["last_activity"] is None) == (not percentages)
    assert body["progress_percentage"] == 0  # the course without lessons


def test_course_progress_counts_published_lessons_only(app, client, tenant, learner):
    uid, h, course_id, lessons = learner  # 3 published + 1 draft
    progress_row(app, tenant, uid, lessons[0], 100)
    progress_row(app, tenant, uid, lessons[-1], 100)
    body = client.get(f"/api/v1/courses/{course_id}/progress", headers=h).get_json()
    assert body["completed_lessons"] == 1 and body["total_lessons"] == 3
    assert body["progress_percentage"] == 33.33


def test_course_progress_access(app, client, tenant, instructor, learner):
    uid, h, course_id, lessons = learner
    progress_row(app, tenant, uid, lessons[0], 100)
    url = f"/api/v1/courses/{course_id}/progress"

    # Any enrollment status may read its own progress.
    r = client.delete(f"/api/v1/courses/{course_id}/enrollments/{uid}", headers=h)
    assert r.status_code == 204
    assert enrollment_status(app, tenant, uid, course_id) == "dropped"
    assert client.get(url, headers=h).get_json()["completed_lessons"] == 1

    stranger = add_user(app, tenant, "student")
    s = headers_for(app, tenant, stranger)
    assert_error(client.get(url, headers=s), 403)
    assert_error(client.get(f"{url}?user_id={uid}", headers=s), 403)
    assert_error(client.get("/api/v1/courses/999999999/progress", headers=s), 404)
    draft, _ = make_course(app, tenant, instructor, published=False)
    assert_error(client.get(f"/api/v1/courses/{draft}/progress", headers=s), 404)

    # Staff of the course read anyone's; another instructor may not.
    for staff in (instructor, admin_id(app, tenant)):
        r = client.get(f"{url}?user_id={uid}", headers=headers_for(app, tenant, staff))
        assert r.status_code == 200 and r.get_json()["completed_lessons"] == 1
        r = client.get(f"{url}?user_id={stranger}", headers=headers_for(app, tenant, staff))
        assert_error(r, 404)
    other = add_user(app, tenant, "instructor")
    assert_error(client.get(f"{url}?user_id={uid}", headers=headers_for(app, tenant, other)), 403)
    assert_error(client.get(f"{url}?user_id=abc", headers=h), 422)
    assert_error(client.get(url, headers=tenant_headers(tenant)), 401)


@pytest.mark.parametrize("n", [1, 50])
def test_course_progress_query_budget(app, client, tenant, instructor, count_queries, n):
    course_id, lessons = make_course(app, tenant, instructor, lessons=n)
    uid = add_user(app, tenant, "student")
    enroll_row(app, tenant, uid, course_id)
    for lesson_id in lessons:
        progress_row(app, tenant, uid, lesson_id, 100)
    h = headers_for(app, tenant, uid)
    url = f"/api/v1/courses/{course_id}/progress"
    client.get(url, headers=h)
    with count_queries() as q:
        r = client.get(url, headers=h)
    assert r.get_json()["completed_lessons"] == n and r.get_json()["progress_percentage"] == 100
    assert q.count == 1, q.statements


def test_progress_rows_keep_denormalised_course(app, client, tenant, learner):
    uid, h, course_id, lessons = learner
    put(client, h, lessons[0], progress_percentage=5)
    client.post(
        "/api/v1/progress/batch",
        json={"updates": [{"lesson_id": lessons[1], "progress_percentage": 5}]},
        headers=h,
    )
    with app.app_context(), tenant_scope(tenant):
        rows = db.session.execute(
            select(LessonProgress.course_id, Lesson.course_id)
            .join(Lesson, Lesson.id == LessonProgress.lesson_id)
            .where(LessonProgress.user_id == uid)
        ).all()
    assert len(rows) == 2 and all(a == b == course_id for a, b in rows)
