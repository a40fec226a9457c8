"""Analytics response shapes."""

from marshmallow import Schema, fields


class CourseAnalytics(Schema):
    course_id = fields.Integer()
    enrolled = fields.Integer(metadata={"description": "enrollments not dropped"})
    active = fields.Integer()
    completed = fields.Integer(
        metadata={"description": "learners with every published lesson at 100 %"}
    )
    completion_rate = fields.Float(metadata={"description": "completed / enrolled, in %"})
    average_progress = fields.Float(metadata={"description": "mean course progress, in %"})
    total_time_spent = fields.Integer(metadata={"description": "seconds"})
    as_of = fields.DateTime(
        metadata={
            "description": "when these figures were computed (cached up to "
            "CACHE_TTL_ANALYTICS seconds; course and lesson changes recompute them)"
        }
    )


class UserAnalytics(Schema):
    user_id = fields.Integer()
    courses_enrolled = fields.Integer()
    courses_completed = fields.Integer()
    lessons_completed = fields.Integer()
    total_time_spent = fields.Integer(metadata={"description": "seconds"})
    last_activity = fields.DateTime(allow_none=True)
