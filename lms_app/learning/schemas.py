"""Request and response schemas of learning: enrollments, lesson progress, my courses.

Inputs reject unknown fields and non-integer numbers (strict ints), so a bad body is
a 422 naming the field, never a database error.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from lms_app.catalog.schemas import CourseSummarySchema, LessonSchema
from lms_app.learning.models import ENROLLMENT_STATUSES
from lms_app.web.fields import BIGINT_MAX, Id
from lms_app.web.pagination import CursorPageArgs, PageSchema

MAX_BULK_ENROLL = 10_000
MAX_PROGRESS_BATCH = 1_000
# One request may add at most a day of study time to one lesson.
MAX_TIME_SPENT_S = 86_400


class IdList(fields.List):
    """A list of row ids, checked in one pass: 10,000 ids cost about a millisecond.

    Anything not plainly valid goes through the per-item `Id()` field, so error
    messages (per index) are the usual ones.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(Id(), **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> list[int]:
        if isinstance(value, list) and all(type(v) is int and 0 < v <= BIGINT_MAX for v in value):
            return value
        return super()._deserialize(value, attr, data, **kwargs)


def _percentage() -> fields.Integer:
    return fields.Integer(strict=True, required=True, validate=validate.Range(0, 100))


def _time_spent() -> fields.Integer:
    return fields.Integer(strict=True, load_default=0, validate=validate.Range(0, MAX_TIME_SPENT_S))


# --- inputs ---------------------------------------------------------------------------


class BulkEnrollSchema(Schema):
    user_ids = IdList(required=True, validate=validate.Length(min=1, max=MAX_BULK_ENROLL))


class ProgressUpdateSchema(Schema):
    progress_percentage = _percentage()
    time_spent = _time_spent()


class ProgressBatchItemSchema(Schema):
    lesson_id = Id(required=True)
    progress_percentage = _percentage()
    time_spent = _time_spent()


class ProgressBatchSchema(Schema):
    updates = fields.List(
        fields.Nested(ProgressBatchItemSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_PROGRESS_BATCH),
    )


class CourseProgressArgsSchema(Schema):
    # Query strings are text, so not strict; the range keeps it a valid bigint.
    user_id = fields.Integer(load_default=None, validate=validate.Range(1, BIGINT_MAX))


class EnrollmentListArgsSchema(CursorPageArgs):
    status = fields.String(load_default=None, validate=validate.OneOf(ENROLLMENT_STATUSES))


# --- outputs --------------------------------------------------------------------------


class LessonWithProgressSchema(LessonSchema):
    progress_percentage = fields.Integer()
    time_spent = fields.Integer()
    completed_at = fields.DateTime(allow_none=True)
    is_completed = fields.Boolean()


class EnrollmentSchema(Schema):
    id = fields.Integer()
    user_id = fields.Integer()
    course_id = fields.Integer()
    status = fields.String()
    enrolled_at = fields.DateTime()


class BulkEnrollResultSchema(Schema):
    enrolled = fields.Integer()
    already_enrolled = fields.Integer()


class EnrolleeSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    email = fields.String()


class EnrolleeProgressSchema(Schema):
    completed_lessons = fields.Integer()
    progress_percentage = fields.Float()
    last_activity = fields.DateTime(allow_none=True)


class EnrollmentListItemSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    enrolled_at = fields.DateTime()
    user = fields.Nested(EnrolleeSchema)
    progress = fields.Nested(EnrolleeProgressSchema)


class EnrollmentPageSchema(PageSchema):
    items = fields.List(fields.Nested(EnrollmentListItemSchema))


class LessonProgressSchema(Schema):
    lesson_id = fields.Integer()
    course_id = fields.Integer()
    progress_percentage = fields.Integer()
    time_spent = fields.Integer()
    completed_at = fields.DateTime(allow_none=True)
    is_completed = fields.Boolean()
    updated_at = fields.DateTime()


class ProgressBatchResultSchema(Schema):
    updated = fields.Integer()


class CourseProgressSchema(Schema):
    course_id = fields.Integer()
    title = fields.String()
    total_lessons = fields.Integer()
    completed_lessons = fields.Integer()
    progress_percentage = fields.Float()
    last_activity = fields.DateTime(allow_none=True)


class MyCourseSchema(CourseSummarySchema):
    enrollment_id = fields.Integer()
    enrollment_status = fields.String()
    enrolled_at = fields.DateTime()
    progress_percentage = fields.Float()
    completed_lessons = fields.Integer()
    last_activity = fields.DateTime(allow_none=True)


class MyCoursesPageSchema(PageSchema):
    items = fields.List(fields.Nested(MyCourseSchema))
