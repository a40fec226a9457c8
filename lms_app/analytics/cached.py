"""Course analytics from the cache: the seed's 15 minutes.

The figures aggregate every learner of a course, and progress writes (a tenth of all
requests) would retire them constantly if they moved a generation, and queue behind
one row lock per school. So they live for CACHE_TTL_ANALYTICS and carry `as_of`;
course and lesson changes (what decides who may see them, and the lesson count)
do retire them at once. A learner's own figures are never cached.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import current_app

from lms_app.analytics import queries
from lms_app.caching import generations
from lms_app.caching.reads import cached_read


def cached_course_analytics(course_id: int) -> dict[str, Any] | None:
    def load() -> dict[str, Any] | None:
        figures = queries.course_analytics(course_id)
        if figures is not None:
            figures["as_of"] = datetime.now(UTC)
        return figures

    ttl = current_app.config["LMS_SETTINGS"].cache_ttl.analytics
    return cached_read(generations.ANALYTICS, f"c{course_id}", ttl, load)
