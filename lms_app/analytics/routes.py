"""GET /analytics/courses/<id>, GET /analytics/users/<id>."""

from __future__ import annotations

from lms_app.accounts.auth import auth_required, current_user
from lms_app.analytics import queries
from lms_app.analytics.cached import cached_course_analytics
from lms_app.analytics.schemas import CourseAnalytics, UserAnalytics
from lms_app.analytics.service import audited_user_analytics
from lms_app.errors import abort
from lms_app.web.blueprint import Blueprint

blp = Blueprint("analytics", __name__, url_prefix="/api/v1", description="Analytics")


@blp.route("/analytics/courses/<id:course_id>")
@auth_required("admin", "instructor")
@blp.response(200, CourseAnalytics)
def course_analytics(course_id: int):
    """A course's figures (its instructor, admins), computed at most CACHE_TTL_ANALYTICS
    seconds ago (`as_of` says when)."""
    figures = cached_course_analytics(course_id)
    if figures is None:
        abort(404, "no such course")
    me = current_user()
    if not me.manages(figures["instructor_id"]):
        abort(403, "only the course's instructor or an admin")
    return figures


@blp.route("/analytics/users/<id:user_id>")
@auth_required()
@blp.response(200, UserAnalytics)
def user_analytics(user_id: int):
    """A learner's figures (admins, themself): always live, never cached (their own
    progress shows at once)."""
    me = current_user()
    if not me.is_admin and me.id != user_id:
        abort(403, "admins only, or your own figures")
    if me.id != user_id:
        # An admin reading one learner's figures: audited, in the read's transaction.
        return audited_user_analytics(user_id)
    figures = queries.user_analytics(user_id)
    if figures is None:
        abort(404, "no such user")
    return figures
