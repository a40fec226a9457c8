"""Reads of learning, each one hand-shaped statement (the tests hold the query budgets).

Core over the mapped tables: the hot paths need no identity map, and a row per
result is all the routes dump (the roster too: measured in bench/orm_bench.py).
Per-row progress comes
from a LATERAL aggregate over the (user_id, course_id) index of lesson_progress, so
a page costs one statement whatever its size.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    Numeric,
    Row,
    Select,
    and_,
    bindparam,
    cast,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    tuple_,
)

from lms_app.accounts.models import User
from lms_app.catalog.models import Course, Lesson
from lms_app.db.arrays import array_param
from lms_app.db.prepared import prepare
from lms_app.db.reads import read
from lms_app.extensions import db
from lms_app.learning.models import Enrollment, LessonProgress

users = User.__table__
courses = Course.__table__
lessons = Lesson.__table__
enrollments = Enrollment.__table__
progress = LessonProgress.__table__


def id_array(name: str) -> ColumnElement[Any]:
    """A bigint[] parameter: one bind (and one literal) whatever the number of ids."""
    return array_param(name, BigInteger())


def progress_aggregate(user_id: Any, course_id: Any):
    """LATERAL (completed_lessons, last_activity) of one user in one course.

    Completed = rows at 100 % whose lesson is still published, so the count agrees
    with `courses.total_lessons` (published lessons only).
    """
    return (
        select(
            func.count()
            .filter(and_(progress.c.progress_percentage == 100, lessons.c.is_published))
            .label("completed_lessons"),
            func.max(progress.c.updated_at).label("last_activity"),
        )
        .select_from(progress.join(lessons, lessons.c.id == progress.c.lesson_id))
        .where(progress.c.user_id == user_id, progress.c.course_id == course_id)
        .lateral("agg")
    )


def percentage(completed: Any, total: Any) -> ColumnElement[Any]:
    """completed / total x 100, rounded to 2 decimals; 0 for a course without lessons."""
    return func.coalesce(
        func.round(cast(completed, Numeric) / func.nullif(total, 0) * 100, 2), 0
    ).label("progress_percentage")


# What decides who may see a lesson, besides the lesson's own is_published.
COURSE_ACCESS_COLUMNS = (
    courses.c.is_published.label("course_published"),
    courses.c.is_archived.label("course_archived"),
    courses.c.instructor_id,
)


def _lesson_visibility_columns() -> list[ColumnElement[Any]]:
    return [
        lessons.c.id,
        lessons.c.course_id,
        lessons.c.is_published,
        *COURSE_ACCESS_COLUMNS,
        enrollments.c.status.label("enrollment_status"),
    ]


def _lesson_joins(user_id: int):
    return lessons.join(courses, courses.c.id == lessons.c.course_id).outerjoin(
        enrollments,
        and_(enrollments.c.course_id == lessons.c.course_id, enrollments.c.user_id == user_id),
    )


# A lesson and what decides who may see it: the same for every user (cached).
LESSON_CONTENT = (
    select(
        lessons.c.id,
        lessons.c.course_id,
        lessons.c.title,
        lessons.c.content,
        lessons.c.order_index,
        lessons.c.is_published,
        lessons.c.created_at,
        lessons.c.updated_at,
        lessons.c.version,
        *COURSE_ACCESS_COLUMNS,
    )
    .join(courses, courses.c.id == lessons.c.course_id)
    .where(lessons.c.id == bindparam("lesson_id", type_=BigInteger))
)

# One user's enrolment in a course and progress on one of its lessons: one row,
# with NULLs where there is none.
_ONE_ROW = select(literal(1).label("one")).subquery("one_row")
LEARNER_STATE = select(
    enrollments.c.status.label("enrollment_status"),
    progress.c.progress_percentage,
    progress.c.time_spent,
    progress.c.completed_at,
).select_from(
    _ONE_ROW.outerjoin(
        enrollments,
        and_(
            enrollments.c.course_id == bindparam("course_id", type_=BigInteger),
            enrollments.c.user_id == bindparam("user_id", type_=BigInteger),
        ),
    ).outerjoin(
        progress,
        and_(
            progress.c.lesson_id == bindparam("lesson_id", type_=BigInteger),
            progress.c.user_id == bindparam("user_id", type_=BigInteger),
        ),
    )
)


LEARNER_STATE = prepare(LEARNER_STATE, "learner_state")


# Both at once, when the lesson is not in the cache: still one statement.
LESSON_WITH_STATE = (
    LESSON_CONTENT.add_columns(*LEARNER_STATE.selected_columns)
    .outerjoin(
        enrollments,
        and_(
            enrollments.c.course_id == lessons.c.course_id,
            enrollments.c.user_id == bindparam("user_id", type_=BigInteger),
        ),
    )
    .outerjoin(
        progress,
        and_(
            progress.c.lesson_id == lessons.c.id,
            progress.c.user_id == bindparam("user_id", type_=BigInteger),
        ),
    )
)


LESSON_WITH_STATE = prepare(LESSON_WITH_STATE, "lesson_with_state")


def lesson_with_state(lesson_id: int, user_id: int) -> Row[Any] | None:
    params = {"lesson_id": lesson_id, "user_id": user_id}
    return read(LESSON_WITH_STATE, params).first()


def learner_state(user_id: int, course_id: int, lesson_id: int) -> Row[Any]:
    params = {"user_id": user_id, "course_id": course_id, "lesson_id": lesson_id}
    return read(LEARNER_STATE, params).one()


def lesson_access(lesson_id: int, user_id: int) -> Row[Any] | None:
    """Why a progress write found nothing to write: the lesson's visibility and enrollment."""
    stmt = (
        select(*_lesson_visibility_columns())
        .select_from(_lesson_joins(user_id))
        .where(lessons.c.id == lesson_id)
    )
    return db.session.execute(stmt).first()


def progress_targets(lesson_ids: Sequence[int], user_id: int) -> Sequence[Row[Any]]:
    """Every lesson of a progress batch with its access facts, plus the transaction's now().

    now() is fixed for the transaction, so the value read here is exactly what a
    later statement of the same transaction would write as now().
    """
    stmt = (
        select(*_lesson_visibility_columns(), func.now().label("now"))
        .select_from(_lesson_joins(user_id))
        .where(lessons.c.id == func.any(id_array("lesson_ids")))
    )
    return db.session.execute(stmt, {"lesson_ids": list(lesson_ids)}).all()


# Statements of the hot reads are built once, here, with bind parameters: a request
# then pays neither their construction nor SQLAlchemy's cache-key generation (about a
# third of the CPU of GET /courses/<id>/progress, measured with py-spy).
_USER_ID = bindparam("user_id", type_=BigInteger)
_COURSE_ID = bindparam("course_id", type_=BigInteger)

COURSE_FACTS = select(
    courses.c.id,
    courses.c.instructor_id,
    courses.c.is_published,
    courses.c.is_archived,
    courses.c.total_lessons,
).where(courses.c.id == _COURSE_ID)
COURSE_FACTS = prepare(COURSE_FACTS, "course_facts")


def course_facts(course_id: int) -> Row[Any] | None:
    """What staff checks need about a course."""
    return read(COURSE_FACTS, {"course_id": course_id}).first()


def _course_progress_statement() -> Select[Any]:
    agg = progress_aggregate(_USER_ID, courses.c.id)
    return (
        select(
            courses.c.id.label("course_id"),
            courses.c.title,
            courses.c.total_lessons,
            courses.c.instructor_id,
            courses.c.is_published,
            courses.c.is_archived,
            enrollments.c.status.label("enrollment_status"),
            agg.c.completed_lessons,
            agg.c.last_activity,
            percentage(agg.c.completed_lessons, courses.c.total_lessons),
        )
        .select_from(
            courses.outerjoin(
                enrollments,
                and_(enrollments.c.course_id == courses.c.id, enrollments.c.user_id == _USER_ID),
            ).join(agg, true())
        )
        .where(courses.c.id == _COURSE_ID)
    )


COURSE_PROGRESS = prepare(_course_progress_statement(), "course_progress")


def course_progress(course_id: int, user_id: int) -> Row[Any] | None:
    """The user's progress in a course and their enrollment status: one statement."""
    params = {"course_id": course_id, "user_id": user_id}
    return read(COURSE_PROGRESS, params).first()


def _my_courses_statement(after: bool) -> Select[Any]:
    live = select(
        courses.c.id,
        courses.c.title,
        courses.c.description,
        courses.c.difficulty_level,
        courses.c.estimated_hours,
        courses.c.thumbnail_url,
        courses.c.category_id,
        courses.c.instructor_id,
        courses.c.total_lessons,
        courses.c.created_at,
        enrollments.c.id.label("enrollment_id"),
        enrollments.c.user_id,
        enrollments.c.status.label("enrollment_status"),
        enrollments.c.enrolled_at,
    ).select_from(enrollments.join(courses, courses.c.id == enrollments.c.course_id))
    live = live.where(
        enrollments.c.user_id == _USER_ID,
        enrollments.c.status != "dropped",
        # What a learner may open: a course unpublished or archived after they
        # enrolled drops out of their list (its rows stay).
        courses.c.is_published,
        ~courses.c.is_archived,
    )
    if after:
        bound = (
            bindparam("after_enrolled_at", type_=DateTime(timezone=True)),
            bindparam("after_id", type_=BigInteger),
        )
        live = live.where(tuple_(enrollments.c.enrolled_at, enrollments.c.id) < tuple_(*bound))
    # The page is cut first and only its rows get the LATERAL progress aggregate:
    # aggregating before LIMIT would cost one aggregate per enrollment.
    page = (
        live.order_by(enrollments.c.enrolled_at.desc(), enrollments.c.id.desc())
        .limit(bindparam("fetch", type_=Integer))
        .subquery("page")
    )
    agg = progress_aggregate(page.c.user_id, page.c.id)
    return (
        select(
            *(c for c in page.c if c.key != "user_id"),
            agg.c.completed_lessons,
            agg.c.last_activity,
            percentage(agg.c.completed_lessons, page.c.total_lessons),
        )
        .select_from(page.join(agg, true()))
        .order_by(page.c.enrolled_at.desc(), page.c.enrollment_id.desc())
    )


MY_COURSES = {
    after: prepare(_my_courses_statement(after), f"my_courses_{int(after)}")
    for after in (False, True)
}


def my_courses(user_id: int, limit: int, after: tuple[datetime, int] | None) -> list[Row[Any]]:
    """A page of the user's live enrollments with course and progress: one statement."""
    params: dict[str, Any] = {"user_id": user_id, "fetch": limit + 1}
    if after is not None:
        params["after_enrolled_at"], params["after_id"] = after
    return list(read(MY_COURSES[after is not None], params).all())


def _roster_statement(by_status: bool, after: bool) -> Select[Any]:
    """A page of a course's enrollments with user and progress: one statement.

    Core, though the page is enrollments with their users: the ORM version
    (contains_eager of the user, kept in bench/orm_bench.py) cost 25 % more per page
    of 50, loading and dumping 100 objects, and the roster is not cached (it shows
    live progress). Built once per shape: building it per call cost more than
    running it.
    """
    filtered = select(
        enrollments.c.id,
        enrollments.c.user_id,
        enrollments.c.course_id,
        enrollments.c.status,
        enrollments.c.enrolled_at,
    ).where(enrollments.c.course_id == bindparam("course_id", type_=BigInteger))
    if by_status:
        filtered = filtered.where(enrollments.c.status == bindparam("status"))
    if after:
        bound = (
            bindparam("after_enrolled_at", type_=DateTime(timezone=True)),
            bindparam("after_id", type_=BigInteger),
        )
        filtered = filtered.where(
            tuple_(enrollments.c.enrolled_at, enrollments.c.id) < tuple_(*bound)
        )
    # The page is cut first and only its rows get the LATERAL progress aggregate.
    page = (
        filtered.order_by(enrollments.c.enrolled_at.desc(), enrollments.c.id.desc())
        .limit(bindparam("fetch", type_=Integer))
        .subquery("page")
    )
    agg = progress_aggregate(page.c.user_id, page.c.course_id)
    return (
        select(
            page.c.id,
            page.c.status,
            page.c.enrolled_at,
            users.c.id.label("user_id"),
            users.c.name,
            users.c.email,
            agg.c.completed_lessons,
            agg.c.last_activity,
            percentage(agg.c.completed_lessons, bindparam("total", type_=Integer)),
        )
        .select_from(page.join(users, users.c.id == page.c.user_id).join(agg, true()))
        .order_by(page.c.enrolled_at.desc(), page.c.id.desc())
    )


ROSTER = {
    (by_status, after): _roster_statement(by_status, after)
    for by_status in (False, True)
    for after in (False, True)
}


def course_enrollments(
    course_id: int,
    total_lessons: int,
    limit: int,
    after: tuple[datetime, int] | None,
    status: str | None,
) -> list[Row[Any]]:
    """A page of a course's enrollments, newest first (see _roster_statement)."""
    params: dict[str, Any] = {"course_id": course_id, "fetch": limit + 1, "total": total_lessons}
    if status is not None:
        params["status"] = status
    if after is not None:
        params["after_enrolled_at"], params["after_id"] = after
    stmt = ROSTER[status is not None, after is not None]
    return list(db.session.execute(stmt, params).all())


def bulk_enroll_conflicts(
    course_id: int, user_ids: Sequence[int], *, students_only: bool
) -> Sequence[Row[Any]]:
    """Ids of a bulk enroll that may not be enrolled (`refused`: unknown users, or with
    `students_only` anyone but an active student), or whose enrollment is dropped.

    One statement for 10,000 ids: the array is unnested and anti/outer-joined.
    """
    ids = func.unnest(id_array("user_ids")).table_valued("id").render_derived(name="ids")
    # An erased account is nobody to enrol: refused like an unknown id.
    allowed = and_(users.c.id.is_not(None), users.c.erased_at.is_(None))
    if students_only:
        allowed = and_(allowed, users.c.role == "student", users.c.is_active)
    stmt = (
        select(ids.c.id, not_(allowed).label("refused"))
        .select_from(
            ids.outerjoin(users, users.c.id == ids.c.id).outerjoin(
                enrollments,
                and_(
                    enrollments.c.user_id == ids.c.id,
                    enrollments.c.course_id == course_id,
                    enrollments.c.status == "dropped",
                ),
            )
        )
        .where(or_(not_(allowed), enrollments.c.id.is_not(None)))
        .order_by(ids.c.id)
    )
    return db.session.execute(stmt, {"user_ids": list(user_ids)}).all()
