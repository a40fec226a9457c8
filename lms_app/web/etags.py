"""ETags of courses and lessons, and the If-Match precondition of their writes.

The ETag is the row's version number (SQLAlchemy's version_id_col, bumped by every
ORM UPDATE of the row), not a hash of the body: the same course reads differently
to its staff (whole outline) and to a learner (published lessons), and it must have
one version both can send back. It covers the fields a PATCH of that resource can
change; lesson writes that recount a course's `total_lessons` do not move the
course's version, so an instructor editing a course is not refused because a
colleague added a lesson.

A write that sends `If-Match` is checked against the version of the row it has
locked (`SELECT ... FOR UPDATE`) in its own transaction: two editors sending the
same ETag are serialised by the lock, the first moves the version and the second
gets 412. Without `If-Match` a write behaves as it did before ETags existed.
"""

from __future__ import annotations

from flask import Response, request

from lms_app.errors import abort
from lms_app.web.rendering import json_response

HEADER = "ETag"
STALE = "the resource changed since you read it: GET it again, then retry with its ETag"


def etag(version: int) -> str:
    return f'"v{version}"'


def headers(version: int) -> dict[str, str]:
    return {HEADER: etag(version)}


def tagged_json(body: str, version: int) -> Response:
    """A pre-rendered JSON body with its ETag."""
    response = json_response(body)
    response.headers[HEADER] = etag(version)
    return response


def if_match() -> frozenset[str] | None:
    """The request's If-Match tags; None when it sent none (no precondition)."""
    given = request.headers.get("If-Match")
    if given is None:
        return None
    return frozenset(tag.strip() for tag in given.split(","))


def require(tags: frozenset[str] | None, version: int) -> None:
    """412 unless `tags` (from `if_match`) is None, is `*`, or names this version.

    Comparison is strong (RFC 9110, 13.1.1): a weak tag (W/"...") never matches.
    Call it with the row locked, so the version cannot move before the write.
    """
    if tags is None or "*" in tags or etag(version) in tags:
        return
    abort(412, STALE, headers={HEADER: etag(version)})
