"""A partial index on the few unpublished lessons of each course.

The catalog page statement lists each course's unpublished lesson ids (its overlay
leaves them out); without this index that costs a scan of every lesson of the
page's courses. Built CONCURRENTLY on existing tenants.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa

from lms_app.db import migration_ops

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migration_ops.create_index(
        "ix_lessons_unpublished",
        "lessons",
        ["course_id"],
        postgresql_where=sa.text("NOT is_published"),
    )


def downgrade() -> None:
    migration_ops.drop_index("ix_lessons_unpublished", "lessons")
