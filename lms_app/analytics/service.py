"""Analytics reads that are audited: staff reading one learner's figures."""

from __future__ import annotations

from typing import Any

from lms_app.analytics import queries
from lms_app.audit import trail
from lms_app.errors import abort
from lms_app.extensions import db


def audited_user_analytics(user_id: int) -> dict[str, Any]:
    """The event first, then the figures, in one transaction on the primary: the
    trail shows every learner's figures that were served. Unknown ids (404) leave
    no event: the rollback takes it."""
    trail.record(trail.Event(trail.USER_ANALYTICS_READ, "user", user_id))
    figures = queries.user_analytics(user_id)
    if figures is None:
        db.session.rollback()
        abort(404, "no such user")
    db.session.commit()
    return figures
