"""Course and learner analytics: one aggregate statement each.

Per-learner completion is computed once in a grouped subquery over the progress
index (ix_lesson_progress_course / ix_lesson_progress_user_course), instead of the
seed's 5-way join that multiplies rows before counting them.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, true

from lms_app.accounts.models import User
from lms_app.catalog.models import Course, Lesson
from lms_app.extensions import db
from lms_app.learning.models import Enrollment, LessonProgress

LP = LessonProgress
NOT_DROPPED = Enrollment.status != "dropped"


def percent(value: Any) -> float:
    return float(Decimal(value or 0).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _completed_lessons_by_user(course_filter):
    """user_id, course_id -> lessons at 100 % that are published."""
    return (
        select(LP.user_id, LP.course_id, func.count().label("done"))
        .join(Lesson, and_(Lesson.id == LP.lesson_id, Lesson.is_published))
        .where(LP.progress_percentage == 100, course_filter)
        .group_by(LP.user_id, LP.course_id)
        .subquery("done")
    )


def course_analytics(course_id: int) -> dict[str, Any] | None:
    """None when the course does not exist; else the figures and its instructor_id."""
    done = _completed_lessons_by_user(LP.course_id == course_id)
    total = select(Course.total_lessons).where(Course.id == course_id).scalar_subquery()
    learner_done = func.coalesce(done.c.done, 0)
    learner_pct = case((total > 0, func.least(100, learner_done * literal(100.0) / total)), else_=0)
    learner_completed = or_(
        Enrollment.status == "completed", and_(total > 0, learner_done >= total)
    )
    learners = (
        select(
            func.count().filter(NOT_DROPPED).label("enrolled"),
            func.count().filter(Enrollment.status == "active").label("active"),
            func.count().filter(NOT_DROPPED, learner_completed).label("completed"),
            func.avg(learner_pct).filter(NOT_DROPPED).label("average_progress"),
        )
        .select_from(Enrollment)
        .outerjoin(done, done.c.user_id == Enrollment.user_id)
        .where(Enrollment.course_id == course_id)
        .subquery("learners")
    )
    time_spent = (
        select(func.coalesce(func.sum(LP.time_spent), 0).label("total_time_spent"))
        .where(LP.course_id == course_id)
        .subquery("time_spent")
    )
    row = db.session.execute(
        select(Course.instructor_id, learners, time_spent.c.total_time_spent)
        .select_from(Course)
        .join(learners, true())
        .join(time_spent, true())
        .where(Course.id == course_id)
    ).first()
    if row is None:
        return None
    enrolled = row.enrolled or 0
    return {
        "instructor_id": row.instructor_id,
        "course_id": course_id,
        "enrolled": enrolled,
        "active": row.active or 0,
        "completed": row.completed or 0,
        "completion_rate": percent(Decimal(row.completed) * 100 / enrolled) if enrolled else 0.0,
        "average_progress": percent(row.average_progress),
        "total_time_spent": int(row.total_time_spent),
    }


def user_analytics(user_id: int) -> dict[str, Any] | None:
    """None when the user does not exist."""
    done = _completed_lessons_by_user(LP.user_id == user_id)
    enrollments = (
        select(
            func.count().label("courses_enrolled"),
            func.count()
            .filter(
                or_(
                    Enrollment.status == "completed",
                    and_(
                        Course.total_lessons > 0,
                        func.coalesce(done.c.done, 0) >= Course.total_lessons,
                    ),
                )
            )
            .label("courses_completed"),
        )
        .select_from(Enrollment)
        .join(Course, Course.id == Enrollment.course_id)
        .outerjoin(done, done.c.course_id == Enrollment.course_id)
        .where(Enrollment.user_id == user_id, NOT_DROPPED)
        .subquery("enrollments")
    )
    progress = (
        select(
            func.count().filter(LP.progress_percentage == 100).label("lessons_completed"),
            func.coalesce(func.sum(LP.time_spent), 0).label("total_time_spent"),
            func.max(LP.updated_at).label("last_activity"),
        )
        .where(LP.user_id == user_id)
        .subquery("progress")
    )
    row = db.session.execute(
        select(User.id, enrollments, progress)
        .select_from(User)
        .join(enrollments, true())
        .join(progress, true())
        .where(User.id == user_id, User.erased_at.is_(None))
    ).first()
    if row is None:
        return None
    return {
        "user_id": user_id,
        "courses_enrolled": row.courses_enrolled,
        "courses_completed": row.courses_completed,
        "lessons_completed": row.lessons_completed,
        "total_time_spent": int(row.total_time_spent),
        "last_activity": row.last_activity,
    }
