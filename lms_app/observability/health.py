"""Liveness and readiness: no tenant, no auth."""

from __future__ import annotations

from flask import current_app
from marshmallow import Schema, fields
from sqlalchemy import text

from lms_app.extensions import cache, db
from lms_app.observability.liveness import BODY
from lms_app.web.blueprint import Blueprint
from lms_app.web.rendering import json_response

blp = Blueprint("operations", __name__, description="Health checks (no tenant, no auth)")


class HealthSchema(Schema):
    status = fields.String()
    failed = fields.Dict(keys=fields.String(), values=fields.String())


@blp.route("/healthz")
@blp.response(200, HealthSchema)
@blp.doc(security=[])
def healthz():
    # GET and HEAD are answered by lms_app.observability.liveness before Flask; this
    # route documents them and answers if the middleware is ever bypassed.
    return json_response(BODY.decode())


@blp.route("/readyz")
@blp.response(200, HealthSchema)
@blp.alt_response(503, schema=HealthSchema)
@blp.doc(security=[])
def readyz():
    failed: dict[str, str] = {}
    # Every pool: the primary ("database") and the read pool ("database:read").
    for bind, engine in db.engines.items():
        name = "database" if bind is None else f"database:{bind}"
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            failed[name] = type(exc).__name__
    if current_app.config.get("CACHE_TYPE") == "RedisCache":
        try:
            cache.cache._write_client.ping()
        except Exception as exc:
            failed["redis"] = type(exc).__name__
    if failed:
        return {"status": "unavailable", "failed": failed}, 503
    return {"status": "ready"}
