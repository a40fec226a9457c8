"""Course details, search results and category pages as served: from the cache.

Each is the same for every user of a school who may see it, so it is cached once per
tenant under its namespace's generation (lms_app.caching.generations), rendered as
the route's schema dumps it. What differs per user is decided on the cached value:
a course's staff see its whole lesson outline, everyone else the published lessons
of a listed course or a 404.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, NamedTuple

from flask import current_app

from lms_app.accounts.auth import AuthUser
from lms_app.caching import generations
from lms_app.caching.reads import cached_read
from lms_app.catalog import queries
from lms_app.catalog.schemas import CategoryPageSchema, CourseDetailSchema, SearchPageSchema
from lms_app.web.rendering import encode, render

# Part of every key: bump it whenever a cached value changes shape, so a deploy never
# reads values cached by the previous release.
FORMAT = 2

_DETAIL = CourseDetailSchema()
_SEARCH = SearchPageSchema()
_CATEGORIES = CategoryPageSchema()


class CachedCourse(NamedTuple):
    instructor_id: int | None
    listed: bool  # published and not archived: visible to every user of the school
    version: int  # the ETag (lms_app.web.etags)
    staff_body: str  # the whole outline
    learner_body: str | None  # published lessons only (None: not listed)


def course_detail_json(course_id: int, user: AuthUser) -> tuple[str, int] | None:
    """The course detail body `user` may see and the course's version; None when
    there is none (404)."""

    def load() -> CachedCourse | None:
        course = queries.course_detail_for_staff(course_id)
        if course is None:
            return None
        detail = _DETAIL.dump(course)
        listed = course.is_published and not course.is_archived
        learner_body = None
        if listed:
            published = [lesson for lesson in detail["lessons"] if lesson["is_published"]]
            learner_body = encode({**detail, "lessons": published})
        return CachedCourse(
            course.instructor_id, listed, course.version, encode(detail), learner_body
        )

    ttl = _ttls().course_detail
    # Two primary-key statements on a miss: cheaper than a claim's round trip.
    key = f"v{FORMAT}:c{course_id}"
    course = cached_read(generations.COURSE, key, ttl, load, claim=False)
    if course is None:
        return None
    course = CachedCourse(*course)
    if user.manages(course.instructor_id):
        return course.staff_body, course.version
    if course.learner_body is None:
        return None
    return course.learner_body, course.version


# ASCII letters only: PostgreSQL lowercases those as Python does, but not every other
# letter ("İ", a final "Σ"), so those stay as typed.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


_ASCII_SPACES = re.compile(r"[ \t\n\r\f\v]+")


def search_json(q: str, limit: int) -> str:
    """Search results for `q`, cached per normalised query (ASCII case and spacing do
    not change what websearch_to_tsquery matches)."""
    normalised = _ASCII_SPACES.sub(" ", q.translate(_ASCII_LOWER)).strip(" ")
    digest = hashlib.blake2b(normalised.encode(), digest_size=16).hexdigest()

    def load() -> str:
        items = queries.search_courses(normalised, limit)
        return render(_SEARCH, {"items": items, "next_cursor": None})

    body = cached_read(generations.SEARCH, f"v{FORMAT}:{limit}:{digest}", _ttls().search, load)
    assert body is not None  # load() never returns None
    return body


def category_page_json(limit: int, after: int | None) -> str:
    def load() -> str:
        items, next_cursor = queries.category_page(limit=limit, after=after)
        return render(_CATEGORIES, {"items": items, "next_cursor": next_cursor})

    key = f"v{FORMAT}:{limit}:{after if after is not None else '-'}"
    body = cached_read(generations.CATEGORIES, key, _ttls().categories, load, claim=False)
    assert body is not None
    return body


def _ttls() -> Any:
    return current_app.config["LMS_SETTINGS"].cache_ttl
