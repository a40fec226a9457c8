"""Shapes of the operators' tenant API."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates

from lms_app.accounts.passwords import MIN_PASSWORD_LENGTH
from lms_app.accounts.schemas import EmailField
from lms_app.tenancy.models import TENANT_STATUSES
from lms_app.tenancy.slugs import InvalidSlug, validate_slug
from lms_app.web.fields import Text


class TenantCreate(Schema):
    slug = Text(required=True, max_length=41)
    name = Text(required=True, min_length=1, max_length=120)
    admin_email = EmailField(required=True)
    admin_password = Text(
        required=True, min_length=MIN_PASSWORD_LENGTH, max_length=200, load_only=True
    )
    admin_name = Text(load_default="Administrator", min_length=1, max_length=120)

    @validates("slug")
    def _slug(self, value: str, **_) -> None:
        try:
            validate_slug(value)
        except InvalidSlug as exc:
            raise ValidationError(str(exc)) from None


class TenantPatch(Schema):
    name = Text(min_length=1, max_length=120)
    status = fields.String(validate=validate.OneOf(TENANT_STATUSES))


class TenantSchema(Schema):
    slug = fields.String()
    name = fields.String()
    status = fields.String()
    created_at = fields.DateTime()


class TenantCounts(Schema):
    users = fields.Integer()
    courses = fields.Integer()
    enrollments = fields.Integer()


class TenantDetail(TenantSchema):
    counts = fields.Nested(TenantCounts)


class TenantListArgs(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    cursor = Text(load_default=None, max_length=41)


class TenantPage(Schema):
    items = fields.List(fields.Nested(TenantSchema))
    next_cursor = fields.String(allow_none=True)


class DropArgs(Schema):
    confirm = Text(required=True, max_length=41)


class NamespaceStatsSchema(Schema):
    hits = fields.Integer()
    local_hits = fields.Integer(metadata={"description": "hits served by this process's copy"})
    misses = fields.Integer()
    errors = fields.Integer(metadata={"description": "reads the shared cache failed"})
    hit_rate = fields.Float(allow_none=True)


class CacheStatsSchema(Schema):
    pid = fields.Integer()
    namespaces = fields.Dict(keys=fields.String(), values=fields.Nested(NamespaceStatsSchema))


class ReplicaStatusSchema(Schema):
    name = fields.String(metadata={"description": "host:port/database (no credentials)"})
    up = fields.Boolean()
    lag_bytes = fields.Integer()
    lag_seconds = fields.Float()
    replay_lsn = fields.Integer()
    consecutive_failures = fields.Integer()


class ReplicaStatsSchema(Schema):
    pid = fields.Integer()
    replicas = fields.List(fields.Nested(ReplicaStatusSchema))
    routing = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={
            "description": "read-only requests by where their reads went: replica:<name>,"
            " primary_read_your_writes, primary_no_healthy_replica,"
            " primary_write_record_unknown, primary_after_replica_error; replica_failures"
        },
    )


class StatementFiguresSchema(Schema):
    fingerprint = fields.String(metadata={"description": "absent in the server's lists"})
    statement = fields.String(metadata={"description": "the shape: no literals, no values"})
    calls = fields.Integer()
    total_ms = fields.Float()
    mean_ms = fields.Float()
    max_ms = fields.Float()


class StatementTopsSchema(Schema):
    available = fields.Boolean(metadata={"description": "server only"})
    reason = fields.String(metadata={"description": "server only, when not available"})
    by_mean = fields.List(fields.Nested(StatementFiguresSchema))
    by_total = fields.List(fields.Nested(StatementFiguresSchema))


class SlowQueriesSchema(Schema):
    pid = fields.Integer()
    process = fields.Nested(StatementTopsSchema)
    server = fields.Nested(StatementTopsSchema)
