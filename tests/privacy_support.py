"""A school with learners who have enrolments, progress and activity, for the
data-protection and audit tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient

from lms_app.extensions import db
from lms_app.learning.models import UserActivity
from lms_app.tenancy.context import TenantInfo, tenant_scope
from tests.conftest import add_user, admin_id, headers_for
from tests.test_learning_api import enroll_row, make_course, progress_row


@dataclass
class Learner:
    id: int
    email: str
    name: str
    headers: dict[str, str]
    activity_ids: list[int] = field(default_factory=list)


@dataclass
class School:
    tenant: TenantInfo
    admin_id: int
    admin: dict[str, str]
    instructor_id: int
    instructor: dict[str, str]
    course_id: int
    lesson_ids: list[int]
    other_course_id: int
    learners: list[Learner]


def add_activity(app: Flask, tenant: TenantInfo, user_id: int, course_id: int, n: int) -> list[int]:
    """`n` activity rows (no API writes them: the seed and imports do)."""
    start = datetime.now(UTC) - timedelta(days=n)
    with app.app_context(), tenant_scope(tenant):
        rows = [
            UserActivity(
                user_id=user_id,
                activity_type="lesson_view",
                course_id=course_id,
                occurred_at=start + timedelta(days=i),
            )
            for i in range(n)
        ]
        db.session.add_all(rows)
        db.session.commit()
        return [row.id for row in rows]


def seed(app: Flask, client: FlaskClient, tenant: TenantInfo, learners: int = 2) -> School:
    admin = admin_id(app, tenant)
    instructor = add_user(app, tenant, "instructor", name="Ingrid Teacher")
    course_id, lesson_ids = make_course(app, tenant, instructor, lessons=3)
    other_course_id, other_lessons = make_course(app, tenant, instructor, lessons=2)
    people = []
    for i in range(learners):
        name = f"Zelda Quixote{i}"
        email = f"zelda.quixote{i}.{tenant.slug}@example.test"
        uid = add_user(app, tenant, "student", email=email, name=name)
        enroll_row(app, tenant, uid, course_id)
        enroll_row(app, tenant, uid, other_course_id)
        progress_row(app, tenant, uid, lesson_ids[0], 100, time_spent=300 + i)
        progress_row(app, tenant, uid, lesson_ids[1], 40 + i, time_spent=60)
        progress_row(app, tenant, uid, other_lessons[0], 10, time_spent=7)
        learner = Learner(uid, email, name, headers_for(app, tenant, uid))
        learner.activity_ids = add_activity(app, tenant, uid, course_id, 5 + i)
        people.append(learner)
    return School(
        tenant=tenant,
        admin_id=admin,
        admin=headers_for(app, tenant, admin),
        instructor_id=instructor,
        instructor=headers_for(app, tenant, instructor),
        course_id=course_id,
        lesson_ids=lesson_ids,
        other_course_id=other_course_id,
        learners=people,
    )
