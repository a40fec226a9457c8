"""Learning use cases: who may do what, and the write statements.

Writes are single INSERT ... ON CONFLICT statements so that concurrent requests for
the same row serialise inside PostgreSQL instead of racing in Python: progress never
goes down (GREATEST), time spent adds up, completed_at is set once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import (
    BigInteger,
    Row,
    SmallInteger,
    and_,
    bindparam,
    func,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from lms_app.accounts.auth import AuthUser
from lms_app.audit import trail
from lms_app.caching import generations
from lms_app.caching.reads import cached_read
from lms_app.catalog.schemas import LessonSchema
from lms_app.db.upsert import excluded, upsert
from lms_app.errors import abort
from lms_app.extensions import db
from lms_app.learning import queries
from lms_app.learning.queries import courses, enrollments, id_array, lessons, progress
from lms_app.web.pagination import page
from lms_app.web.rendering import open_object

LIVE_STATUSES = ("active", "completed")
UNKNOWN_IDS_LISTED = 20

NOT_FOUND_LESSON = "lesson not found"
NOT_ENROLLED = "not enrolled in this lesson's course"
NOT_LEARNABLE = "progress is kept on published lessons of published courses only"


# --- access rules ---------------------------------------------------------------------


def _learnable(row: Row[Any]) -> bool:
    return bool(row.is_published and row.course_published and not row.course_archived)


def _lesson_visible(user: AuthUser, row: Row[Any] | None) -> bool:
    return row is not None and (user.manages(row.instructor_id) or _learnable(row))


def _progress_denial(user: AuthUser, row: Row[Any] | None) -> tuple[int, str] | None:
    """Why `user` may not record progress on the lesson of `row` (status, message)."""
    if row is None or not _lesson_visible(user, row):
        return 404, NOT_FOUND_LESSON
    if not _learnable(row):
        return 403, NOT_LEARNABLE
    if row.enrollment_status != "active":
        return 403, NOT_ENROLLED
    return None


def _staff_course(user: AuthUser, course_id: int) -> Row[Any]:
    """The course if `user` is its instructor or an admin; 404 / 403 otherwise."""
    course = queries.course_facts(course_id)
    if course is None:
        abort(404, "course not found")
    if not user.manages(course.instructor_id):
        abort(403, "only the course's instructor or an admin may do this")
    return course


# --- lessons --------------------------------------------------------------------------


# Lessons longer than this are cached in the shared cache only, not in every process
# (it bounds the process copies' memory: lms_app.caching.local).
LOCAL_LESSON_MAX_CHARS = 8 * 1024
# Part of every lesson key: bump it whenever CachedLesson changes shape.
LESSON_FORMAT = 2
_LESSON = LessonSchema()


class CachedLesson(NamedTuple):
    course_id: int
    instructor_id: int | None
    learnable: bool
    body: str  # the lesson as LessonSchema dumps it, without its closing brace
    version: int  # the ETag (lms_app.web.etags)


def lesson_json(user: AuthUser, lesson_id: int) -> tuple[str, int]:
    """A lesson with the user's progress, and the lesson's version: the lesson from
    the cache (the seed's lesson content TTL), who may open it and the progress
    always from the database."""

    # On a miss the lesson is read together with the user's state (one statement);
    # on a hit only the state is read.
    fresh_state: list[Any] = []

    def load() -> CachedLesson | None:
        row = queries.lesson_with_state(lesson_id, user.id)
        if row is None:
            return None
        fresh_state.append(row)
        return CachedLesson(
            row.course_id,
            row.instructor_id,
            _learnable(row),
            open_object(_LESSON, row),
            row.version,
        )

    ttl = current_app.config["LMS_SETTINGS"].cache_ttl.lesson_content
    cached = cached_read(
        generations.LESSON,
        f"v{LESSON_FORMAT}:l{lesson_id}",
        ttl,
        load,
        keep_local=lambda value: len(value[3]) <= LOCAL_LESSON_MAX_CHARS,
        claim=False,  # one primary-key statement: cheaper than the claim's round trip
    )
    if cached is None:
        abort(404, NOT_FOUND_LESSON)
    lesson = CachedLesson(*cached)
    staff = user.manages(lesson.instructor_id)
    if not (staff or lesson.learnable):
        abort(404, NOT_FOUND_LESSON)
    state = (
        fresh_state[0]
        if fresh_state
        else queries.learner_state(user.id, lesson.course_id, lesson_id)
    )
    if not staff and state.enrollment_status not in LIVE_STATUSES:
        abort(403, "enroll in this course to open its lessons")
    done = state.progress_percentage or 0
    completed_at = state.completed_at.isoformat() if state.completed_at else None
    body = (
        f'{lesson.body},"progress_percentage":{done},"time_spent":{state.time_spent or 0},'
        f'"completed_at":{json.dumps(completed_at)},"is_completed":{str(done == 100).lower()}}}'
    )
    return body, lesson.version


# --- enrollments ----------------------------------------------------------------------

_ENROLLMENT_COLUMNS = (
    enrollments.c.id,
    enrollments.c.user_id,
    enrollments.c.course_id,
    enrollments.c.status,
    enrollments.c.enrolled_at,
)


def enroll_self(user: AuthUser, course_id: int) -> tuple[dict[str, Any], bool]:
    """(enrollment, became_active_now). A dropped enrollment is reactivated in place,
    keeping its first enrolled_at; an active or completed one is left alone."""
    open_course = select(literal(user.id, BigInteger), courses.c.id).where(
        courses.c.id == course_id, courses.c.is_published, ~courses.c.is_archived
    )
    stmt = (
        insert(enrollments)
        .from_select(["user_id", "course_id"], open_course)
        .on_conflict_do_update(
            index_elements=["user_id", "course_id"],
            set_={"status": "active", "updated_at": func.now()},
            where=enrollments.c.status == "dropped",
        )
        .returning(*_ENROLLMENT_COLUMNS)
    )
    row = db.session.execute(stmt).first()
    if row is not None:
        db.session.commit()
        return row._asdict(), True

    # Nothing written: either the course is not open, or the user is already in.
    existing = db.session.execute(
        select(*_ENROLLMENT_COLUMNS)
        .select_from(
            courses.join(
                enrollments,
                and_(enrollments.c.course_id == courses.c.id, enrollments.c.user_id == user.id),
            )
        )
        .where(courses.c.id == course_id, courses.c.is_published, ~courses.c.is_archived)
    ).first()
    if existing is None:
        abort(404, "course not found")
    return existing._asdict(), False


def _refused_ids_message(refused: Sequence[int], students_only: bool) -> str:
    shown = ", ".join(str(i) for i in refused[:UNKNOWN_IDS_LISTED])
    more = len(refused) - UNKNOWN_IDS_LISTED
    what = "not students you may enrol" if students_only else "unknown user ids"
    return f"{what}: {shown}" + (f" (and {more} more)" if more > 0 else "")


def bulk_enroll(user: AuthUser, course_id: int, user_ids: Sequence[int]) -> dict[str, int]:
    """Enroll many users at once; refused ids reject the whole call before any write.

    Who may enrol whom: an admin, anyone of the school into any course not archived;
    an instructor, active students only, into their own course once it is published.
    A roster shows e-mails, and an instructor may not read the user directory, so an
    instructor must not be able to fill a course nobody can see with the school's
    staff to read it back. (Unknown, staff and deactivated ids get the same answer.)

    Dropped enrollments in the list are reactivated and counted as enrolled: the
    caller asked for these people to be in the course. Completed ones stay completed
    and count as already enrolled.
    """
    course = _staff_course(user, course_id)
    if course.is_archived:
        abort(409, "course is archived")
    students_only = not user.is_admin
    if students_only and not course.is_published:
        abort(409, "publish the course before enrolling learners (admins may enrol earlier)")
    ids = sorted(set(user_ids))

    conflicts = queries.bulk_enroll_conflicts(course_id, ids, students_only=students_only)
    refused = [r.id for r in conflicts if r.refused]
    if refused:
        message = _refused_ids_message(refused, students_only)
        abort(422, "some users may not be enrolled", errors={"user_ids": [message]})

    reactivated = 0
    dropped = [r.id for r in conflicts]
    if dropped:
        reactivated = len(
            db.session.execute(
                update(enrollments)
                .where(
                    enrollments.c.course_id == course_id,
                    enrollments.c.user_id == func.any(id_array("dropped")),
                    enrollments.c.status == "dropped",
                )
                .values(status="active", updated_at=func.now())
                .returning(enrollments.c.id),
                {"dropped": dropped},
            ).all()
        )
    dropped_set = set(dropped)
    result = upsert(
        db.session,
        enrollments,
        [{"user_id": uid} for uid in ids if uid not in dropped_set],
        conflict=["user_id", "course_id"],
        constants={"course_id": course_id},
    )
    enrolled = result.inserted + reactivated
    counts = {"requested": len(ids), "enrolled": enrolled, "already_enrolled": len(ids) - enrolled}
    trail.record(trail.Event(trail.ENROLLMENT_BULK, "course", course_id, counts))
    db.session.commit()
    return {"enrolled": enrolled, "already_enrolled": counts["already_enrolled"]}


def enrollment_page(user: AuthUser, course_id: int, args: Mapping[str, Any]) -> dict[str, Any]:
    """A roster page: staff reading learners' records, so audited. The event is
    written first and the page read in the same transaction, on the primary: the
    trail shows every roster that was served, and only those."""
    course = _staff_course(user, course_id)
    trail.record(trail.Event(trail.COURSE_ROSTER_READ, "course", course_id))
    rows = queries.course_enrollments(
        course_id, course.total_lessons, args["limit"], args["after"], args.get("status")
    )
    db.session.commit()
    items, cursor = page(rows, args["limit"], lambda r: (r.enrolled_at, r.id))
    return {
        "items": [
            {
                "id": r.id,
                "status": r.status,
                "enrolled_at": r.enrolled_at,
                "user": {"id": r.user_id, "name": r.name, "email": r.email},
                "progress": {
                    "completed_lessons": r.completed_lessons,
                    "progress_percentage": float(r.progress_percentage),
                    "last_activity": r.last_activity,
                },
            }
            for r in items
        ],
        "next_cursor": cursor,
    }


def drop_enrollment(user: AuthUser, course_id: int, user_id: int) -> None:
    """Set the enrollment to dropped; progress rows stay (re-enrolling resumes them)."""
    if user_id != user.id and not user.is_admin:
        if user.role != "instructor":
            abort(403, "you may only drop your own enrollment")
        _staff_course(user, course_id)
    dropped = db.session.execute(
        update(enrollments)
        .where(enrollments.c.course_id == course_id, enrollments.c.user_id == user_id)
        .values(status="dropped", updated_at=func.now())
        .returning(enrollments.c.id)
    ).first()
    if dropped is None:
        abort(404, "enrollment not found")
    db.session.commit()


# --- progress -------------------------------------------------------------------------

FOREIGN_KEY_VIOLATION = "23503"


@contextmanager
def _lesson_may_vanish() -> Iterator[None]:
    """A lesson deleted while progress on it is written: the foreign key refuses the
    row when the delete commits first. To the client that is the lesson not being
    there (404), as if the delete had come a moment earlier."""
    try:
        yield
    except IntegrityError as exc:
        if getattr(exc.orig, "pgcode", None) != FOREIGN_KEY_VIOLATION:
            raise
        db.session.rollback()
        abort(404, NOT_FOUND_LESSON)


def _progress_on_conflict() -> dict[str, Any]:
    """The one merge rule of lesson progress, shared by single and batch writes."""
    return {
        # Never down: a replayed or stale client cannot move a learner back.
        "progress_percentage": func.greatest(
            progress.c.progress_percentage, excluded(progress, "progress_percentage")
        ),
        # Added in the statement, so concurrent writers never lose an increment.
        "time_spent": progress.c.time_spent + excluded(progress, "time_spent"),
        # Set once, the first time the lesson reaches 100.
        "completed_at": func.coalesce(progress.c.completed_at, excluded(progress, "completed_at")),
        # ON CONFLICT UPDATE does not run Column.onupdate.
        "updated_at": func.now(),
    }


_PROGRESS_COLUMNS = (
    progress.c.lesson_id,
    progress.c.course_id,
    progress.c.progress_percentage,
    progress.c.time_spent,
    progress.c.completed_at,
    progress.c.updated_at,
)


def _progress_out(row: Row[Any]) -> dict[str, Any]:
    data = row._asdict()
    data["is_completed"] = row.progress_percentage == 100
    return data


def _record_progress_statement(completes: bool):
    """The progress upsert, built once per value of `completes` (progress at 100)."""
    user_id = bindparam("user_id", type_=BigInteger)
    source = (
        select(
            user_id,
            lessons.c.id,
            lessons.c.course_id,
            bindparam("percentage", type_=SmallInteger),
            bindparam("time_spent", type_=BigInteger),
            func.now() if completes else null(),
        )
        .select_from(
            lessons.join(courses, courses.c.id == lessons.c.course_id).join(
                enrollments,
                and_(
                    enrollments.c.course_id == lessons.c.course_id,
                    enrollments.c.user_id == user_id,
                    enrollments.c.status == "active",
                ),
            )
        )
        .where(
            lessons.c.id == bindparam("lesson_id", type_=BigInteger),
            lessons.c.is_published,
            courses.c.is_published,
            ~courses.c.is_archived,
        )
    )
    return (
        insert(progress)
        .from_select(
            [
                "user_id",
                "lesson_id",
                "course_id",
                "progress_percentage",
                "time_spent",
                "completed_at",
            ],
            source,
        )
        .on_conflict_do_update(
            index_elements=["user_id", "lesson_id"], set_=_progress_on_conflict()
        )
        .returning(*_PROGRESS_COLUMNS)
    )


# Built once: a request pays neither the construction nor the cache key.
_RECORD_PROGRESS = {completes: _record_progress_statement(completes) for completes in (False, True)}


def record_progress(
    user: AuthUser, lesson_id: int, percentage: int, time_spent: int
) -> dict[str, Any]:
    """One statement when allowed: the SELECT finds the lesson only if it is learnable
    and the user is actively enrolled; an empty result is then explained."""
    stmt = _RECORD_PROGRESS[percentage == 100]
    params = {
        "user_id": user.id,
        "lesson_id": lesson_id,
        "percentage": percentage,
        "time_spent": time_spent,
    }
    with _lesson_may_vanish():
        row = db.session.execute(stmt, params).first()
    if row is not None:
        db.session.commit()
        return _progress_out(row)
    denial = _progress_denial(user, queries.lesson_access(lesson_id, user.id))
    code, message = denial or (403, NOT_ENROLLED)  # state changed in between
    abort(code, message)


def record_progress_batch(user: AuthUser, updates: Sequence[Mapping[str, Any]]) -> int:
    """All or nothing: every item is checked with one query, then one upsert writes all."""
    errors: dict[str, dict[str, list[str]]] = {}
    first_index: dict[int, int] = {}
    for index, item in enumerate(updates):
        lesson_id = item["lesson_id"]
        if lesson_id in first_index:
            errors[str(index)] = {
                "lesson_id": [f"duplicate of item {first_index[lesson_id]} in this batch"]
            }
        else:
            first_index[lesson_id] = index

    targets = {r.id: r for r in queries.progress_targets(list(first_index), user.id)}
    for lesson_id, index in first_index.items():
        denial = _progress_denial(user, targets.get(lesson_id))
        if denial is not None:
            errors[str(index)] = {"lesson_id": [denial[1]]}
    if errors:
        ordered = dict(sorted(errors.items(), key=lambda kv: int(kv[0])))
        abort(422, "invalid progress updates; nothing was written", errors={"updates": ordered})

    now: datetime = next(iter(targets.values())).now
    rows = [
        {
            "user_id": user.id,
            "lesson_id": item["lesson_id"],
            "course_id": targets[item["lesson_id"]].course_id,
            "progress_percentage": item["progress_percentage"],
            "time_spent": item["time_spent"],
            "completed_at": now if item["progress_percentage"] == 100 else None,
        }
        for item in updates
    ]
    with _lesson_may_vanish():
        result = upsert(
            db.session,
            progress,
            rows,
            conflict=["user_id", "lesson_id"],
            update=_progress_on_conflict(),
        )
    db.session.commit()
    return result.inserted + result.updated


def course_progress(user: AuthUser, course_id: int, user_id: int | None) -> dict[str, Any]:
    """A learner's progress in a course: their own, or (staff) anyone's with ?user_id=."""
    subject = user_id if user_id is not None else user.id
    if subject != user.id and not user.is_staff:
        abort(403, "only staff may read another user's progress")
    if subject != user.id:
        # Staff reading one learner's record: audited. The event goes first, so the
        # read runs in its transaction; a refusal below rolls both back (no commit).
        detail = {"course_id": course_id}
        trail.record(trail.Event(trail.USER_PROGRESS_READ, "user", subject, detail))
    row = queries.course_progress(course_id, subject)
    if row is None:
        abort(404, "course not found")
    staff = user.manages(row.instructor_id)
    if subject != user.id:
        if not staff:
            abort(403, "only the course's instructor or an admin may do this")
        if row.enrollment_status is None:
            abort(404, "that user is not enrolled in this course")
    elif row.enrollment_status is None:
        if not staff and not (row.is_published and not row.is_archived):
            abort(404, "course not found")
        abort(403, "not enrolled in this course")
    if subject != user.id:
        db.session.commit()
    return {
        "course_id": row.course_id,
        "title": row.title,
        "total_lessons": row.total_lessons,
        "completed_lessons": row.completed_lessons,
        "progress_percentage": float(row.progress_percentage),
        "last_activity": row.last_activity,
    }


def my_courses_page(user: AuthUser, args: Mapping[str, Any]) -> dict[str, Any]:
    rows = queries.my_courses(user.id, args["limit"], args["after"])
    items, cursor = page(rows, args["limit"], lambda r: (r.enrolled_at, r.enrollment_id))
    out = []
    for r in items:
        data = r._asdict()
        data["progress_percentage"] = float(r.progress_percentage)
        out.append(data)
    return {"items": out, "next_cursor": cursor}
