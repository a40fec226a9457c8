"""Shapes of GET /audit."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from lms_app.audit.trail import ACTIONS, TARGET_TYPES
from lms_app.web.fields import BIGINT_MAX
from lms_app.web.pagination import CursorPageArgs, PageSchema


def _query_id() -> fields.Integer:
    """An id in a query string: arrives as text, so not strict like `Id()`."""
    return fields.Integer(validate=validate.Range(1, BIGINT_MAX))


class AuditListArgs(CursorPageArgs):
    actor_id = _query_id()
    # Known names only: a typo is a 422, not an empty page that looks like "nothing".
    action = fields.String(validate=validate.OneOf(ACTIONS))
    target_type = fields.String(validate=validate.OneOf(TARGET_TYPES))
    target_id = _query_id()


class AuditEventSchema(Schema):
    id = fields.Integer()
    actor_id = fields.Integer(allow_none=True)
    action = fields.String()
    target_type = fields.String()
    target_id = fields.Integer(allow_none=True)
    request_id = fields.String(allow_none=True)
    created_at = fields.DateTime()
    # Ids, counts, role and field names only (lms_app.audit.trail).
    detail = fields.Dict(keys=fields.String())


class AuditPage(PageSchema):
    items = fields.List(fields.Nested(AuditEventSchema))
