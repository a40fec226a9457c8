"""HTTP routes of analytics (filled in by the API work)."""

from flask_smorest import Blueprint

blp = Blueprint("analytics", __name__, url_prefix="/api/v1", description="analytics")
