"""Enrollments, lesson progress and the activity log of one school (tenant schema)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    SmallInteger,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lms_app.accounts.models import User
from lms_app.catalog.models import Course, Lesson
from lms_app.db.base import TenantBase, updated_at_column

ENROLLMENT_STATUSES = ("active", "dropped", "completed")

# Foreign keys here have no ON DELETE CASCADE on purpose: what a learner saved must
# never disappear as the side effect of deleting a user, course or lesson (the API
# deactivates and archives instead of deleting).


class Enrollment(TenantBase):
    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("user_id", "course_id"),
        CheckConstraint(f"status IN {ENROLLMENT_STATUSES!r}", name="status"),
        Index("ix_enrollments_user", "user_id", "enrolled_at"),
        # The seed's (course_id), extended to serve the roster's keyset order.
        Index("ix_enrollments_course", "course_id", text("enrolled_at DESC"), text("id DESC")),
        Index(
            "ix_enrollments_active",
            "course_id",
            "user_id",
            "enrolled_at",
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("tenant.users.id"))
    course_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("tenant.courses.id"))
    status: Mapped[str] = mapped_column(String(16), server_default="active")
    enrolled_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[datetime] = updated_at_column()

    user: Mapped[User] = relationship(lazy="raise")
    course: Mapped[Course] = relationship(lazy="raise")


class LessonProgress(TenantBase):
    __tablename__ = "lesson_progress"
    __table_args__ = (
        UniqueConstraint("user_id", "lesson_id"),
        CheckConstraint("progress_percentage BETWEEN 0 AND 100", name="progress_percentage"),
        CheckConstraint("time_spent >= 0", name="time_spent"),
        Index("ix_lesson_progress_user_course", "user_id", "course_id"),
        Index("ix_lesson_progress_lesson", "lesson_id"),
        Index("ix_lesson_progress_course", "course_id", "user_id"),
        Index(
            "ix_lesson_progress_completed",
            "completed_at",
            postgresql_where=text("completed_at IS NOT NULL"),
        ),
        Index("ix_lesson_progress_percentage", "progress_percentage"),
        Index(
            "ix_lesson_progress_user_status",
            "user_id",
            "progress_percentage",
            postgresql_where=text("progress_percentage = 100"),
        ),
        Index(
            "ix_lesson_progress_completed_analytics",
            "user_id",
            "course_id",
            "completed_at",
            postgresql_where=text("progress_percentage = 100"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("tenant.users.id"))
    lesson_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("tenant.lessons.id"))
    # Denormalised from the lesson so course-level progress is one indexed range.
    course_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("tenant.courses.id"))
    progress_percentage: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    time_spent: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = updated_at_column()

    lesson: Mapped[Lesson] = relationship(lazy="raise")


class UserActivity(TenantBase):
    """Append-only learning events; BRIN on time because rows arrive in time order."""

    __tablename__ = "user_activity"
    __table_args__ = (
        Index("ix_user_activity_user_time", "user_id", "occurred_at"),
        Index("ix_user_activity_time_brin", "occurred_at", postgresql_using="brin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("tenant.users.id"))
    activity_type: Mapped[str] = mapped_column(String(32))
    course_id: Mapped[int | None] = mapped_column(BigInteger)
    lesson_id: Mapped[int | None] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
