"""Read paths of the catalog, each with a fixed number of SQL statements.

Lists are Core selects of columns turned into dicts: building ORM objects for a
page that is only serialised costs more than the query itself at catalog sizes.
"""

from __future__ import annotations

import functools
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    Select,
    Text,
    all_,
    bindparam,
    exists,
    func,
    literal,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import websearch_to_tsquery
from sqlalchemy.orm import aliased, joinedload, raiseload, selectinload

from lms_app.accounts.models import User
from lms_app.catalog.models import Category, Course, Lesson
from lms_app.db.arrays import array_param
from lms_app.db.prepared import prepare
from lms_app.db.reads import read as _read
from lms_app.extensions import db
from lms_app.learning.models import Enrollment, LessonProgress
from lms_app.web.pagination import page

CATEGORY_COLUMNS = (Category.id, Category.name, Category.slug)

CATALOG_COLUMNS = (
    Course.id,
    Course.title,
    Course.description,
    Course.difficulty_level,
    Course.estimated_hours,
    Course.thumbnail_url,
    Course.category_id,
    Course.instructor_id,
    Course.total_lessons,
    Course.created_at,
)

# The course's unpublished lesson ids, for the overlay (see _overlay_columns).
UNPUBLISHED_LESSON_IDS = func.array(
    select(Lesson.id)
    .where(Lesson.course_id == Course.id, ~Lesson.is_published)
    # Correlated to the outer courses row even when nested two levels down (inside
    # the overlay's count); auto-correlation only looks one level up.
    .correlate_except(Lesson)
    .scalar_subquery()
)

COURSE_COLUMNS = (
    *CATALOG_COLUMNS,
    Course.is_published,
    Course.is_archived,
    Course.updated_at,
)

LESSON_COLUMNS = (
    Lesson.id,
    Lesson.course_id,
    Lesson.title,
    Lesson.content,
    Lesson.order_index,
    Lesson.is_published,
    Lesson.created_at,
    Lesson.updated_at,
)

# Enrollments that count as "enrolled" for the catalog: active and completed ones
# (the check constraint allows only those two besides this one).
NOT_ENROLLED_STATUS = "dropped"

# Search ranks: a course matching by its own title/description ranks in (0.5, 1),
# by its vector's ts_rank squashed into [0, 1) (normalisation 32); a course found
# only through a lesson gets a flat, lower score, so no lesson is ever ranked.
OWN_MATCH_BASE = 0.5
LESSON_ONLY_RANK = 0.25
TS_RANK_SQUASH = 32

_CENT = Decimal("0.01")

# The catalog's order, and search's among equal ranks: ix_courses_active_recent.
NEWEST_FIRST = (Course.created_at.desc(), Course.id.desc())


def progress_percentage(completed: int, total: int) -> float:
    """completed / total * 100, rounded half up to 2 decimals (as SQL ROUND does)."""
    if total <= 0:
        return 0.0
    return float((Decimal(completed) * 100 / Decimal(total)).quantize(_CENT, ROUND_HALF_UP))


# --- categories ------------------------------------------------------------------


def category_page(*, limit: int, after: int | None) -> tuple[list[dict[str, Any]], str | None]:
    stmt = select(*CATEGORY_COLUMNS).order_by(Category.id).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(Category.id > after)
    rows = _read(stmt).all()
    items, next_cursor = page(rows, limit, lambda row: (row.id,))
    return [row._asdict() for row in items], next_cursor


# --- catalog ---------------------------------------------------------------------


def _overlay_columns(
    course_id: ColumnElement[int], unpublished_ids: ColumnElement[Any]
) -> tuple[ColumnElement[bool], ColumnElement[int]]:
    """`is_enrolled` and `completed` (published lessons at 100 %) of the user bound
    as :user_id, for the course `course_id`."""
    user_id = bindparam("user_id", type_=BigInteger)
    enrolled = exists().where(
        Enrollment.user_id == user_id,
        Enrollment.course_id == course_id,
        # Not an IN list: an expanding parameter is re-rendered on every execution.
        Enrollment.status != NOT_ENROLLED_STATUS,
    )
    # Served by the partial index on lesson_progress (user_id, course_id) WHERE = 100.
    # total_lessons counts published lessons only, so lessons unpublished since they
    # were completed must not count: they are excluded by id (few, usually none),
    # which spares a join to lessons that would triple the statement's planning and
    # execution time.
    completed = (
        select(func.count())
        .select_from(LessonProgress)
        .where(
            LessonProgress.user_id == user_id,
            LessonProgress.course_id == course_id,
            LessonProgress.progress_percentage == 100,
            LessonProgress.lesson_id != all_(unpublished_ids),
        )
        .scalar_subquery()
    )
    return enrolled.label("is_enrolled"), completed.label("completed")


def _listed(course: Any, by_category: bool, by_difficulty: bool) -> list[ColumnElement[bool]]:
    """The catalog's conditions on `course` (the Course entity or an alias of it)."""
    # Written exactly as ix_courses_active_recent's predicate so the planner can use
    # the partial index.
    conditions = [course.is_published, ~course.is_archived]
    if by_category:
        conditions.append(course.category_id == bindparam("category_id", type_=BigInteger))
    if by_difficulty:
        conditions.append(course.difficulty_level == bindparam("difficulty_level"))
    return conditions


@functools.cache
def _catalog_statement(
    by_category: bool, by_difficulty: bool, after: bool, with_overlay: bool, probe: bool
) -> Select[Any]:
    """The page query for one combination of filters, built once: per request only
    the bound values change, which keeps statement building and SQLAlchemy's cache
    lookup off the hot path. `with_overlay` adds the user's two columns, so a page
    read from the database costs one statement with or without them; `probe`, the
    cursor's reachability (for the page cache only)."""
    overlay = _overlay_columns(Course.id, UNPUBLISHED_LESSON_IDS) if with_overlay else ()
    stmt = (
        select(*CATALOG_COLUMNS, UNPUBLISHED_LESSON_IDS.label("unpublished_lesson_ids"), *overlay)
        .where(*_listed(Course, by_category, by_difficulty))
        .order_by(*NEWEST_FIRST)
        .limit(bindparam("fetch", type_=Integer))
    )
    if after:
        after_key = tuple_(
            bindparam("after_created_at", type_=DateTime(timezone=True)),
            bindparam("after_id", type_=BigInteger),
        )
        stmt = stmt.where(tuple_(Course.created_at, Course.id) < after_key)
    if after and probe:
        # Whether the cursor is a position a client reaches by following next_cursor:
        # the key of a course these filters list (a primary-key probe). Only such
        # pages are worth caching (lms_app.catalog.page_cache).
        at_cursor = aliased(Course, name="at_cursor")
        reachable = exists().where(
            tuple_(at_cursor.created_at, at_cursor.id) == after_key,
            *_listed(at_cursor, by_category, by_difficulty),
        )
        stmt = stmt.add_columns(reachable.label("cursor_reachable"))
    return stmt


def _overlay_statement() -> Select[Any]:
    """The user's columns for a page's course ids (when the page came from the cache)."""
    page_ids = (
        func.unnest(array_param("course_ids", BigInteger()))
        .table_valued("id")
        .render_derived(name="page_ids")
    )
    unpublished = array_param("unpublished_ids", BigInteger())
    return select(page_ids.c.id, *_overlay_columns(page_ids.c.id, unpublished))


OVERLAY_STATEMENT = prepare(_overlay_statement(), "catalog_overlay")


def catalog_rows(
    *,
    limit: int,
    after: tuple[datetime, int] | None,
    category_id: int | None = None,
    difficulty_level: str | None = None,
    user_id: int | None = None,
    probe_cursor: bool = False,
) -> tuple[list[dict[str, Any]], str | None, bool]:
    """One keyset page of the catalog: one statement.

    Each item also carries `unpublished_lesson_ids` (not part of the API) and, when
    `user_id` is given, that user's `is_enrolled` and `completed`. With
    `probe_cursor`, the third value says whether `after` is the key of a course the
    page's filters list (True without `after`; False when an empty page cannot tell,
    or without `probe_cursor`).
    """
    params: dict[str, Any] = {"fetch": limit + 1}
    if user_id is not None:
        params["user_id"] = user_id
    if category_id is not None:
        params["category_id"] = category_id
    if difficulty_level is not None:
        params["difficulty_level"] = difficulty_level
    if after is not None:
        params["after_created_at"], params["after_id"] = after
    stmt = _catalog_statement(
        category_id is not None,
        difficulty_level is not None,
        bool(after),
        user_id is not None,
        probe_cursor,
    )
    rows = _read(stmt, params).all()
    page_rows, next_cursor = page(rows, limit, lambda row: (row.created_at, row.id))
    items = [row._asdict() for row in page_rows]
    reachable = after is None
    for item in items if after is not None and probe_cursor else ():
        reachable = item.pop("cursor_reachable")
    return items, next_cursor, reachable


def user_overlay(
    user_id: int, course_ids: list[int], unpublished_ids: list[int]
) -> dict[int, tuple[bool, int]]:
    """course id -> (is_enrolled, published lessons completed): one statement for the
    given courses only. `unpublished_ids`: their unpublished lessons (from the page)."""
    if not course_ids:
        return {}
    params = {"user_id": user_id, "course_ids": course_ids, "unpublished_ids": unpublished_ids}
    rows = _read(OVERLAY_STATEMENT, params)
    return {row.id: (row.is_enrolled, row.completed) for row in rows}


def overlay_fields(
    overlay: dict[int, tuple[bool, int]], course_id: int, total_lessons: int
) -> tuple[bool, float]:
    """(is_enrolled, progress_percentage) of one catalog item."""
    enrolled, completed = overlay.get(course_id, (False, 0))
    return enrolled, progress_percentage(completed, total_lessons)


def catalog_page(
    user_id: int,
    *,
    limit: int,
    after: tuple[datetime, int] | None,
    category_id: int | None = None,
    difficulty_level: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The catalog page with the user's overlay, uncached: one statement.

    The route serves the same content through lms_app.catalog.page_cache.
    """
    items, next_cursor, _ = catalog_rows(
        limit=limit,
        after=after,
        category_id=category_id,
        difficulty_level=difficulty_level,
        user_id=user_id,
    )
    for item in items:
        del item["unpublished_lesson_ids"]
        completed = item.pop("completed")
        item["progress_percentage"] = progress_percentage(completed, item["total_lessons"])
    return items, next_cursor


# --- course detail ---------------------------------------------------------------


# The one read of the catalog that is an entity with its relations, and is cached
# (lms_app.catalog.cached_reads): through the ORM, every relation's loading stated.
# Two statements: the course with its category and instructor joined, then its
# lesson outline (selectin: a join would repeat the course's columns per lesson).
COURSE_DETAIL = (
    select(Course)
    .where(Course.id == bindparam("course_id", type_=BigInteger))
    .options(
        joinedload(Course.category).load_only(Category.name, Category.slug, raiseload=True),
        joinedload(Course.instructor).load_only(User.name, raiseload=True),
        selectinload(Course.lessons).load_only(
            Lesson.title, Lesson.order_index, Lesson.is_published, raiseload=True
        ),
        raiseload("*"),
    )
)


def course_detail_for_staff(course_id: int) -> Course | None:
    """The course with category, instructor and whole lesson outline, as its staff
    see it (CourseDetailSchema dumps it); None when it does not exist. Learners'
    view (lms_app.catalog.cached_reads) is derived from it."""
    return db.session.scalars(COURSE_DETAIL, {"course_id": course_id}).unique().first()


# --- search ---------------------------------------------------------------------


def _matches(vector: ColumnElement[Any], query: ColumnElement[Any]) -> ColumnElement[bool]:
    return vector.bool_op("@@")(query)


def _search_statement() -> Select[Any]:
    """Published courses matching `q` in their own text or a published lesson, ranked.

    Courses matching by their own title/description rank first, by ts_rank of their
    (small) vector; courses found only through lessons follow with a flat lower
    score, newest first. That order lets each half stop at `limit` rows: no lesson
    is ever ranked (ts_rank de-TOASTs every vector it scores, and lessons hold the
    large ones), and a common word does not make PostgreSQL collect every matching
    lesson: it can walk the catalog index newest first and probe each course's
    lessons, stopping after `limit` hits.
    """
    tsquery = websearch_to_tsquery("english", bindparam("q", type_=Text))
    limit = bindparam("limit", type_=Integer)
    listed = (Course.is_published, ~Course.is_archived)
    own_match = _matches(Course.search_vector, tsquery)
    own_rank = (
        OWN_MATCH_BASE
        + (1 - OWN_MATCH_BASE) * func.ts_rank(Course.search_vector, tsquery, TS_RANK_SQUASH)
    ).label("rank")
    own_hits = (
        select(Course.id.label("course_id"), own_rank)
        .where(own_match, *listed)
        .order_by(own_rank.desc(), *NEWEST_FIRST)
        .limit(limit)
    )
    lesson_match = exists().where(
        Lesson.course_id == Course.id,
        Lesson.is_published,
        _matches(Lesson.search_vector, tsquery),
    )
    # Not "and not own_match": testing every course's vector on the way costs more
    # than the duplicates, which max() below folds. The newest `limit` courses with
    # lesson hits always contain the newest lesson-only ones the page can need.
    lesson_hits = (
        select(Course.id.label("course_id"), literal(LESSON_ONLY_RANK).label("rank"))
        .where(*listed, lesson_match)
        .order_by(*NEWEST_FIRST)
        .limit(limit)
    )
    hits = union_all(own_hits, lesson_hits).subquery("hits")
    ranked = (
        select(hits.c.course_id, func.max(hits.c.rank).label("rank"))
        .group_by(hits.c.course_id)
        .subquery("ranked")
    )
    return (
        select(
            Course.id,
            Course.title,
            Course.description,
            Course.difficulty_level,
            Course.category_id,
            Course.total_lessons,
            ranked.c.rank,
        )
        .join_from(ranked, Course, Course.id == ranked.c.course_id)
        # Nothing an index can look up: stop words only ("") match nothing anyway,
        # negations only ("-python" gives "T") would test every course and lesson.
        .where(func.querytree(tsquery).not_in(("", "T")))
        .order_by(ranked.c.rank.desc(), *NEWEST_FIRST)
        .limit(limit)
    )


SEARCH_STATEMENT = _search_statement()


def search_courses(q: str, limit: int) -> list[dict[str, Any]]:
    rows = _read(SEARCH_STATEMENT, {"q": q, "limit": limit})
    return [row._asdict() for row in rows]
