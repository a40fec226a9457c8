"""Helpers of tests/test_fuzz_openapi.py: who calls, what a school holds, extra checks.

Kept out of the test module so it reads as the fuzzing policy (callers, budget, checks)
rather than as set-up code.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import schemathesis
from flask import Flask
from hypothesis import strategies as st
from werkzeug.exceptions import HTTPException

from lms_app.tenancy.context import TenantInfo
from tests.conftest import PLATFORM_KEY, add_user, admin_id, headers_for, tenant_headers

BIGINT_MAX = 2**63 - 1

# Random cases per operation and caller (valid and invalid ones share the budget; the
# coverage phase's fixed cases come on top). CI runs the default; a longer hunt is
# `LMS_FUZZ_EXAMPLES=500 pytest -n auto tests/test_fuzz_openapi.py`.
MAX_EXAMPLES = int(os.environ.get("LMS_FUZZ_EXAMPLES", "25"))
# Fixed, so a failure seen in CI is the same failure on a laptop; another value explores
# other cases.
SEED = int(os.environ.get("LMS_FUZZ_SEED", "20240601"))


# --- a seeded school -------------------------------------------------------------------------


@dataclass
class School:
    """A tenant with a little of everything, and the ids path parameters should hit."""

    tenant: TenantInfo
    admin: int
    instructor: int
    other_instructor: int
    student: int
    outsider: int  # a student enrolled in nothing
    # Path parameter name -> ids worth hitting.
    ids: dict[str, list[int]] = field(default_factory=dict)
    # The same for DELETE operations: rows of a course kept for them alone, so archiving
    # or dropping early in a run does not turn the rest of the run into 404s.
    delete_ids: dict[str, list[int]] = field(default_factory=dict)


def _ok(response, *codes: int) -> Any:
    assert response.status_code in codes, (response.status_code, response.get_data(as_text=True))
    return response.get_json()


def seed_school(app: Flask, tenant: TenantInfo) -> School:
    """Fill `tenant` through the public API (as its admin, instructor and student), so the
    data is whatever the app itself writes, whatever its tables look like this week."""
    client = app.test_client()
    school = School(
        tenant=tenant,
        admin=admin_id(app, tenant),
        instructor=add_user(app, tenant, "instructor", name="Ines Instructor"),
        other_instructor=add_user(app, tenant, "instructor", name="Otto Instructor"),
        student=add_user(app, tenant, "student", name="Stu Student"),
        outsider=add_user(app, tenant, "student", name="Olga Outsider"),
    )
    admin = headers_for(app, tenant, school.admin)
    instructor = headers_for(app, tenant, school.instructor)
    student = headers_for(app, tenant, school.student)

    category = _ok(
        client.post(
            "/api/v1/categories", json={"name": "Science", "slug": "science"}, headers=admin
        ),
        201,
    )["id"]
    courses, lessons = [], []
    for title, published, owner in [
        ("Intro to Physics", True, instructor),
        ("Draft Chemistry", False, instructor),
        ("Biology by someone else", True, headers_for(app, tenant, school.other_instructor)),
        ("Geology, to be deleted", True, instructor),
    ]:
        course = _ok(
            client.post(
                "/api/v1/courses",
                json={
                    "title": title,
                    "description": f"{title}: a course about things",
                    "category_id": category,
                    "difficulty_level": "beginner",
                    "estimated_hours": 3,
                    "is_published": published,
                },
                headers=owner,
            ),
            201,
        )["id"]
        courses.append(course)
        for lesson_title, lesson_published in [("Basics", True), ("Coming soon", False)]:
            lesson = _ok(
                client.post(
                    f"/api/v1/courses/{course}/lessons",
                    json={
                        "title": lesson_title,
                        "content": f"{lesson_title} of {title}: words to search for",
                        "is_published": lesson_published,
                    },
                    headers=owner,
                ),
                201,
            )["id"]
            lessons.append(lesson)
    physics, biology, geology = courses[0], courses[2], courses[3]
    for course in (physics, geology):
        _ok(
            client.post(
                f"/api/v1/courses/{course}/enrollments",
                json={"user_ids": [school.student]},
                headers=admin,
            ),
            200,
        )
    _ok(client.post(f"/api/v1/courses/{biology}/enroll", headers=student), 201)
    # Progress on the first lesson of physics and of geology (a lesson with progress
    # cannot be deleted: a 409 worth reaching).
    for lesson in (lessons[0], lessons[6]):
        _ok(
            client.put(
                f"/api/v1/lessons/{lesson}/progress",
                json={"progress_percentage": 40, "time_spent": 120},
                headers=student,
            ),
            200,
        )
    users = [school.admin, school.instructor, school.other_instructor, school.student]
    school.ids = {
        # First: a bystander, the target of the coverage phase's fixed cases, which
        # may well deactivate or rename whoever they hit.
        "user_id": [school.outsider, *users],
        "course_id": courses[:3],
        "lesson_id": lessons[:6],
    }
    school.delete_ids = {
        "user_id": [school.student, school.outsider],
        "course_id": [geology],
        "lesson_id": lessons[6:],
    }
    return school


# --- callers ---------------------------------------------------------------------------------


class Caller:
    """Who sends the fuzzed requests, and what they are owed.

    Headers are built once (a token costs a query and a signature) and rebuilt after a
    401: a fuzzed PATCH /users/<own id> with a new password revokes the caller's token,
    and the rest of the run should still be asked as that caller, not as nobody.
    """

    def __init__(
        self, name: str, make_headers: Callable[[], dict[str, str]], *, locked_out: bool = False
    ) -> None:
        self.name = name
        self._make_headers = make_headers
        self._headers: dict[str, str] | None = None
        # No valid credentials here: every operation that needs some must answer 401.
        self.locked_out = locked_out

    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = self._make_headers()
        return dict(self._headers)

    def saw(self, status_code: int) -> None:
        if status_code == 401 and not self.locked_out:
            self._headers = None

    def __repr__(self) -> str:
        return f"<Caller {self.name}>"


def user_caller(app: Flask, school: School, name: str, user_id: int) -> Caller:
    return Caller(name, lambda: headers_for(app, school.tenant, user_id))


def anonymous_caller(school: School) -> Caller:
    return Caller("anonymous", lambda: tenant_headers(school.tenant), locked_out=True)


def foreign_admin_caller(app: Flask, school: School, home: TenantInfo) -> Caller:
    """The admin of `home`, with a valid token of `home`, knocking on `school`'s door."""

    def headers() -> dict[str, str]:
        own = headers_for(app, home, admin_id(app, home))
        return {**own, "X-Tenant": school.tenant.slug}

    return Caller("other_school_admin", headers, locked_out=True)


def platform_caller(school: School) -> Caller:
    def headers() -> dict[str, str]:
        return {**tenant_headers(school.tenant), "Authorization": f"Bearer {PLATFORM_KEY}"}

    return Caller("platform", headers)


# --- path parameter hints --------------------------------------------------------------------


def hint_path_parameters(
    schema: schemathesis.BaseSchema,
    hints: Mapping[str, list[Any]],
    delete_hints: Mapping[str, list[Any]],
) -> None:
    """Point generated path parameters at existing rows.

    Without this nearly every id is random and the request stops at a 404 before any
    of the interesting code runs. Only values valid for the parameter are replaced, so
    a case about an invalid path parameter keeps it.
    """

    def known(method: str, name: str, value: Any) -> list[Any]:
        if name == "slug":
            valid = isinstance(value, str) and bool(value)
        else:
            # Coverage cases carry path parameters already as text.
            digits = isinstance(value, str) and value.isascii() and value.isdigit()
            number = int(value) if digits else value
            valid = type(number) is int and 1 <= number <= BIGINT_MAX
        if not valid:
            return []
        return (delete_hints if method.upper() == "DELETE" else hints).get(name, [])

    # Fuzzing phase: about half of the values become known ids; the choice is a
    # Hypothesis draw, so it is reproducible and shrinks like the rest.
    @schema.hook("flatmap_path_parameters")
    def _draw_known(context, path_parameters):
        if not path_parameters:  # None for operations without path parameters
            return st.just(path_parameters)
        method = context.operation.method
        return st.fixed_dictionaries(
            {
                name: st.sampled_from(ids) | st.just(value)
                if (ids := known(method, name, value))
                else st.just(value)
                for name, value in path_parameters.items()
            }
        )

    # Coverage phase (fixed cases, no path parameter hooks of their own): a case that
    # probes the body or the query gets the first known row, so its answer comes from
    # the code behind the 404; a case probing the path parameter itself is left alone.
    @schema.hook("map_case")
    def _coverage_on_known(context, case):
        meta = case.meta
        if meta is None or meta.phase.name != "coverage" or not case.path_parameters:
            return case
        if getattr(meta.phase.data, "parameter_location", None) == "path":
            return case
        for name, value in case.path_parameters.items():
            if ids := known(case.method, name, value):
                case.path_parameters[name] = str(ids[0])
        return case


# --- checks beyond schemathesis's own ------------------------------------------------------


@functools.cache
def locked_out_check(app: Flask) -> Callable:
    """For callers without valid credentials: an operation that declares security answers
    401, whatever the input (API.md: missing or bad credentials -> 401, and a token of one
    school is never valid in another). A URL that matches no route is a 404 first."""
    urls = app.url_map.bind("localhost")

    def unauthenticated_is_401(ctx, response, case) -> None:
        if case.method.upper() != case.operation.method.upper():
            return None  # a coverage probe of an undeclared method (Flask answers OPTIONS)
        security = case.operation.definition.raw.get("security")
        if security is None:
            security = case.operation.schema.raw_schema.get("security", [])
        if not security:
            return None  # public operation: judged by the schema checks alone
        path = unquote(response.request.path_url.split("?", 1)[0])
        try:
            urls.match(path, method=case.method.upper())
        except HTTPException as routing:
            expected = routing.code  # 404 (no such route) or 405, before any auth
        else:
            expected = 401
        assert response.status_code == expected, (
            f"expected {expected} for a caller without valid credentials, "
            f"got {response.status_code}: {response.content[:300]!r}"
        )
        return None

    return unauthenticated_is_401
