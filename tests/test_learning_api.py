"""Learning API: lessons with progress, enrollments (self, bulk, list, drop), /me/courses.

Courses and lessons are written straight into the tenant (not through the catalog
endpoints) and tokens are issued directly, so these tests depend on learning only.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select, update

from lms_app.accounts.models import User
from lms_app.catalog.models import Course, Lesson
from lms_app.db.upsert import upsert
from lms_app.extensions import db
from lms_app.learning.models import Enrollment, LessonProgress
from lms_app.tenancy.context import TenantInfo, tenant_scope
from tests.conftest import (
    add_user,
    admin_id,
    assert_error,
    headers_for,
    login,
    tenant_headers,
    user_email,
)

# --- helpers (also used by test_progress.py) -------------------------------------------


def make_course(
    app: Flask,
    tenant: TenantInfo,
    instructor_id: int | None,
    *,
    lessons: int = 3,
    unpublished_lessons: int = 0,
    published: bool = True,
    archived: bool = False,
    title: str | None = None,
) -> tuple[int, list[int]]:
    """A course with lessons (published ones first); total_lessons = published count."""
    with app.app_context(), tenant_scope(tenant):
        course = Course(
            title=title or f"Course {uuid.uuid4().hex[:6]}",
            description="about things",
            instructor_id=instructor_id,
            difficulty_level="beginner",
            estimated_hours=5,
            is_published=published,
            is_archived=archived,
            total_lessons=lessons,
        )
        db.session.add(course)
        db.session.flush()
        rows = [
            Lesson(
                course_id=course.id,
                title=f"Lesson {i}",
                content=f"content {i}",
                order_index=i,
                is_published=i < lessons,
            )
            for i in range(lessons + unpublished_lessons)
        ]
        db.session.add_all(rows)
        db.session.commit()
        return course.id, [lesson.id for lesson in rows]


def enroll_row(
    app: Flask,
    tenant: TenantInfo,
    user_id: int,
    course_id: int,
    status: str = "active",
    enrolled_at: datetime | None = None,
) -> int:
    with app.app_context(), tenant_scope(tenant):
        row = Enrollment(user_id=user_id, course_id=course_id, status=status)
        if enrolled_at is not None:
            row.enrolled_at = enrolled_at
        db.session.add(row)
        db.session.commit()
        return row.id


def progress_row(
    app: Flask,
    tenant: TenantInfo,
    user_id: int,
    lesson_id: int,
    percentage: int,
    time_spent: int = 0,
) -> None:
    with app.app_context(), tenant_scope(tenant):
        course_id = db.session.scalar(select(Lesson.course_id).where(Lesson.id == lesson_id))
        db.session.add(
            LessonProgress(
                user_id=user_id,
                lesson_id=lesson_id,
                course_id=course_id,
                progress_percentage=percentage,
                time_spent=time_spent,
                completed_at=datetime.now(UTC) if percentage == 100 else None,
            )
        )
        db.session.commit()


def enrollment_status(app: Flask, tenant: TenantInfo, user_id: int, course_id: int) -> str | None:
    with app.app_context(), tenant_scope(tenant):
        return db.session.scalar(
            select(Enrollment.status).where(
                Enrollment.user_id == user_id, Enrollment.course_id == course_id
            )
        )


def count_enrollments(app: Flask, tenant: TenantInfo, course_id: int) -> int:
    with app.app_context(), tenant_scope(tenant):
        return db.session.scalar(
            select(func.count()).select_from(Enrollment).where(Enrollment.course_id == course_id)
        )


@pytest.fixture(scope="module")
def tenant(make_tenant) -> TenantInfo:
    return make_tenant()


@pytest.fixture(scope="module")
def instructor(app, tenant) -> int:
    return add_user(app, tenant, "instructor")


@pytest.fixture
def student(app, tenant) -> int:
    return add_user(app, tenant, "student")


# --- GET /lessons/<id> ----------------------------------------------------------------


def test_lesson_with_progress(app, client, tenant, instructor, student):
    course_id, lesson_ids = make_course(app, tenant, instructor)
    enroll_row(app, tenant, student, course_id)
    h = headers_for(app, tenant, student)

    r = client.get(f"/api/v1/lessons/{lesson_ids[0]}", headers=h)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["id"] == lesson_ids[0] and body["course_id"] == course_id
    assert body["title"] == "Lesson 0" and body["content"] == "content 0"
    assert body["order_index"] == 0 and body["is_published"] is True
    assert body["created_at"].endswith("+00:00") and body["updated_at"]
    assert body["progress_percentage"] == 0 and body["time_spent"] == 0
    assert body["completed_at"] is None and body["is_completed"] is False

    progress_row(app, tenant, student, lesson_ids[1], 100, time_spent=90)
    body = client.get(f"/api/v1/lessons/{lesson_ids[1]}", headers=h).get_json()
    assert body["progress_percentage"] == 100 and body["time_spent"] == 90
    assert body["completed_at"] is not None and body["is_completed"] is True


def test_lesson_access_matrix(app, client, tenant, instructor, student):
    other_instructor = add_user(app, tenant, "instructor")
    course_id, lesson_ids = make_course(app, tenant, instructor, lessons=1, unpublished_lessons=1)
    published, draft = lesson_ids
    draft_course, (draft_course_lesson,) = make_course(
        app, tenant, instructor, lessons=1, published=False
    )
    archived_course, (archived_lesson,) = make_course(
        app, tenant, instructor, lessons=1, archived=True
    )
    for cid in (course_id, draft_course, archived_course):
        enroll_row(app, tenant, student, cid)

    s = headers_for(app, tenant, student)
    assert client.get(f"/api/v1/lessons/{published}", headers=s).status_code == 200
    for lesson in (draft, draft_course_lesson, archived_lesson):
        assert_error(client.get(f"/api/v1/lessons/{lesson}", headers=s), 404)
    assert_error(client.get("/api/v1/lessons/999999999", headers=s), 404)
    assert_error(client.get(f"/api/v1/lessons/{published}", headers=tenant_headers(tenant)), 401)

    # Not enrolled, dropped: 403; completed still opens the lesson.
    stranger = add_user(app, tenant, "student")
    assert_error(
        client.get(f"/api/v1/lessons/{published}", headers=headers_for(app, tenant, stranger)), 403
    )
    dropped = add_user(app, tenant, "student")
    enroll_row(app, tenant, dropped, course_id, status="dropped")
    assert_error(
        client.get(f"/api/v1/lessons/{published}", headers=headers_for(app, tenant, dropped)), 403
    )
    finished = add_user(app, tenant, "student")
    enroll_row(app, tenant, finished, course_id, status="completed")
    assert (
        client.get(
            f"/api/v1/lessons/{published}", headers=headers_for(app, tenant, finished)
        ).status_code
        == 200
    )

    # Staff of the course see drafts without enrolling; another instructor is a learner.
    for staff in (instructor, admin_id(app, tenant)):
        h = headers_for(app, tenant, staff)
        for lesson in (published, draft, draft_course_lesson):
            assert client.get(f"/api/v1/lessons/{lesson}", headers=h).status_code == 200
    o = headers_for(app, tenant, other_instructor)
    assert_error(client.get(f"/api/v1/lessons/{published}", headers=o), 403)
    assert_error(client.get(f"/api/v1/lessons/{draft}", headers=o), 404)


@pytest.mark.parametrize("n_progress", [1, 50])
def test_lesson_query_budget(app, client, tenant, instructor, student, count_queries, n_progress):
    course_id, lesson_ids = make_course(app, tenant, instructor, lessons=n_progress)
    enroll_row(app, tenant, student, course_id)
    for lesson_id in lesson_ids:
        progress_row(app, tenant, student, lesson_id, 40)
    h = headers_for(app, tenant, student)
    client.get(f"/api/v1/lessons/{lesson_ids[0]}", headers=h)  # warms the auth-state cache
    for cached in (False, True):
        with count_queries() as q:
            r = client.get(f"/api/v1/lessons/{lesson_ids[-1]}", headers=h)
        assert r.status_code == 200 and r.get_json()["progress_percentage"] == 40
        # Not cached: the lesson with the user's state; cached: the user's state alone.
        assert q.count == 1, (cached, q.statements)


# --- POST /courses/<id>/enroll --------------------------------------------------------


def test_self_enroll(app, client, tenant, instructor, student):
    course_id, _ = make_course(app, tenant, instructor)
    h = headers_for(app, tenant, student)
    r = client.post(f"/api/v1/courses/{course_id}/enroll", headers=h)
    assert r.status_code == 201, r.get_json()
    first = r.get_json()
    assert first["user_id"] == student and first["course_id"] == course_id
    assert first["status"] == "active" and first["enrolled_at"].endswith("+00:00")

    again = client.post(f"/api/v1/courses/{course_id}/enroll", headers=h)
    assert again.status_code == 200 and again.get_json() == first

    # Dropped, then back: the same enrollment becomes active again (201).
    assert (
        client.delete(f"/api/v1/courses/{course_id}/enrollments/{student}", headers=h).status_code
        == 204
    )
    back = client.post(f"/api/v1/courses/{course_id}/enroll", headers=h)
    assert back.status_code == 201 and back.get_json()["id"] == first["id"]
    assert back.get_json()["status"] == "active"
    assert count_enrollments(app, tenant, course_id) == 1


def test_self_enroll_any_role_and_closed_courses(app, client, tenant, instructor):
    course_id, _ = make_course(app, tenant, instructor)
    for role in ("admin", "instructor", "student"):
        uid = add_user(app, tenant, role)
        r = client.post(
            f"/api/v1/courses/{course_id}/enroll", headers=headers_for(app, tenant, uid)
        )
        assert r.status_code == 201, (role, r.get_json())

    draft, _ = make_course(app, tenant, instructor, published=False)
    archived, _ = make_course(app, tenant, instructor, archived=True)
    s = headers_for(app, tenant, add_user(app, tenant, "student"))
    for cid in (draft, archived, 999_999_999):
        assert_error(client.post(f"/api/v1/courses/{cid}/enroll", headers=s), 404)
    assert count_enrollments(app, tenant, draft) == 0
    assert_error(
        client.post(f"/api/v1/courses/{course_id}/enroll", headers=tenant_headers(tenant)), 401
    )


def test_with_a_password_login_token(app, client, tenant, instructor, student):
    """The rest of this module mints tokens directly; once through POST /auth/token."""
    course_id, lesson_ids = make_course(app, tenant, instructor, lessons=1)
    h = login(client, tenant, user_email(app, tenant, student))
    assert client.post(f"/api/v1/courses/{course_id}/enroll", headers=h).status_code == 201
    r = client.put(
        f"/api/v1/lessons/{lesson_ids[0]}/progress", json={"progress_percentage": 100}, headers=h
    )
    assert r.status_code == 200 and r.get_json()["is_completed"] is True


# --- POST /courses/<id>/enrollments ---------------------------------------------------


def test_bulk_enroll(app, client, tenant, instructor):
    course_id, _ = make_course(app, tenant, instructor)
    fresh = [add_user(app, tenant, "student") for _ in range(3)]
    active, dropped, completed = (add_user(app, tenant, "student") for _ in range(3))
    enroll_row(app, tenant, active, course_id)
    enroll_row(app, tenant, dropped, course_id, status="dropped")
    enroll_row(app, tenant, completed, course_id, status="completed")
    h = headers_for(app, tenant, instructor)

    ids = [*fresh, fresh[0], active, dropped, completed]  # a duplicate is fine
    r = client.post(f"/api/v1/courses/{course_id}/enrollments", json={"user_ids": ids}, headers=h)
    assert r.status_code == 200, r.get_json()
    # The dropped one is reactivated and counts as enrolled; completed stays completed.
    assert r.get_json() == {"enrolled": 4, "already_enrolled": 2}
    assert enrollment_status(app, tenant, dropped, course_id) == "active"
    assert enrollment_status(app, tenant, completed, course_id) == "completed"
    assert all(enrollment_status(app, tenant, uid, course_id) == "active" for uid in fresh)

    r = client.post(f"/api/v1/courses/{course_id}/enrollments", json={"user_ids": ids}, headers=h)
    assert r.get_json() == {"enrolled": 0, "already_enrolled": 6}


def test_bulk_enroll_unknown_ids_write_nothing(app, client, tenant, instructor):
    course_id, _ = make_course(app, tenant, instructor)
    known = add_user(app, tenant, "student")
    dropped = add_user(app, tenant, "student")
    enroll_row(app, tenant, dropped, course_id, status="dropped")
    unknown = list(range(900_000_000, 900_000_030))
    h = headers_for(app, tenant, instructor)
    r = client.post(
        f"/api/v1/courses/{course_id}/enrollments",
        json={"user_ids": [known, dropped, *unknown]},
        headers=h,
    )
    body = assert_error(r, 422)
    (message,) = body["errors"]["user_ids"]
    assert message.startswith("not students you may enrol: 900000000, 900000001")
    assert "900000019" in message and "900000020" not in message and "(and 10 more)" in message
    assert count_enrollments(app, tenant, course_id) == 1
    assert enrollment_status(app, tenant, dropped, course_id) == "dropped"


def test_bulk_enroll_roles_and_courses(app, client, tenant, instructor):
    course_id, _ = make_course(app, tenant, instructor, published=False)
    target = add_user(app, tenant, "student")
    body = {"user_ids": [target]}
    url = f"/api/v1/courses/{course_id}/enrollments"
    assert_error(client.post(url, json=body, headers=headers_for(app, tenant, target)), 403)
    other = add_user(app, tenant, "instructor")
    assert_error(client.post(url, json=body, headers=headers_for(app, tenant, other)), 403)
    assert_error(client.post(url, json=body, headers=tenant_headers(tenant)), 401)
    # An admin may fill a course before it is published; its instructor may not (a
    # course nobody sees would let them read back whoever they enrolled).
    assert_error(client.post(url, json=body, headers=headers_for(app, tenant, instructor)), 409)
    r = client.post(url, json=body, headers=headers_for(app, tenant, admin_id(app, tenant)))
    assert r.status_code == 200 and r.get_json()["enrolled"] == 1

    a = headers_for(app, tenant, admin_id(app, tenant))
    assert_error(client.post("/api/v1/courses/999999999/enrollments", json=body, headers=a), 404)
    archived, _ = make_course(app, tenant, instructor, archived=True)
    assert_error(client.post(f"/api/v1/courses/{archived}/enrollments", json=body, headers=a), 409)


def test_an_instructor_enrols_active_students_only(app, client, tenant, instructor):
    """Finding 9 of issue 8: bulk-enrolling arbitrary ids into one's own course, then
    listing the roster, returned every user's e-mail, the admin's included."""
    course_id, _ = make_course(app, tenant, instructor)
    student = add_user(app, tenant, "student")
    others = [
        admin_id(app, tenant),
        add_user(app, tenant, "instructor"),
        add_user(app, tenant, "student", is_active=False),
        987_654_321,  # unknown: the same answer, so the reply tells nothing about an id
    ]
    url = f"/api/v1/courses/{course_id}/enrollments"
    teacher = headers_for(app, tenant, instructor)
    for other in others:
        r = client.post(url, json={"user_ids": [student, other]}, headers=teacher)
        (message,) = assert_error(r, 422)["errors"]["user_ids"]
        assert message == f"not students you may enrol: {other}"
    assert count_enrollments(app, tenant, course_id) == 0

    r = client.post(url, json={"user_ids": [student]}, headers=teacher)
    assert r.get_json() == {"enrolled": 1, "already_enrolled": 0}
    roster = client.get(url, headers=teacher).get_json()["items"]
    assert [item["user"]["id"] for item in roster] == [student]

    # An admin may enrol anyone of the school.
    admin = headers_for(app, tenant, admin_id(app, tenant))
    r = client.post(url, json={"user_ids": others[:3]}, headers=admin)
    assert r.get_json() == {"enrolled": 3, "already_enrolled": 0}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "user_ids"),
        ({"user_ids": []}, "user_ids"),
        ({"user_ids": list(range(1, 10_002))}, "user_ids"),
        ({"user_ids": ["1"]}, "user_ids"),
        ({"user_ids": [1.5]}, "user_ids"),
        ({"user_ids": [0]}, "user_ids"),
        ({"user_ids": [2**63]}, "user_ids"),
        ({"user_ids": "1,2"}, "user_ids"),
        ({"user_ids": [1], "extra": True}, "extra"),
    ],
)
def test_bulk_enroll_validation(app, client, tenant, instructor, payload, field):
    course_id, _ = make_course(app, tenant, instructor, lessons=0)
    r = client.post(
        f"/api/v1/courses/{course_id}/enrollments",
        json=payload,
        headers=headers_for(app, tenant, instructor),
    )
    assert field in assert_error(r, 422)["errors"]
    assert count_enrollments(app, tenant, course_id) == 0


def test_malformed_json_is_400(app, client, tenant, instructor):
    course_id, lesson_ids = make_course(app, tenant, instructor, lessons=1)
    h = {**headers_for(app, tenant, instructor), "Content-Type": "application/json"}
    for method, url in (
        ("post", f"/api/v1/courses/{course_id}/enrollments"),
        ("put", f"/api/v1/lessons/{lesson_ids[0]}/progress"),
        ("post", "/api/v1/progress/batch"),
    ):
        r = getattr(client, method)(url, data='{"user_ids": [1,', headers=h)
        assert_error(r, 400)


def test_bulk_enroll_ten_thousand(app, client, tenant, instructor, count_queries):
    tag = uuid.uuid4().hex[:8]
    with app.app_context(), tenant_scope(tenant):
        upsert(
            db.session,
            User.__table__,
            [
                {"email": f"bulk{i}-{tag}@example.test", "name": f"Bulk {i}", "role": "student"}
                for i in range(10_000)
            ],
            conflict=["email"],
        )
        db.session.commit()
        ids = list(db.session.scalars(select(User.id).where(User.email.like(f"bulk%-{tag}@%"))))
    assert len(ids) == 10_000
    course_id, _ = make_course(app, tenant, instructor)
    h = headers_for(app, tenant, instructor)
    client.get("/api/v1/me/courses", headers=h)  # warms the auth-state cache

    url = f"/api/v1/courses/{course_id}/enrollments"
    with count_queries() as q:
        r = client.post(url, json={"user_ids": ids}, headers=h)
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"enrolled": 10_000, "already_enrolled": 0}
    # course check, unknown/dropped check, one upsert (the ids travel as one array),
    # and the bulk enrolment's audit event (issue 13; counts only, not the ids)
    assert q.count == 4, q.statements
    assert count_enrollments(app, tenant, course_id) == 10_000

    r = client.post(url, json={"user_ids": ids}, headers=h)
    assert r.get_json() == {"enrolled": 0, "already_enrolled": 10_000}
    assert count_enrollments(app, tenant, course_id) == 10_000


# --- GET /courses/<id>/enrollments ----------------------------------------------------


def _enroll_many(app, tenant, course_id, n, base=None):
    base = base or datetime(2024, 1, 1, tzinfo=UTC)
    users = []
    for i in range(n):
        uid = add_user(app, tenant, "student", name=f"Learner {i}")
        enroll_row(app, tenant, uid, course_id, enrolled_at=base + timedelta(minutes=i))
        users.append(uid)
    return users


def test_enrollment_list(app, client, tenant, instructor):
    course_id, lesson_ids = make_course(app, tenant, instructor, lessons=3, unpublished_lessons=1)
    learners = _enroll_many(app, tenant, course_id, 3)
    progress_row(app, tenant, learners[2], lesson_ids[0], 100)
    progress_row(app, tenant, learners[2], lesson_ids[1], 60)
    progress_row(app, tenant, learners[2], lesson_ids[3], 100)  # unpublished: not counted
    h = headers_for(app, tenant, instructor)

    r = client.get(f"/api/v1/courses/{course_id}/enrollments?limit=2", headers=h)
    assert r.status_code == 200, r.get_json()
    page1 = r.get_json()
    assert [i["user"]["id"] for i in page1["items"]] == [learners[2], learners[1]]
    top = page1["items"][0]
    assert top["status"] == "active" and top["enrolled_at"].startswith("2024-01-01T00:02")
    assert top["user"]["name"] == "Learner 2" and top["user"]["email"].endswith("@example.test")
    assert top["progress"]["completed_lessons"] == 1
    assert top["progress"]["progress_percentage"] == 33.33
    assert top["progress"]["last_activity"] is not None
    assert page1["items"][1]["progress"] == {
        "completed_lessons": 0,
        "progress_percentage": 0,
        "last_activity": None,
    }
    assert page1["next_cursor"]

    r = client.get(
        f"/api/v1/courses/{course_id}/enrollments?limit=2&cursor={page1['next_cursor']}", headers=h
    )
    page2 = r.get_json()
    assert [i["user"]["id"] for i in page2["items"]] == [learners[0]]
    assert page2["next_cursor"] is None

    with app.app_context(), tenant_scope(tenant):
        db.session.execute(
            update(Enrollment)
            .where(Enrollment.user_id == learners[0], Enrollment.course_id == course_id)
            .values(status="dropped")
        )
        db.session.commit()
    r = client.get(f"/api/v1/courses/{course_id}/enrollments?status=dropped", headers=h)
    assert [i["user"]["id"] for i in r.get_json()["items"]] == [learners[0]]

    assert_error(
        client.get(f"/api/v1/courses/{course_id}/enrollments?cursor=bogus", headers=h), 422
    )
    assert_error(client.get(f"/api/v1/courses/{course_id}/enrollments?limit=101", headers=h), 422)
    assert_error(client.get(f"/api/v1/courses/{course_id}/enrollments?status=gone", headers=h), 422)


def test_enrollment_list_roles(app, client, tenant, instructor):
    course_id, _ = make_course(app, tenant, instructor)
    learner = _enroll_many(app, tenant, course_id, 1)[0]
    url = f"/api/v1/courses/{course_id}/enrollments"
    assert client.get(url, headers=headers_for(app, tenant, instructor)).status_code == 200
    assert (
        client.get(url, headers=headers_for(app, tenant, admin_id(app, tenant))).status_code == 200
    )
    assert_error(client.get(url, headers=headers_for(app, tenant, learner)), 403)
    other = add_user(app, tenant, "instructor")
    assert_error(client.get(url, headers=headers_for(app, tenant, other)), 403)
    assert_error(client.get(url, headers=tenant_headers(tenant)), 401)
    a = headers_for(app, tenant, admin_id(app, tenant))
    assert_error(client.get("/api/v1/courses/999999999/enrollments", headers=a), 404)


@pytest.mark.parametrize("n", [1, 50])
def test_enrollment_list_query_budget(app, client, tenant, instructor, count_queries, n):
    course_id, lesson_ids = make_course(app, tenant, instructor, lessons=2)
    learners = _enroll_many(app, tenant, course_id, n)
    for uid in learners:
        progress_row(app, tenant, uid, lesson_ids[0], 100)
    h = headers_for(app, tenant, instructor)
    client.get(f"/api/v1/courses/{course_id}/enrollments", headers=h)
    with count_queries() as q:
        r = client.get(f"/api/v1/courses/{course_id}/enrollments?limit=100", headers=h)
    items = r.get_json()["items"]
    assert len(items) == n and all(i["progress"]["progress_percentage"] == 50 for i in items)
    # Course and permission, the roster's audit event (issue 13: a staff read of
    # learners' records), then the page.
    assert q.count == 3, q.statements


# --- DELETE /courses/<id>/enrollments/<user_id> ---------------------------------------


def test_drop_enrollment(app, client, tenant, instructor):
    course_id, lesson_ids = make_course(app, tenant, instructor)
    a, b, c, d = (add_user(app, tenant, "student") for _ in range(4))
    for uid in (a, b, c, d):
        enroll_row(app, tenant, uid, course_id)
    progress_row(app, tenant, a, lesson_ids[0], 70, time_spent=30)
    url = f"/api/v1/courses/{course_id}/enrollments/"

    # Self, owner instructor, admin.
    assert client.delete(url + str(a), headers=headers_for(app, tenant, a)).status_code == 204
    assert (
        client.delete(url + str(b), headers=headers_for(app, tenant, instructor)).status_code == 204
    )
    admin = headers_for(app, tenant, admin_id(app, tenant))
    assert client.delete(url + str(c), headers=admin).status_code == 204
    for uid in (a, b, c):
        assert enrollment_status(app, tenant, uid, course_id) == "dropped"
    with app.app_context(), tenant_scope(tenant):
        kept = db.session.scalar(
            select(LessonProgress.time_spent).where(LessonProgress.user_id == a)
        )
    assert kept == 30  # progress stays

    # Another student, another instructor: 403; nothing to drop: 404.
    assert_error(client.delete(url + str(d), headers=headers_for(app, tenant, a)), 403)
    other = add_user(app, tenant, "instructor")
    assert_error(client.delete(url + str(d), headers=headers_for(app, tenant, other)), 403)
    assert enrollment_status(app, tenant, d, course_id) == "active"
    stranger = add_user(app, tenant, "student")
    assert_error(
        client.delete(url + str(stranger), headers=headers_for(app, tenant, stranger)), 404
    )
    assert_error(client.delete(url + str(stranger), headers=admin), 404)
    assert_error(client.delete(f"/api/v1/courses/999999999/enrollments/{d}", headers=admin), 404)
    assert_error(client.delete(url + str(d), headers=tenant_headers(tenant)), 401)


# --- GET /me/courses ------------------------------------------------------------------


def test_my_courses(app, client, tenant, instructor, student):
    base = datetime(2024, 3, 1, tzinfo=UTC)
    first, lessons1 = make_course(app, tenant, instructor, lessons=4, title="First")
    second, _ = make_course(app, tenant, instructor, lessons=0, title="Second")
    third, _ = make_course(app, tenant, instructor, title="Third")
    hidden, _ = make_course(app, tenant, instructor, title="Archived later")
    enroll_row(app, tenant, student, first, enrolled_at=base)
    enroll_row(
        app, tenant, student, second, status="completed", enrolled_at=base + timedelta(days=1)
    )
    enroll_row(app, tenant, student, third, status="dropped", enrolled_at=base + timedelta(days=2))
    enroll_row(app, tenant, student, hidden, enrolled_at=base + timedelta(days=3))
    with app.app_context(), tenant_scope(tenant):
        db.session.execute(update(Course).where(Course.id == hidden).values(is_archived=True))
        db.session.commit()
    progress_row(app, tenant, student, lessons1[0], 100)
    progress_row(app, tenant, student, lessons1[1], 10)
    h = headers_for(app, tenant, student)

    r = client.get("/api/v1/me/courses", headers=h)
    assert r.status_code == 200, r.get_json()
    items = r.get_json()["items"]
    assert [i["id"] for i in items] == [second, first]
    assert items[0]["progress_percentage"] == 0 and items[0]["total_lessons"] == 0
    assert items[0]["enrollment_status"] == "completed"
    one = items[1]
    assert one["title"] == "First" and one["instructor_id"] == instructor
    assert one["enrollment_status"] == "active" and one["enrolled_at"].startswith("2024-03-01")
    assert one["completed_lessons"] == 1 and one["total_lessons"] == 4
    assert one["progress_percentage"] == 25.0 and one["last_activity"] is not None
    assert {
        "description",
        "difficulty_level",
        "estimated_hours",
        "thumbnail_url",
        "category_id",
        "created_at",
    } <= set(one)

    page1 = client.get("/api/v1/me/courses?limit=1", headers=h).get_json()
    assert [i["id"] for i in page1["items"]] == [second] and page1["next_cursor"]
    page2 = client.get(f"/api/v1/me/courses?limit=1&cursor={page1['next_cursor']}", headers=h)
    assert [i["id"] for i in page2.get_json()["items"]] == [first]
    assert page2.get_json()["next_cursor"] is None

    assert_error(client.get("/api/v1/me/courses?limit=0", headers=h), 422)
    assert_error(client.get("/api/v1/me/courses?cursor=%%%", headers=h), 422)
    assert_error(client.get("/api/v1/me/courses", headers=tenant_headers(tenant)), 401)


@pytest.mark.parametrize("n", [1, 50])
def test_my_courses_query_budget(app, client, tenant, instructor, student, count_queries, n):
    for _ in range(n):
        course_id, lesson_ids = make_course(app, tenant, instructor, lessons=2)
        enroll_row(app, tenant, student, course_id)
        progress_row(app, tenant, student, lesson_ids[0], 100)
    h = headers_for(app, tenant, student)
    client.get("/api/v1/me/courses", headers=h)
    with count_queries() as q:
        r = client.get("/api/v1/me/courses?limit=100", headers=h)
    items = r.get_json()["items"]
    assert len(items) == n and all(i["progress_percentage"] == 50 for i in items)
    assert q.count == 1, q.statements


# --- tenant isolation -----------------------------------------------------------------


def test_tenant_isolation(app, client, make_tenant):
    a, b = make_tenant(), make_tenant()
    # Tenant A gets more rows, so A's ids do not exist in B.
    a_instructor = add_user(app, a, "instructor")
    for _ in range(3):
        make_course(app, a, a_instructor)
    a_course, a_lessons = make_course(app, a, a_instructor)
    a_student = add_user(app, a, "student")
    for _ in range(3):
        add_user(app, a, "student")
    a_learner = add_user(app, a, "student")
    enroll_row(app, a, a_learner, a_course)

    b_admin = admin_id(app, b)
    b_course, b_lessons = make_course(app, b, b_admin, lessons=1)
    b_student = add_user(app, b, "student")
    enroll_row(app, b, b_student, b_course)
    progress_row(app, b, b_student, b_lessons[0], 100)

    a_token = headers_for(app, a, a_student)["Authorization"]
    b_auth = headers_for(app, b, b_admin)
    requests = [
        ("get", f"/api/v1/lessons/{a_lessons[0]}", None),
        ("post", f"/api/v1/courses/{a_course}/enroll", None),
        ("post", f"/api/v1/courses/{a_course}/enrollments", {"user_ids": [a_learner]}),
        ("get", f"/api/v1/courses/{a_course}/enrollments", None),
        ("delete", f"/api/v1/courses/{a_course}/enrollments/{a_learner}", None),
        ("put", f"/api/v1/lessons/{a_lessons[0]}/progress", {"progress_percentage": 10}),
        ("get", f"/api/v1/courses/{a_course}/progress", None),
    ]
    for method, url, body in requests:
        # A's token in B: 401, whatever the ids.
        r = getattr(client, method)(
            url, json=body, headers={"X-Tenant": b.slug, "Authorization": a_token}
        )
        assert_error(r, 401)
        # B's admin with A's ids: 404, never B's data.
        r = getattr(client, method)(url, json=body, headers=b_auth)
        assert_error(r, 404)
    for method, url, body in (
        ("get", "/api/v1/me/courses", None),
        (
            "post",
            "/api/v1/progress/batch",
            {"updates": [{"lesson_id": a_lessons[0], "progress_percentage": 5}]},
        ),
    ):
        assert_error(
            getattr(client, method)(
                url, json=body, headers={"X-Tenant": b.slug, "Authorization": a_token}
            ),
            401,
        )
    r = client.post(
        "/api/v1/progress/batch",
        json={"updates": [{"lesson_id": a_lessons[0], "progress_percentage": 5}]},
        headers=b_auth,
    )
    assert assert_error(r, 422)["errors"]["updates"]["0"]["lesson_id"] == ["lesson not found"]
    assert client.get("/api/v1/me/courses", headers=b_auth).get_json()["items"] == []

    # B's data is unchanged and A's rows never appeared in B.
    assert count_enrollments(app, b, b_course) == 1
    assert enrollment_status(app, b, b_student, b_course) == "active"
    assert enrollment_status(app, a, a_learner, a_course) == "active"


def test_openapi_documents_learning(client):
    spec = client.get("/openapi.json").get_json()
    paths = spec["paths"]
    for path, method in (
        ("/api/v1/lessons/{lesson_id}", "get"),
        ("/api/v1/lessons/{lesson_id}/progress", "put"),
        ("/api/v1/courses/{course_id}/enroll", "post"),
        ("/api/v1/courses/{course_id}/enrollments", "post"),
        ("/api/v1/courses/{course_id}/enrollments", "get"),
        ("/api/v1/courses/{course_id}/enrollments/{user_id}", "delete"),
        ("/api/v1/courses/{course_id}/progress", "get"),
        ("/api/v1/progress/batch", "post"),
        ("/api/v1/me/courses", "get"),
    ):
        assert method in paths[path], (path, method)


# --- role changes --------------------------------------------------------------------


def test_a_demoted_instructor_keeps_no_staff_rights_on_their_courses(app, client, tenant):
    """Finding 6 of issue 8: staff rights follow the role, not the instructor_id."""
    teacher = add_user(app, tenant, "instructor")
    learner = add_user(app, tenant, "student")
    course_id, lesson_ids = make_course(app, tenant, teacher, lessons=1, unpublished_lessons=1)
    draft_id, _ = make_course(app, tenant, teacher, published=False)
    enroll_row(app, tenant, teacher, course_id)
    enroll_row(app, tenant, learner, course_id)
    hidden = lesson_ids[1]
    headers = headers_for(app, tenant, teacher)
    assert client.get(f"/api/v1/lessons/{hidden}", headers=headers).status_code == 200

    admin = headers_for(app, tenant, admin_id(app, tenant))
    r = client.patch(f"/api/v1/users/{teacher}", json={"role": "student"}, headers=admin)
    assert r.status_code == 200

    assert_error(client.get(f"/api/v1/lessons/{hidden}", headers=headers), 404)
    assert client.get(f"/api/v1/lessons/{lesson_ids[0]}", headers=headers).status_code == 200
    assert_error(client.get(f"/api/v1/courses/{draft_id}", headers=headers), 404)
    outline = client.get(f"/api/v1/courses/{course_id}", headers=headers).get_json()["lessons"]
    assert [lesson["id"] for lesson in outline] == [lesson_ids[0]]
    assert_error(
        client.get(f"/api/v1/courses/{course_id}/progress?user_id={learner}", headers=headers), 403
    )
    assert_error(client.get(f"/api/v1/courses/{course_id}/enrollments", headers=headers), 403)
