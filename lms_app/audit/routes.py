"""GET /audit: the school's audit trail (admins)."""

from __future__ import annotations

from typing import Any

from lms_app.accounts.auth import auth_required
from lms_app.audit import queries
from lms_app.audit.schemas import AuditListArgs, AuditPage
from lms_app.web.blueprint import Blueprint
from lms_app.web.pagination import page

blp = Blueprint("audit", __name__, url_prefix="/api/v1", description="Audit trail")


@blp.get("/audit")
@auth_required("admin")
@blp.arguments(AuditListArgs, location="query")
@blp.response(200, AuditPage)
def audit_events(args: dict[str, Any]) -> dict[str, Any]:
    """Audit events of this school, newest first; filter by actor, action or target."""
    rows = queries.audit_page(args)
    items, next_cursor = page(rows, args["limit"], lambda r: (r.created_at, r.id))
    return {"items": [r._asdict() for r in items], "next_cursor": next_cursor}
