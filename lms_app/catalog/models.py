"""Categories, courses and lessons of one school (tenant schema)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lms_app.db.base import TenantBase, created_at_column, updated_at_column

if TYPE_CHECKING:
    from lms_app.accounts.models import User

DIFFICULTY_LEVELS = ("beginner", "intermediate", "advanced")

# Lesson content may hold up to 1,000,000 characters, but a tsvector is capped at
# 1 MB; indexing the first 100,000 characters keeps every save valid.
LESSON_SEARCH_CHARS = 100_000

COURSE_SEARCH_SQL = (
    "setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'B')"
)
LESSON_SEARCH_SQL = (
    "setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, "
    f"left(coalesce(content, ''), {LESSON_SEARCH_CHARS})), 'B')"
)


class Category(TenantBase):
    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    slug: Mapped[str] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = created_at_column()


class Course(TenantBase):
    __tablename__ = "courses"
    __table_args__ = (
        CheckConstraint(f"difficulty_level IN {DIFFICULTY_LEVELS!r}", name="difficulty_level"),
        CheckConstraint("estimated_hours IS NULL OR estimated_hours >= 0", name="estimated_hours"),
        CheckConstraint("total_lessons >= 0", name="total_lessons"),
        Index(
            "ix_courses_published",
            "is_published",
            "created_at",
            postgresql_where=text("is_published"),
        ),
        # The catalog's keyset order: newest first, id as tie-breaker.
        Index(
            "ix_courses_active_recent",
            text("created_at DESC"),
            text("id DESC"),
            postgresql_where=text("is_published AND NOT is_archived"),
        ),
        Index("ix_courses_difficulty", "difficulty_level", "created_at", "id"),
        Index("ix_courses_category", "category_id", "created_at", "id"),
        Index("ix_courses_instructor", "instructor_id", "created_at", "id"),
        Index("ix_courses_search", "search_vector", postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, server_default="")
    category_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("tenant.categories.id", ondelete="SET NULL")
    )
    instructor_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("tenant.users.id", ondelete="SET NULL")
    )
    difficulty_level: Mapped[str] = mapped_column(String(16), server_default="beginner")
    estimated_hours: Mapped[int | None] = mapped_column(Integer)
    thumbnail_url: Mapped[str | None] = mapped_column(String(2048))
    # Published lessons; kept in step by the lesson write paths.
    total_lessons: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    is_published: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    is_archived: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    search_vector: Mapped[str | None] = mapped_column(
        TSVECTOR, Computed(COURSE_SEARCH_SQL, persisted=True), deferred=True
    )
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()

    category: Mapped[Category | None] = relationship(lazy="raise")
    instructor: Mapped[User | None] = relationship(lazy="raise")
    lessons: Mapped[list[Lesson]] = relationship(
        back_populates="course", lazy="raise", order_by=lambda: (Lesson.order_index, Lesson.id)
    )

    # Every ORM UPDATE adds `AND version = <the version loaded>` and bumps it: an
    # edit of a row that moved since it was read fails instead of overwriting it
    # (lms_app.web.etags turns the version into the ETag). Server defaults and
    # onupdate values come back through RETURNING, not a second SELECT.
    __mapper_args__ = {"version_id_col": version, "eager_defaults": True}


class Lesson(TenantBase):
    __tablename__ = "lessons"
    __table_args__ = (
        Index("ix_lessons_course", "course_id", "order_index"),
        Index("ix_lessons_search", "search_vector", postgresql_using="gin"),
        Index("ix_lessons_unpublished", "course_id", postgresql_where=text("NOT is_published")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    course_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("tenant.courses.id"))
    title: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text, server_default="", deferred=True)
    order_index: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    is_published: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    search_vector: Mapped[str | None] = mapped_column(
        TSVECTOR, Computed(LESSON_SEARCH_SQL, persisted=True), deferred=True
    )
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()

    course: Mapped[Course] = relationship(back_populates="lessons", lazy="raise")

    __mapper_args__ = {"version_id_col": version, "eager_defaults": True}
