"""Shapes of the data-protection routes (API.md "Data protection")."""

from __future__ import annotations

from marshmallow import Schema, fields

from lms_app.accounts.schemas import UserSchema
from lms_app.web.fields import Text


class EraseRequest(Schema):
    # The user's current e-mail, typed out: erasure cannot be undone.
    confirm = Text(required=True, min_length=1, max_length=254)


class EraseResult(Schema):
    id = fields.Integer()
    erased = fields.Boolean()


class ExportEnrollment(Schema):
    id = fields.Integer()
    course_id = fields.Integer()
    course_title = fields.String()
    status = fields.String()
    enrolled_at = fields.DateTime()
    updated_at = fields.DateTime()


class ExportProgress(Schema):
    id = fields.Integer()
    course_id = fields.Integer()
    lesson_id = fields.Integer()
    progress_percentage = fields.Integer()
    time_spent = fields.Integer()
    completed_at = fields.DateTime(allow_none=True)
    updated_at = fields.DateTime()


class ExportActivity(Schema):
    id = fields.Integer()
    activity_type = fields.String()
    course_id = fields.Integer(allow_none=True)
    lesson_id = fields.Integer(allow_none=True)
    occurred_at = fields.DateTime()


class UserExportSchema(Schema):
    """Everything held about the user; never the password hash or token version."""

    user = fields.Nested(UserSchema)  # the account as GET /users/<id> shows it
    enrollments = fields.List(fields.Nested(ExportEnrollment))
    progress = fields.List(fields.Nested(ExportProgress))
    activity = fields.List(fields.Nested(ExportActivity))
