"""Tenant tables with their keys and constraints.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

S = "tenant"  # placeholder, translated to the real schema by the connection


def _id() -> sa.Column:
    return sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False)


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        server_default=None if nullable else sa.func.now(),
        nullable=nullable,
    )


def upgrade() -> None:
    op.create_table(
        "users",
        _id(),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("token_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.CheckConstraint(
            "role IN ('admin', 'instructor', 'student')", name=op.f("ck_users_role")
        ),
        sa.CheckConstraint("email = lower(email)", name=op.f("ck_users_email_lower")),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
        schema=S,
    )
    op.create_table(
        "categories",
        _id(),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("slug", sa.String(120), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_categories"),
        sa.UniqueConstraint("slug", name="uq_categories_slug"),
        schema=S,
    )
    op.create_table(
        "courses",
        _id(),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("category_id", sa.BigInteger(), nullable=True),
        sa.Column("instructor_id", sa.BigInteger(), nullable=True),
        sa.Column("difficulty_level", sa.String(16), server_default="beginner", nullable=False),
        sa.Column("estimated_hours", sa.Integer(), nullable=True),
        sa.Column("thumbnail_url", sa.String(2048), nullable=True),
        sa.Column("total_lessons", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("is_published", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("is_archived", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(
                "setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || "
                "setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'B')",
                persisted=True,
            ),
            nullable=True,
        ),
        _ts("created_at"),
        _ts("updated_at"),
        sa.CheckConstraint(
            "difficulty_level IN ('beginner', 'intermediate', 'advanced')",
            name=op.f("ck_courses_difficulty_level"),
        ),
        sa.CheckConstraint(
            "estimated_hours IS NULL OR estimated_hours >= 0",
            name=op.f("ck_courses_estimated_hours"),
        ),
        sa.CheckConstraint("total_lessons >= 0", name=op.f("ck_courses_total_lessons")),
        sa.ForeignKeyConstraint(
            ["category_id"],
            [f"{S}.categories.id"],
            name="fk_courses_category_id_categories",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["instructor_id"],
            [f"{S}.users.id"],
            name="fk_courses_instructor_id_users",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_courses"),
        schema=S,
    )
    op.create_table(
        "lessons",
        _id(),
        sa.Column("course_id", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("content", sa.Text(), server_default="", nullable=False),
        sa.Column("order_index", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("is_published", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(
                "setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || "
                "setweight(to_tsvector('english'::regconfig, "
                "left(coalesce(content, ''), 100000)), 'B')",
                persisted=True,
            ),
            nullable=True,
        ),
        _ts("created_at"),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(
            ["course_id"], [f"{S}.courses.id"], name="fk_lessons_course_id_courses"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_lessons"),
        schema=S,
    )
    op.create_table(
        "enrollments",
        _id(),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("course_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), server_default="active", nullable=False),
        _ts("enrolled_at"),
        _ts("updated_at"),
        sa.CheckConstraint(
            "status IN ('active', 'dropped', 'completed')", name=op.f("ck_enrollments_status")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], [f"{S}.users.id"], name="fk_enrollments_user_id_users"
        ),
        sa.ForeignKeyConstraint(
            ["course_id"], [f"{S}.courses.id"], name="fk_enrollments_course_id_courses"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_enrollments"),
        sa.UniqueConstraint("user_id", "course_id", name="uq_enrollments_user_id_course_id"),
        schema=S,
    )
    op.create_table(
        "lesson_progress",
        _id(),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("lesson_id", sa.BigInteger(), nullable=False),
        sa.Column("course_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "progress_percentage", sa.SmallInteger(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("time_spent", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        _ts("completed_at", nullable=True),
        _ts("updated_at"),
        sa.CheckConstraint(
            "progress_percentage BETWEEN 0 AND 100",
            name=op.f("ck_lesson_progress_progress_percentage"),
        ),
        sa.CheckConstraint("time_spent >= 0", name=op.f("ck_lesson_progress_time_spent")),
        sa.ForeignKeyConstraint(
            ["user_id"], [f"{S}.users.id"], name="fk_lesson_progress_user_id_users"
        ),
        sa.ForeignKeyConstraint(
            ["lesson_id"], [f"{S}.lessons.id"], name="fk_lesson_progress_lesson_id_lessons"
        ),
        sa.ForeignKeyConstraint(
            ["course_id"], [f"{S}.courses.id"], name="fk_lesson_progress_course_id_courses"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_lesson_progress"),
        sa.UniqueConstraint("user_id", "lesson_id", name="uq_lesson_progress_user_id_lesson_id"),
        schema=S,
    )
    op.create_table(
        "user_activity",
        _id(),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("activity_type", sa.String(32), nullable=False),
        sa.Column("course_id", sa.BigInteger(), nullable=True),
        sa.Column("lesson_id", sa.BigInteger(), nullable=True),
        _ts("occurred_at"),
        sa.ForeignKeyConstraint(
            ["user_id"], [f"{S}.users.id"], name="fk_user_activity_user_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_user_activity"),
        schema=S,
    )


def downgrade() -> None:
    for table in (
        "user_activity",
        "lesson_progress",
        "enrollments",
        "lessons",
        "courses",
        "categories",
        "users",
    ):
        op.drop_table(table, schema=S)
