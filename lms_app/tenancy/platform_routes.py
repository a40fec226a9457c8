"""Platform routes (operators)."""

from flask_smorest import Blueprint

blp = Blueprint("platform", __name__, url_prefix="/platform", description="Tenant onboarding")
