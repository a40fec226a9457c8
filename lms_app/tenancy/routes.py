"""`GET /api/v1/tenant`: which school a request lands in (an addition to API.md)."""

from __future__ import annotations

from lms_app.tenancy.context import require_tenant
from lms_app.tenancy.platform_schemas import TenantSchema
from lms_app.web.blueprint import Blueprint

blp = Blueprint("tenant", __name__, url_prefix="/api/v1", description="The current school")


@blp.route("/tenant")
@blp.response(200, TenantSchema)
@blp.doc(security=[])
def show_tenant():
    return require_tenant()
