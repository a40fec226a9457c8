"""compile_dump gives exactly what the schema's dump gives (the hot routes use it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest
from marshmallow import Schema, fields

from lms_app.learning import schemas
from lms_app.web.fast_dump import compile_dump

WHEN = datetime(2026, 10, 20, 0, 3, 0, 123456, tzinfo=UTC)
COURSE = {
    "id": 7,
    "title": "Cells — an «introduction»",
    "description": 'Quotes " and \\ backslashes',
    "difficulty_level": "beginner",
    "estimated_hours": None,
    "thumbnail_url": None,
    "category_id": 3,
    "instructor_id": 2,
    "total_lessons": 9,
    "created_at": WHEN,
    "enrollment_id": 11,
    "enrollment_status": "active",
    "enrolled_at": WHEN.astimezone(timezone(timedelta(hours=2))),
    "progress_percentage": Decimal("44.44"),
    "completed_lessons": 4,
    "last_activity": None,
    "not_in_the_schema": object(),
}

CASES = [
    (schemas.MyCoursesPageSchema(), {"items": [COURSE, {**COURSE, "id": 8}], "next_cursor": "x"}),
    (schemas.MyCoursesPageSchema(), {"items": [], "next_cursor": None}),
    (
        schemas.CourseProgressSchema(),
        {
            "course_id": 7,
            "title": "T",
            "total_lessons": 0,
            "completed_lessons": 0,
            "progress_percentage": 0.0,
            "last_activity": WHEN,
        },
    ),
    (
        schemas.LessonProgressSchema(),
        {
            "lesson_id": 1,
            "course_id": 2,
            "progress_percentage": 100,
            "time_spent": 30,
            "completed_at": WHEN,
            "is_completed": True,
            "updated_at": WHEN,
        },
    ),
    (
        schemas.EnrollmentSchema(),
        {"id": 1, "user_id": 2, "course_id": 3, "status": "active", "enrolled_at": WHEN},
    ),
    # A missing attribute is left out, as marshmallow does.
    (schemas.EnrollmentSchema(), {"id": 1, "status": "dropped"}),
]


@pytest.mark.parametrize(("schema", "data"), CASES)
def test_compiled_dump_equals_the_schema_dump(schema: Schema, data) -> None:
    expected = schema.dump(data)
    got = compile_dump(schema)(data)
    assert got == expected
    # And the bytes a client gets decode to the same document.
    assert orjson.loads(orjson.dumps(got)) == orjson.loads(orjson.dumps(expected))


def test_a_field_it_does_not_know_falls_back_to_the_schema() -> None:
    class Odd(Schema):
        when = fields.DateTime(format="%Y")  # not ISO: not compiled
        n = fields.Integer()

    schema = Odd()
    assert compile_dump(schema) == schema.dump
    assert compile_dump(schema)({"when": WHEN, "n": 1}) == {"when": "2026", "n": 1}
