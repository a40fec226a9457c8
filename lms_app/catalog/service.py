"""Write paths of the catalog: categories, courses and lessons.

A write that acts on one course or lesson goes through the unit of work: the row is
loaded under `FOR UPDATE`, changed as an object, and flushed as one UPDATE that
checks and bumps its version (version_id_col; the ETag of lms_app.web.etags).

Every lesson write locks its course row first (`SELECT ... FOR UPDATE`, also where
ownership is checked), so concurrent lesson writes of one course run one after the
other and `courses.total_lessons` is recounted from the lessons inside the same
transaction: the count cannot drift, whatever the interleaving.
"""

from __future__ import annotations

from typing import Any, NoReturn

from sqlalchemy import exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import raiseload, undefer

from lms_app.accounts.auth import AuthUser
from lms_app.accounts.models import User
from lms_app.audit import trail
from lms_app.caching import generations
from lms_app.catalog.models import Category, Course, Lesson
from lms_app.catalog.queries import CATEGORY_COLUMNS, COURSE_COLUMNS, LESSON_COLUMNS
from lms_app.errors import abort
from lms_app.extensions import db
from lms_app.learning.models import LessonProgress
from lms_app.web import etags

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


def _locked_course(course_id: int, user: AuthUser) -> Course:
    """The course, its row locked for this transaction; 404 if unknown, 403 if not
    its manager."""
    course = db.session.get(Course, course_id, with_for_update=True, options=[raiseload("*")])
    if course is None:
        abort(404, "course not found")
    if not user.manages(course.instructor_id):
        abort(403, "only the course's instructor or an admin may change it")
    return course


def _written(entity: Course | Lesson, columns: tuple[Any, ...]) -> dict[str, Any]:
    """The response fields (and the version, for the ETag) as just written, taken
    before the commit expires them (a refresh would cost a SELECT)."""
    fields = {column.key: getattr(entity, column.key) for column in columns}
    fields["version"] = entity.version
    return fields


def create_course(data: dict[str, Any], user: AuthUser) -> dict[str, Any]:
    _check_references(data, user)
    course = Course(**{"instructor_id": user.id, **data})
    db.session.add(course)
    db.session.flush()  # INSERT ... RETURNING the server's defaults (eager_defaults)
    written = _written(course, COURSE_COLUMNS)
    _commit_change()
    return written


def update_course(
    course_id: int, data: dict[str, Any], user: AuthUser, if_match: frozenset[str] | None = None
) -> dict[str, Any]:
    course = _locked_course(course_id, user)
    etags.require(if_match, course.version)
    _check_references(data, user)
    for field, value in data.items():
        setattr(course, field, value)
    # An UPDATE only when a value changed; it bumps the version (version_id_col).
    db.session.flush()
    written = _written(course, COURSE_COLUMNS)
    _commit_change()
    return written


def archive_course(course_id: int, user: AuthUser, if_match: frozenset[str] | None = None) -> None:
    """DELETE archives: enrollments and progress stay, the catalog stops listing it."""
    course = _locked_course(course_id, user)
    etags.require(if_match, course.version)
    course.is_archived = True
    trail.record(trail.Event(trail.COURSE_ARCHIVE, "course", course_id))
    _commit_change()


# --- lessons ---------------------------------------------------------------------


def _locked_lesson(lesson_id: int, user: AuthUser) -> Lesson:
    """The lesson with its content, it and its course locked (one statement): lesson
    writes of one course run one after the other, and an update that waited for a
    concurrent delete finds no row (404) instead of updating nothing."""
    stmt = (
        select(Lesson, Course.instructor_id)
        .join(Lesson.course)
        .where(Lesson.id == lesson_id)
        .with_for_update(of=[Course.__table__, Lesson.__table__])
        .options(undefer(Lesson.content), raiseload("*"))
    )
    row = db.session.execute(stmt).first()
    if row is None:
        abort(404, "lesson not found")
    if not user.manages(row.instructor_id):
        abort(403, "only the course's instructor or an admin may change its lessons")
    return row.Lesson


def _recount_lessons(course_id: int) -> None:
    """Set total_lessons from the lessons themselves (call with the course locked).

    Core, not the unit of work: a count is not an edit of the course, so it leaves
    the course's version (its ETag) alone (lms_app.web.etags)."""
    published = (
        select(func.count())
        .select_from(Lesson)
        .where(Lesson.course_id == course_id, Lesson.is_published)
        .scalar_subquery()
    )
    db.session.execute(
        update(Course.__table__)
        .where(Course.__table__.c.id == course_id)
        .values(total_lessons=published)
    )


def create_lesson(course_id: int, data: dict[str, Any], user: AuthUser) -> dict[str, Any]:
    _locked_course(course_id, user)
    lesson = Lesson(course_id=course_id, **data)
    if "order_index" not in data:
        # Under the course lock, so two concurrent appends get distinct positions.
        lesson.order_index = (
            select(func.coalesce(func.max(Lesson.order_index) + 1, 0))
            .where(Lesson.course_id == course_id)
            .scalar_subquery()
        )
    db.session.add(lesson)
    db.session.flush()
    written = _written(lesson, LESSON_COLUMNS)
    _recount_lessons(course_id)
    _commit_change()
    return written


def update_lesson(
    lesson_id: int, data: dict[str, Any], user: AuthUser, if_match: frozenset[str] | None = None
) -> dict[str, Any]:
    lesson = _locked_lesson(lesson_id, user)
    etags.require(if_match, lesson.version)
    publication_changes = "is_published" in data and data["is_published"] != lesson.is_published
    for field, value in data.items():
        setattr(lesson, field, value)
    db.session.flush()
    written = _written(lesson, LESSON_COLUMNS)
    if publication_changes:
        _recount_lessons(lesson.course_id)
        _commit_change()  # total_lessons moved
    else:
        _commit_change(LESSON_TEXT_CHANGE)
    return written


def delete_lesson(lesson_id: int, user: AuthUser, if_match: frozenset[str] | None = None) -> None:
    """Delete a lesson nobody has progress on; otherwise 409 (unpublish it instead)."""
    # Locking the lesson row too blocks new progress rows for it (their foreign key
    # takes a KEY SHARE lock on it), so the check below cannot be overtaken.
    lesson = _locked_lesson(lesson_id, user)
    etags.require(if_match, lesson.version)
    course_id = lesson.course_id
    has_progress = db.session.scalar(select(exists().where(LessonProgress.lesson_id == lesson_id)))
    if has_progress:
        _learners_have_progress()
    db.session.delete(lesson)
    try:
        db.session.flush()
    except IntegrityError:
        # Anything else referencing the lesson: keep it rather than lose data.
        _learners_have_progress()
    _recount_lessons(course_id)
    _commit_change()


def _learners_have_progress() -> NoReturn:
    db.session.rollback()
    abort(409, "learners have progress on this lesson; unpublish it instead")
