"""HTTP routes of catalog (filled in by the API work)."""

from flask_smorest import Blueprint

blp = Blueprint("catalog", __name__, url_prefix="/api/v1", description="catalog")
