"""Secondary indexes: the seed's list, made valid, plus what the API's reads need.

Built CONCURRENTLY on existing tenants (see lms_app.db.migration_ops) and safe to
re-run: existing valid indexes are kept, half-built ones are rebuilt.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa

from lms_app.db import migration_ops

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# (name, table, columns, options)
INDEXES = [
    ("ix_users_role", "users", ["role", "created_at", "id"], {}),
    (
        "ix_users_active",
        "users",
        ["created_at", "id"],
        {"postgresql_where": sa.text("is_active")},
    ),
    (
        "ix_courses_published",
        "courses",
        ["is_published", "created_at"],
        {"postgresql_where": sa.text("is_published")},
    ),
    (
        "ix_courses_active_recent",
        "courses",
        [sa.text("created_at DESC"), sa.text("id DESC")],
        {"postgresql_where": sa.text("is_published AND NOT is_archived")},
    ),
    ("ix_courses_difficulty", "courses", ["difficulty_level", "created_at", "id"], {}),
    ("ix_courses_category", "courses", ["category_id", "created_at", "id"], {}),
    ("ix_courses_instructor", "courses", ["instructor_id", "created_at", "id"], {}),
    ("ix_courses_search", "courses", ["search_vector"], {"postgresql_using": "gin"}),
    ("ix_lessons_course", "lessons", ["course_id", "order_index"], {}),
    ("ix_lessons_search", "lessons", ["search_vector"], {"postgresql_using": "gin"}),
    ("ix_enrollments_user", "enrollments", ["user_id", "enrolled_at"], {}),
    (
        "ix_enrollments_course",
        "enrollments",
        ["course_id", sa.text("enrolled_at DESC"), sa.text("id DESC")],
        {},
    ),
    (
        "ix_enrollments_active",
        "enrollments",
        ["course_id", "user_id", "enrolled_at"],
        {"postgresql_where": sa.text("status = 'active'")},
    ),
    ("ix_lesson_progress_user_course", "lesson_progress", ["user_id", "course_id"], {}),
    ("ix_lesson_progress_lesson", "lesson_progress", ["lesson_id"], {}),
    ("ix_lesson_progress_course", "lesson_progress", ["course_id", "user_id"], {}),
    (
        "ix_lesson_progress_completed",
        "lesson_progress",
        ["completed_at"],
        {"postgresql_where": sa.text("completed_at IS NOT NULL")},
    ),
    ("ix_lesson_progress_percentage", "lesson_progress", ["progress_percentage"], {}),
    (
        "ix_lesson_progress_user_status",
        "lesson_progress",
        ["user_id", "progress_percentage"],
        {"postgresql_where": sa.text("progress_percentage = 100")},
    ),
    (
        "ix_lesson_progress_completed_analytics",
        "lesson_progress",
        ["user_id", "course_id", "completed_at"],
        {"postgresql_where": sa.text("progress_percentage = 100")},
    ),
    ("ix_user_activity_user_time", "user_activity", ["user_id", "occurred_at"], {}),
    (
        "ix_user_activity_time_brin",
        "user_activity",
        ["occurred_at"],
        {"postgresql_using": "brin"},
    ),
]


def upgrade() -> None:
    for name, table, columns, options in INDEXES:
        migration_ops.create_index(name, table, columns, **options)


def downgrade() -> None:
    for name, table, _columns, _options in reversed(INDEXES):
        migration_ops.drop_index(name, table)
