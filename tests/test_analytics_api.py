"""Analytics: GET /api/v1/analytics/courses/<id> and /analytics/users/<id>.

A small school is built row by row and every figure is checked against a hand
computation from the same rows (and against literal numbers worked out on paper).

Definitions the hand computation follows (API.md names the figures; the rest is
lms_app's documented choice):

- course `enrolled`: enrollments not dropped; `active`: status active;
  `completed`: not dropped and every published lesson at 100 % (or status
  completed); `completion_rate` = completed / enrolled x 100; `average_progress` =
  mean over not-dropped enrollments of (published lessons at 100 % / published
  lessons x 100); both rounded to 2 decimals. `total_time_spent`: every progress
  row of the course (time a dropped learner spent was still spent).
- user `courses_enrolled` / `courses_completed`: the user's enrollments not dropped
  (completed as above); `lessons_completed`, `total_time_spent` and
  `last_activity` come from every progress row of the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from flask import Flask
from flask.testing import FlaskClient

from lms_app.catalog.models import Course, Lesson
from lms_app.extensions import db
from lms_app.learning.models import Enrollment, LessonProgress
from lms_app.tenancy.context import TenantInfo, tenant_scope
from tests.conftest import ADMIN_PASSWORD, add_user, assert_error, login, tenant_headers, user_email

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def pct(value: Fraction | int) -> float:
    """A percentage rounded half-up to 2 decimals, as API.md rounds."""
    value = Fraction(value)
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return float(exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


# --- the school ---------------------------------------------------------------------------


@dataclass
class School:
    tenant: TenantInfo
    admin: dict[str, str]
    owner_id: int
    owner: dict[str, str]
    other_instructor: dict[str, str]
    students: dict[str, int]  # name -> id
    course_c: int  # 3 published lessons + 1 unpublished
    course_d: int  # 2 published lessons
    course_empty: int  # no lessons
    published: dict[int, set[int]]  # course -> published lesson ids
    enrollments: list[tuple[int, int, str]]  # user, course, status
    progress: list[dict]  # the lesson_progress rows


@pytest.fixture(scope="module")
def school(app: Flask, make_tenant) -> School:
    client = app.test_client()
    tenant = make_tenant()
    owner_id = add_user(app, tenant, "instructor")
    other_id = add_user(app, tenant, "instructor")
    students = {
        name: add_user(app, tenant, "student")
        for name in ("s1", "s2", "s3", "s4", "s5", "s6", "idle")
    }
    s = students

    with app.app_context(), tenant_scope(tenant):
        course_c = Course(title="C", instructor_id=owner_id, is_published=True, total_lessons=3)
        course_d = Course(title="D", instructor_id=owner_id, is_published=True, total_lessons=2)
        course_e = Course(title="E", instructor_id=owner_id, is_published=True, total_lessons=0)
        db.session.add_all([course_c, course_d, course_e])
        db.session.flush()
        c1, c2, c3, c_hidden = (
            Lesson(course_id=course_c.id, title=f"C{i}", order_index=i, is_published=i < 3)
            for i in range(4)
        )
        d1, d2 = (Lesson(course_id=course_d.id, title=f"D{i}", order_index=i) for i in range(2))
        db.session.add_all([c1, c2, c3, c_hidden, d1, d2])
        db.session.flush()
        C, D, E = course_c.id, course_d.id, course_e.id

        enrollments = [
            (s["s1"], C, "active"),
            (s["s2"], C, "active"),
            (s["s3"], C, "completed"),
            (s["s4"], C, "dropped"),
            (s["s5"], C, "active"),
            (s["s6"], C, "active"),
            (s["s1"], D, "active"),
            (s["s2"], D, "active"),
            (s["s4"], D, "dropped"),
            (s["s1"], E, "active"),
        ]
        db.session.add_all(
            Enrollment(user_id=u, course_id=c, status=st) for u, c, st in enrollments
        )

        minute = 0

        def row(user: str, lesson: Lesson, pct_: int, time_spent: int) -> dict:
            nonlocal minute
            minute += 1
            at = T0 + timedelta(minutes=minute)
            return {
                "user_id": s[user],
                "lesson_id": lesson.id,
                "course_id": lesson.course_id,
                "progress_percentage": pct_,
                "time_spent": time_spent,
                "completed_at": at if pct_ == 100 else None,
                "updated_at": at,
            }

        progress = [
            # s1: every published lesson of C done -> 100 %
            row("s1", c1, 100, 100),
            row("s1", c2, 100, 200),
            row("s1", c3, 100, 300),
            # s2: 2 of 3 published, the third at 40 %; the unpublished one does not count
            row("s2", c1, 100, 10),
            row("s2", c2, 100, 10),
            row("s2", c3, 40, 10),
            row("s2", c_hidden, 100, 10),
            # s3: status completed, all done
            row("s3", c1, 100, 60),
            row("s3", c2, 100, 60),
            row("s3", c3, 100, 60),
            # s4: dropped after 2 lessons
            row("s4", c1, 100, 1000),
            row("s4", c2, 100, 1000),
            # s5: enrolled, nothing yet; s6: 2 of 3
            row("s6", c1, 100, 30),
            row("s6", c2, 100, 5),
            # course D: s1 half-way, s2 done, s4 (dropped) one lesson
            row("s1", d1, 100, 7),
            row("s1", d2, 20, 0),
            row("s2", d1, 100, 11),
            row("s2", d2, 100, 13),
            row("s4", d1, 100, 4),
        ]
        db.session.add_all(LessonProgress(**r) for r in progress)
        db.session.commit()
        published = {
            C: {c1.id, c2.id, c3.id},
            D: {d1.id, d2.id},
            E: set(),
        }

    def headers_of(user_id: int) -> dict[str, str]:
        return login(client, tenant, user_email(app, tenant, user_id))

    return School(
        tenant=tenant,
        admin=login(client, tenant, f"admin@{tenant.slug}.test", ADMIN_PASSWORD),
        owner_id=owner_id,
        owner=headers_of(owner_id),
        other_instructor=headers_of(other_id),
        students=students,
        course_c=C,
        course_d=D,
        course_empty=E,
        published=published,
        enrollments=enrollments,
        progress=progress,
    )


# --- the hand computation --------------------------------------------------------------------


def course_progress(school: School, user_id: int, course_id: int) -> Fraction:
    lessons = school.published[course_id]
    if not lessons:
        return Fraction(0)
    done = {
        p["lesson_id"]
        for p in school.progress
        if p["user_id"] == user_id and p["lesson_id"] in lessons and p["progress_percentage"] == 100
    }
    return Fraction(len(done) * 100, len(lessons))


def expected_course(school: School, course_id: int) -> dict:
    kept = [(u, st) for u, c, st in school.enrollments if c == course_id and st != "dropped"]
    progress = [course_progress(school, u, course_id) for u, _ in kept]
    completed = sum(
        1
        for (_, st), p in zip(kept, progress, strict=True)
        if st == "completed" or (school.published[course_id] and p == 100)
    )
    enrolled = len(kept)
    return {
        "course_id": course_id,
        "enrolled": enrolled,
        "active": sum(1 for _, st in kept if st == "active"),
        "completed": completed,
        "completion_rate": pct(Fraction(completed * 100, enrolled)) if enrolled else 0.0,
        "average_progress": pct(sum(progress, Fraction(0)) / enrolled) if enrolled else 0.0,
        "total_time_spent": sum(
            p["time_spent"] for p in school.progress if p["course_id"] == course_id
        ),
    }


def expected_user(school: School, user_id: int) -> dict:
    courses = [(c, st) for u, c, st in school.enrollments if u == user_id and st != "dropped"]
    rows = [p for p in school.progress if p["user_id"] == user_id]
    return {
        "user_id": user_id,
        "courses_enrolled": len(courses),
        "courses_completed": sum(
            1
            for c, st in courses
            if st == "completed"
            or (school.published[c] and course_progress(school, user_id, c) == 100)
        ),
        "lessons_completed": sum(1 for p in rows if p["progress_percentage"] == 100),
        "total_time_spent": sum(p["time_spent"] for p in rows),
        "last_activity": max((p["updated_at"] for p in rows), default=None),
    }


def get_json(client: FlaskClient, url: str, headers: dict) -> dict:
    """The figures, without course analytics' `as_of` (checked to be a recent time)."""
    r = client.get(url, headers=headers)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    if "/analytics/courses/" in url:
        as_of = datetime.fromisoformat(body.pop("as_of"))
        assert abs((datetime.now(UTC) - as_of).total_seconds()) < 600
    return body


# --- course analytics -----------------------------------------------------------------------


def test_course_analytics_figures(client, school):
    body = get_json(client, f"/api/v1/analytics/courses/{school.course_c}", school.admin)
    expected = expected_course(school, school.course_c)
    assert body == expected
    # On paper: s1, s2, s3, s5, s6 count (s4 dropped); s1 and s3 have finished; progress
    # 100, 66.67, 100, 0, 66.67 -> mean 66.67; time 600 + 40 + 180 + 2000 + 35.
    assert body == {
        "course_id": school.course_c,
        "enrolled": 5,
        "active": 4,
        "completed": 2,
        "completion_rate": 40.0,
        "average_progress": 66.67,
        "total_time_spent": 2855,
    }


def test_course_analytics_second_course(client, school):
    body = get_json(client, f"/api/v1/analytics/courses/{school.course_d}", school.owner)
    assert body == expected_course(school, school.course_d)
    assert body == {
        "course_id": school.course_d,
        "enrolled": 2,
        "active": 2,
        "completed": 1,
        "completion_rate": 50.0,
        "average_progress": 75.0,
        "total_time_spent": 35,
    }


def test_course_analytics_course_without_lessons(client, school):
    body = get_json(client, f"/api/v1/analytics/courses/{school.course_empty}", school.admin)
    assert body == expected_course(school, school.course_empty)
    assert body == {
        "course_id": school.course_empty,
        "enrolled": 1,
        "active": 1,
        "completed": 0,
        "completion_rate": 0.0,
        "average_progress": 0.0,
        "total_time_spent": 0,
    }


def test_course_analytics_without_enrollments(app, client, school):
    with app.app_context(), tenant_scope(school.tenant):
        course = Course(title="Lonely", instructor_id=school.owner_id, total_lessons=0)
        db.session.add(course)
        db.session.commit()
        course_id = course.id
    body = get_json(client, f"/api/v1/analytics/courses/{course_id}", school.owner)
    assert body == {
        "course_id": course_id,
        "enrolled": 0,
        "active": 0,
        "completed": 0,
        "completion_rate": 0.0,
        "average_progress": 0.0,
        "total_time_spent": 0,
    }


def test_course_analytics_permissions(client, school):
    url = f"/api/v1/analytics/courses/{school.course_c}"
    assert client.get(url, headers=school.owner).status_code == 200
    assert client.get(url, headers=school.admin).status_code == 200
    assert_error(client.get(url, headers=school.other_instructor), 403)
    student = login(
        client, school.tenant, user_email(client.application, school.tenant, school.students["s1"])
    )
    assert_error(client.get(url, headers=student), 403)
    assert_error(client.get(url, headers=tenant_headers(school.tenant)), 401)
    assert_error(client.get("/api/v1/analytics/courses/987654321", headers=school.admin), 404)
    assert_error(client.get(f"/api/v1/analytics/courses/{2**63}", headers=school.admin), 404)


# --- user analytics -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["s1", "s2", "s3", "s4", "s5", "s6", "idle"])
def test_user_analytics_figures(client, school, name):
    user_id = school.students[name]
    body = get_json(client, f"/api/v1/analytics/users/{user_id}", school.admin)
    expected = expected_user(school, user_id)
    last = expected.pop("last_activity")
    got_last = body.pop("last_activity")
    assert body == expected
    if last is None:
        assert got_last is None
    else:
        assert datetime.fromisoformat(got_last) == last


def test_user_analytics_on_paper(client, school):
    s = school.students
    figures = {
        name: get_json(client, f"/api/v1/analytics/users/{s[name]}", school.admin)
        for name in ("s1", "s2", "s4", "idle")
    }
    # s1: C (done) and D (half) and E (no lessons); 3 + 1 lessons at 100 %; 600 + 7 s.
    assert {k: figures["s1"][k] for k in ("courses_enrolled", "courses_completed")} == {
        "courses_enrolled": 3,
        "courses_completed": 1,
    }
    assert figures["s1"]["lessons_completed"] == 4
    assert figures["s1"]["total_time_spent"] == 607
    # s2: C at 2/3 (the unpublished lesson does not finish it), D done.
    assert figures["s2"]["courses_enrolled"] == 2
    assert figures["s2"]["courses_completed"] == 1
    assert figures["s2"]["total_time_spent"] == 64
    # s4 dropped everything: no courses, but the work done stays on record.
    assert figures["s4"]["courses_enrolled"] == 0
    assert figures["s4"]["courses_completed"] == 0
    assert figures["s4"]["lessons_completed"] == 3
    assert figures["s4"]["total_time_spent"] == 2004
    assert datetime.fromisoformat(figures["s4"]["last_activity"]) == T0 + timedelta(minutes=19)
    assert figures["idle"] == {
        "user_id": s["idle"],
        "courses_enrolled": 0,
        "courses_completed": 0,
        "lessons_completed": 0,
        "total_time_spent": 0,
        "last_activity": None,
    }


def test_user_analytics_permissions(app, client, school):
    s1, s2 = school.students["s1"], school.students["s2"]
    student = login(client, school.tenant, user_email(app, school.tenant, s1))
    assert client.get(f"/api/v1/analytics/users/{s1}", headers=student).status_code == 200
    assert_error(client.get(f"/api/v1/analytics/users/{s2}", headers=student), 403)
    assert_error(client.get(f"/api/v1/analytics/users/{s1}", headers=school.owner), 403)
    assert (
        client.get(f"/api/v1/analytics/users/{school.owner_id}", headers=school.owner).status_code
        == 200
    )
    assert client.get(f"/api/v1/analytics/users/{s2}", headers=school.admin).status_code == 200
    assert_error(
        client.get(f"/api/v1/analytics/users/{s1}", headers=tenant_headers(school.tenant)), 401
    )
    assert_error(client.get("/api/v1/analytics/users/987654321", headers=school.admin), 404)
    # A non-admin asking about an unknown id learns nothing: 403, not 404.
    assert_error(client.get("/api/v1/analytics/users/987654321", headers=student), 403)


# --- query budget -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["courses", "users"])
def test_analytics_is_one_statement(client, school, count_queries, kind):
    target = school.course_c if kind == "courses" else school.students["s2"]
    url = f"/api/v1/analytics/{kind}/{target}"
    if kind == "courses":  # other tests read these figures: retire them (a course write)
        title = client.get(f"/api/v1/courses/{target}", headers=school.admin).get_json()["title"]
        patch = client.patch(
            f"/api/v1/courses/{target}", json={"title": title}, headers=school.admin
        )
        assert patch.status_code == 200
    # Warms the auth state and the generation snapshot (a write drops it).
    assert client.get("/api/v1/me", headers=school.admin).status_code == 200
    # Course figures are cached (the seed's analytics TTL); a learner's never are, and
    # an admin reading a learner's figures also writes its audit event (issue 13).
    for expected in (1, 0) if kind == "courses" else (2, 2):
        with count_queries() as q:
            r = client.get(url, headers=school.admin)
        assert r.status_code == 200
        assert q.count == expected, q.statements


# --- tenant isolation -------------------------------------------------------------------------


def test_analytics_tenant_isolation(app, client, school, make_tenant):
    other = make_tenant()
    other_admin = login(client, other, f"admin@{other.slug}.test", ADMIN_PASSWORD)
    course_url = f"/api/v1/analytics/courses/{school.course_c}"
    user_url = f"/api/v1/analytics/users/{school.students['s1']}"

    # A's token in B: 401, whatever the route.
    crossed = {**school.admin, "X-Tenant": other.slug}
    assert_error(client.get(course_url, headers=crossed), 401)
    assert_error(client.get(user_url, headers=crossed), 401)
    # A's ids in B with B's own admin: B has no such course or user.
    assert_error(client.get(course_url, headers=other_admin), 404)
    assert_error(client.get(user_url, headers=other_admin), 404)
    # And B's admin (same user id as A's admin) sees B's empty figures, not A's.
    me = client.get("/api/v1/me", headers=other_admin).get_json()["id"]
    body = get_json(client, f"/api/v1/analytics/users/{me}", other_admin)
    assert body["courses_enrolled"] == 0 and body["total_time_spent"] == 0
