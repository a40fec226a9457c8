"""HTTP routes of learning (filled in by the API work)."""

from flask_smorest import Blueprint

blp = Blueprint("learning", __name__, url_prefix="/api/v1", description="learning")
