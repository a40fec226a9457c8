"""`GET /api/v1/tenant`: which school a request lands in (an addition to API.md)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from lms_app.tenancy.context import require_tenant

bp = Blueprint("tenant", __name__, url_prefix="/api/v1")


@bp.get("/tenant")
def show_tenant():
    tenant = require_tenant()
    return jsonify(
        slug=tenant.slug,
        name=tenant.name,
        status=tenant.status,
        created_at=tenant.created_at.isoformat(),
    )
