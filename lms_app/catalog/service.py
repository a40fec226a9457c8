"""Write paths of the catalog: categories, courses and lessons.

Every lesson write locks its course row first (`SELECT ... FOR UPDATE`, also where
ownership is checked), so concurrent lesson writes of one course run one after the
other and `courses.total_lessons` is recounted from the lessons inside the same
transaction: the count cannot drift, whatever the interleaving.
"""

from __future__ import annotations

from typing import Any, NoReturn

from sqlalchemy import Row, delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from lms_app.accounts.auth import AuthUser
from lms_app.accounts.models import User
from lms_app.audit import trail
from lms_app.caching import generations
from lms_app.catalog.models import Category, Course, Lesson
from lms_app.catalog.queries import CATEGORY_COLUMNS, COURSE_COLUMNS, LESSON_COLUMNS
from lms_app.errors import abort
from lms_app.extensions import db
from lms_app.learning.models import LessonProgress

# What each kind of change retires from the caches (lms_app.caching.generations).
# Course and lesson rows feed the catalog, course details, lessons' visibility,
# search and the analytics' access checks and lesson counts.
COURSE_CHANGE = (
    generations.CATALOG,
    generations.COURSE,
    generations.LESSON,
    generations.SEARCH,
    generations.ANALYTICS,
)
# A lesson edit that leaves its publication alone: the catalog and the analytics
# do not show lesson text, titles or order.
LESSON_TEXT_CHANGE = (generations.COURSE, generations.LESSON, generations.SEARCH)


def _commit_change(namespaces: tuple[str, ...] = COURSE_CHANGE) -> None:
    """Retire the cached values the change makes stale, in its own transaction (so
    the invalidation cannot be lost), then commit."""
    generations.bump(*namespaces)
    db.session.commit()


COURSE_OWNERS = ("instructor", "admin")


# --- categories ------------------------------------------------------------------


def create_category(data: dict[str, Any]) -> dict[str, Any]:
    # ON CONFLICT instead of catching IntegrityError: no aborted transaction, no race.
    stmt = (
        insert(Category)
        .values(name=data["name"], slug=data["slug"])
        .on_conflict_do_nothing(index_elements=[Category.slug])
        .returning(*CATEGORY_COLUMNS)
    )
    row = db.session.execute(stmt).first()
    if row is None:
        db.session.rollback()
        abort(409, "a category with this slug already exists")
    _commit_change((generations.CATEGORIES,))
    return row._asdict()


# --- courses ---------------------------------------------------------------------


def _check_references(data: dict[str, Any], user: AuthUser) -> None:
    """422 naming the field when category_id / instructor_id point nowhere useful."""
    if "instructor_id" in data and data["instructor_id"] != user.id and not user.is_admin:
        abort(403, "only admins may assign a course to another instructor")
    checks = []
    if data.get("category_id") is not None:
        checks.append(exists().where(Category.id == data["category_id"]).label("category_id"))
    # The caller themself passed auth_required(instructor, admin) already.
    if data.get("instructor_id") not in (None, user.id):
        checks.append(
            exists()
            .where(
                User.id == data["instructor_id"],
                User.role.in_(COURSE_OWNERS),
                User.is_active,
            )
            .label("instructor_id")
        )
    if not checks:
        return
    found = db.session.execute(select(*checks)).one()._asdict()
    messages = {
        "category_id": "no such category",
        "instructor_id": "no active instructor or admin with this id",
    }
    errors = {field: [messages[field]] for field, ok in found.items() if not ok}
    if errors:
        abort(422, "invalid references", errors=errors)


def _lock_course(course_id: int, user: AuthUser) -> None:
    """Lock the course row for this transaction; 404 if unknown, 403 if not its manager."""
    row = db.session.execute(
        select(Course.instructor_id).where(Course.id == course_id).with_for_update()
    ).first()
    if row is None:
        abort(404, "course not found")
    if not user.manages(row.instructor_id):
        abort(403, "only the course's instructor or an admin may change it")


def _course_row(course_id: int) -> Row[Any]:
    return db.session.execute(select(*COURSE_COLUMNS).where(Course.id == course_id)).one()


def create_course(data: dict[str, Any], user: AuthUser) -> dict[str, Any]:
    _check_references(data, user)
    values = {"instructor_id": user.id, **data}
    row = db.session.execute(insert(Course).values(**values).returning(*COURSE_COLUMNS)).one()
    _commit_change()
    return row._asdict()


def update_course(course_id: int, data: dict[str, Any], user: AuthUser) -> dict[str, Any]:
    _lock_course(course_id, user)
    _check_references(data, user)
    if data:
        row = db.session.execute(
            update(Course).where(Course.id == course_id).values(**data).returning(*COURSE_COLUMNS)
        ).one()
    else:
        row = _course_row(course_id)
    _commit_change()
    return row._asdict()


def archive_course(course_id: int, user: AuthUser) -> None:
    """DELETE archives: enrollments and progress stay, the catalog stops listing it."""
    _lock_course(course_id, user)
    db.session.execute(update(Course).where(Course.id == course_id).values(is_archived=True))
    trail.record(trail.Event(trail.COURSE_ARCHIVE, "course", course_id))
    _commit_change()


# --- lessons ---------------------------------------------------------------------


def _lock_lesson_course(lesson_id: int, user: AuthUser, *, lock_lesson: bool = False) -> int:
    """Lock the lesson's course (and the lesson, if asked); returns the course id."""
    stmt = (
        select(Lesson.course_id, Course.instructor_id)
        .join(Course, Course.id == Lesson.course_id)
        .where(Lesson.id == lesson_id)
        .with_for_update(of=[Course, Lesson] if lock_lesson else Course)
    )
    row = db.session.execute(stmt).first()
    if row is None:
        abort(404, "lesson not found")
    if not user.manages(row.instructor_id):
        abort(403, "only the course's instructor or an admin may change its lessons")
    return row.course_id


def _recount_lessons(course_id: int) -> None:
    """Set total_lessons from the lessons themselves (call with the course locked)."""
    published = (
        select(func.count())
        .select_from(Lesson)
        .where(Lesson.course_id == course_id, Lesson.is_published)
        .scalar_subquery()
    )
    db.session.execute(update(Course).where(Course.id == course_id).values(total_lessons=published))


def create_lesson(course_id: int, data: dict[str, Any], user: AuthUser) -> dict[str, Any]:
    _lock_course(course_id, user)
    values = dict(data)
    if "order_index" not in values:
        # Under the course lock, so two concurrent appends get distinct positions.
        values["order_index"] = (
            select(func.coalesce(func.max(Lesson.order_index) + 1, 0))
            .where(Lesson.course_id == course_id)
            .scalar_subquery()
        )
    row = db.session.execute(
        insert(Lesson).values(course_id=course_id, **values).returning(*LESSON_COLUMNS)
    ).one()
    _recount_lessons(course_id)
    _commit_change()
    return row._asdict()


def update_lesson(lesson_id: int, data: dict[str, Any], user: AuthUser) -> dict[str, Any]:
    # The lesson is locked too: an update that waited for a concurrent delete then
    # finds no row (404) instead of updating nothing.
    course_id = _lock_lesson_course(lesson_id, user, lock_lesson=True)
    if data:
        row = db.session.execute(
            update(Lesson).where(Lesson.id == lesson_id).values(**data).returning(*LESSON_COLUMNS)
        ).one()
    else:
        row = db.session.execute(select(*LESSON_COLUMNS).where(Lesson.id == lesson_id)).one()
    if "is_published" in data:
        _recount_lessons(course_id)
        _commit_change()  # total_lessons may have moved
    else:
        _commit_change(LESSON_TEXT_CHANGE)
    return row._asdict()


def delete_lesson(lesson_id: int, user: AuthUser) -> None:
    """Delete a lesson nobody has progress on; otherwise 409 (unpublish it instead)."""
    # Locking the lesson row too blocks new progress rows for it (their foreign key
    # takes a KEY SHARE lock on it), so the check below cannot be overtaken.
    course_id = _lock_lesson_course(lesson_id, user, lock_lesson=True)
    has_progress = db.session.scalar(select(exists().where(LessonProgress.lesson_id == lesson_id)))
    if has_progress:
        _learners_have_progress()
    try:
        db.session.execute(delete(Lesson).where(Lesson.id == lesson_id))
    except IntegrityError:
        # Anything else referencing the lesson: keep it rather than lose data.
        _learners_have_progress()
    _recount_lessons(course_id)
    _commit_change()


def _learners_have_progress() -> NoReturn:
    db.session.rollback()
    abort(409, "learners have progress on this lesson; unpublish it instead")
