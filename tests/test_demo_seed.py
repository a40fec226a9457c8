"""`flask seed-demo` / `flask demo`: a consistent demo school, and safe to run twice."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask import Flask
from sqlalchemy import Connection, and_, func, select, text

from lms_app.accounts.models import User
from lms_app.accounts.passwords import verify_password
from lms_app.catalog.models import Category, Course, Lesson
from lms_app.db.engines import translate_map
from lms_app.demo import cli as demo_cli
from lms_app.demo import seed as seed_module
from lms_app.demo.seed import (
    DEMO_ADMIN_EMAIL,
    DEMO_STUDENT_PASSWORD,
    INSTRUCTORS,
    student_email,
    tenant_counts,
)
from lms_app.extensions import db
from lms_app.learning.models import Enrollment, LessonProgress, UserActivity
from lms_app.tenancy.provisioning import drop_tenant
from lms_app.tenancy.registry import load_tenant
from tests.conftest import unique_slug

STUDENTS = 50
COURSES = 10


@dataclass
class Seeded:
    slug: str
    schema: str
    counts: dict[str, int]
    output: str


def seed_args(slug: str) -> list[str]:
    return ["--slug", slug, "--students", str(STUDENTS), "--courses", str(COURSES)]


@pytest.fixture(scope="module")
def seeded(app: Flask) -> Iterator[Seeded]:
    slug = unique_slug("demo")
    result = app.test_cli_runner().invoke(args=["seed-demo", *seed_args(slug)])
    assert result.exit_code == 0, result.output
    with app.app_context():
        tenant = load_tenant(db.engine, slug)
        assert tenant is not None
        counts = tenant_counts(db.engine, tenant.schema_name)
    yield Seeded(slug, tenant.schema_name, counts, result.output)
    with app.app_context():
        drop_tenant(db.engine, slug)


@pytest.fixture
def conn(app: Flask, seeded: Seeded) -> Iterator[Connection]:
    with app.app_context(), db.engine.connect() as c:
        yield c.execution_options(schema_translate_map=translate_map(seeded.schema))


def test_seed_fills_the_tenant(seeded: Seeded, conn: Connection) -> None:
    assert f"seeded tenant {seeded.slug}" in seeded.output
    counts = seeded.counts
    assert counts["users"] == 1 + INSTRUCTORS + STUDENTS
    assert counts["categories"] == 8
    assert counts["courses"] == COURSES
    assert 5 * COURSES <= counts["lessons"] <= 15 * COURSES
    assert counts["enrollments"] >= 5 * STUDENTS
    assert counts["lesson_progress"] > 0
    assert counts["user_activity"] >= counts["enrollments"]

    roles = dict(conn.execute(select(User.role, func.count()).group_by(User.role)).all())
    assert roles == {"admin": 1, "instructor": INSTRUCTORS, "student": STUDENTS}
    admin = conn.execute(select(User.email).where(User.role == "admin")).scalar_one()
    assert admin == DEMO_ADMIN_EMAIL
    # One hash shared by every student; it checks against the documented password.
    hashes = conn.scalars(select(User.password_hash).where(User.role == "student")).all()
    assert len(set(hashes)) == 1
    assert verify_password(hashes[0], DEMO_STUDENT_PASSWORD)
    assert conn.scalar(select(User.id).where(User.email == student_email(1))) is not None

    per_student = (
        select(func.count().label("n")).select_from(Enrollment).group_by(Enrollment.user_id)
    ).subquery()
    students, fewest, most = conn.execute(
        select(func.count(), func.min(per_student.c.n), func.max(per_student.c.n))
    ).one()
    enrollable = conn.scalar(select(func.count()).where(Course.is_published))
    assert students == STUDENTS
    assert min(5, enrollable) <= fewest <= most <= min(10, enrollable)
    assert conn.scalar(select(func.count()).select_from(Category)) == 8


def test_total_lessons_counts_published_lessons(conn: Connection) -> None:
    published = (
        select(Lesson.course_id, func.count().label("n"))
        .where(Lesson.is_published)
        .group_by(Lesson.course_id)
        .subquery()
    )
    rows = conn.execute(
        select(Course.id, Course.total_lessons, func.coalesce(published.c.n, 0)).outerjoin(
            published, published.c.course_id == Course.id
        )
    ).all()
    assert len(rows) == COURSES
    assert all(total == n for _id, total, n in rows), rows
    # The catalog has something to show, and some lessons are still drafts.
    assert any(total > 0 for _id, total, _n in rows)
    assert conn.scalar(select(func.count()).where(~Lesson.is_published)) > 0


def test_completed_at_is_set_iff_progress_is_100(conn: Connection) -> None:
    mismatched = conn.scalar(
        select(func.count()).where(
            (LessonProgress.completed_at.is_not(None))
            != (LessonProgress.progress_percentage == 100)
        )
    )
    assert mismatched == 0
    assert conn.scalar(select(func.count()).where(LessonProgress.progress_percentage == 100)) > 0
    assert conn.scalar(select(func.count()).where(LessonProgress.progress_percentage < 100)) > 0
    bad_range = conn.scalar(
        select(func.count()).where(
            (LessonProgress.progress_percentage < 0)
            | (LessonProgress.progress_percentage > 100)
            | (LessonProgress.time_spent < 0)
        )
    )
    assert bad_range == 0


def test_progress_only_where_actively_enrolled(conn: Connection) -> None:
    """Every progress row belongs to a published lesson of its course_id, in a course
    the learner is enrolled in and has not dropped ("completed" enrollments are the
    active ones that reached 100 % on every published lesson)."""
    orphans = conn.scalar(
        select(func.count())
        .select_from(LessonProgress)
        .join(Lesson, Lesson.id == LessonProgress.lesson_id)
        .outerjoin(
            Enrollment,
            and_(
                Enrollment.user_id == LessonProgress.user_id,
                Enrollment.course_id == LessonProgress.course_id,
            ),
        )
        .where(
            (Enrollment.id.is_(None))
            | (Enrollment.status.not_in(("active", "completed")))
            | (Lesson.course_id != LessonProgress.course_id)
            | ~Lesson.is_published
            | (LessonProgress.updated_at < Enrollment.enrolled_at)
        )
    )
    assert orphans == 0
    statuses = dict(
        conn.execute(select(Enrollment.status, func.count()).group_by(Enrollment.status)).all()
    )
    assert statuses.get("active", 0) > 0
    # Dropped enrollments carry no progress.
    dropped_with_progress = conn.scalar(
        select(func.count())
        .select_from(Enrollment)
        .join(
            LessonProgress,
            and_(
                LessonProgress.user_id == Enrollment.user_id,
                LessonProgress.course_id == Enrollment.course_id,
            ),
        )
        .where(Enrollment.status == "dropped")
    )
    assert dropped_with_progress == 0
    # Nobody is enrolled in a draft course.
    in_drafts = conn.scalar(
        select(func.count())
        .select_from(Enrollment)
        .join(Course, Course.id == Enrollment.course_id)
        .where(~Course.is_published)
    )
    assert in_drafts == 0
    assert conn.scalar(select(func.count()).select_from(UserActivity)) > 0


def test_second_run_changes_nothing(app: Flask, seeded: Seeded) -> None:
    result = app.test_cli_runner().invoke(args=["seed-demo", *seed_args(seeded.slug)])
    assert result.exit_code == 0, result.output
    assert "already seeded" in result.output
    with app.app_context():
        assert tenant_counts(db.engine, seeded.schema) == seeded.counts


def test_demo_command_seeds_prints_and_serves(
    app: Flask, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: dict[str, object] = {}

    def fake_run_simple(host, port, application, **options):
        served.update(host=host, port=port, app=application, **options)

    monkeypatch.setattr(demo_cli, "run_simple", fake_run_simple)
    result = app.test_cli_runner().invoke(
        args=["demo", "--host", "0.0.0.0", "--port", "5999", *seed_args(seeded.slug)]
    )
    assert result.exit_code == 0, result.output
    assert "already seeded" in result.output
    assert "http://127.0.0.1:5999" in result.output
    assert f"X-Tenant: {seeded.slug}" in result.output
    assert f"curl -H 'X-Tenant: {seeded.slug}' http://127.0.0.1:5999/api/v1/tenant" in result.output
    assert DEMO_ADMIN_EMAIL in result.output and student_email(1) in result.output
    assert served["host"] == "0.0.0.0" and served["port"] == 5999
    assert served["app"] is app and served["use_reloader"] is False
    with app.app_context():
        assert tenant_counts(db.engine, seeded.schema) == seeded.counts


def test_bad_slug_is_rejected(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["seed-demo", "--slug", "Not A Slug"])
    assert result.exit_code != 0
    assert "slug" in result.output


def test_interrupted_seed_leaves_nothing_and_can_be_rerun(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    slug = unique_slug("demo")
    real_bulk_insert = seed_module._bulk_insert

    def failing_bulk_insert(conn, model, rows):
        if model is LessonProgress:
            raise RuntimeError("interrupted")
        real_bulk_insert(conn, model, rows)

    runner = app.test_cli_runner()
    try:
        with monkeypatch.context() as m:
            m.setattr(seed_module, "_bulk_insert", failing_bulk_insert)
            result = runner.invoke(args=["seed-demo", *seed_args(slug)])
        assert result.exit_code != 0
        with app.app_context():
            tenant = load_tenant(db.engine, slug)
            assert tenant is not None  # provisioning committed on its own
            counts = tenant_counts(db.engine, tenant.schema_name)
        assert counts["users"] == 1 and counts["courses"] == 0 and counts["enrollments"] == 0

        result = runner.invoke(args=["seed-demo", *seed_args(slug)])
        assert result.exit_code == 0, result.output
        assert f"seeded tenant {slug}" in result.output
        with app.app_context():
            counts = tenant_counts(db.engine, tenant.schema_name)
        assert counts["users"] == 1 + INSTRUCTORS + STUDENTS
        assert counts["courses"] == COURSES and counts["lesson_progress"] > 0
    finally:
        with app.app_context():
            drop_tenant(db.engine, slug)


def test_seeding_an_existing_school_retires_its_cached_catalog(app: Flask, make_tenant) -> None:
    from tests.conftest import add_user, headers_for

    tenant = make_tenant()
    client = app.test_client()
    headers = headers_for(app, tenant, add_user(app, tenant, "student"))
    page = "/api/v1/courses?limit=100"
    assert client.get(page, headers=headers).get_json()["items"] == []  # now cached
    result = app.test_cli_runner().invoke(args=["seed-demo", *seed_args(tenant.slug)])
    assert result.exit_code == 0, result.output
    with app.app_context(), db.engine.connect() as c:
        listed = c.execute(
            text(
                f"SELECT count(*) FROM {tenant.schema_name}.courses "
                "WHERE is_published AND NOT is_archived"
            )
        ).scalar_one()
    assert listed > 0
    items = client.get(page, headers=headers).get_json()["items"]
    assert len(items) == listed
