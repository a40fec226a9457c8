"""GET /users/<id>/export, POST /users/<id>/erase."""

from __future__ import annotations

from typing import Any

from flask import Response

from lms_app.accounts.auth import auth_required, current_user
from lms_app.errors import abort
from lms_app.extensions import db
from lms_app.privacy.erase import erase_user
from lms_app.privacy.export import UserExport
from lms_app.privacy.schemas import EraseRequest, EraseResult, UserExportSchema
from lms_app.tenancy.context import require_tenant
from lms_app.web.blueprint import Blueprint

blp = Blueprint("privacy", __name__, url_prefix="/api/v1", description="Data protection")


@blp.get("/users/<id:user_id>/export")
@auth_required()
@blp.response(200, UserExportSchema)
def export_user(user_id: int) -> Response:
    """Everything held about a user (the user themself, or an admin), streamed."""
    me = current_user()
    if not me.is_admin and me.id != user_id:
        abort(403, "admins only, or your own data")
    export = UserExport.open(db.engine, require_tenant(), user_id, me.id)
    if export is None:
        abort(404, "no such user")
    response = Response(export.chunks(), mimetype="application/json")
    response.call_on_close(export.close)
    response.headers["Cache-Control"] = "no-store"  # personal data: no copies on the way
    return response


@blp.post("/users/<id:user_id>/erase")
@auth_required("admin")
@blp.arguments(EraseRequest)
@blp.response(200, EraseResult)
def erase(data: dict[str, Any], user_id: int) -> dict[str, Any]:
    """Erase a user's personal data for good (admins; `confirm`: their current e-mail)."""
    return erase_user(current_user(), user_id, data["confirm"])
