"""Users of one school (tenant schema)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from lms_app.db.base import TenantBase, created_at_column, updated_at_column

ROLES = ("admin", "instructor", "student")


class User(TenantBase):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(f"role IN {ROLES!r}", name="role"),
        # Stored lower-case by the application; the check makes "unique per tenant,
        # case-insensitive" hold even for rows written around it.
        CheckConstraint("email = lower(email)", name="email_lower"),
        Index("ix_users_role", "role", "created_at", "id"),
        Index("ix_users_active", "created_at", "id", postgresql_where=text("is_active")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(16))
    # NULL for users created in bulk without a password: they cannot log in yet.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # Bumped to revoke every token issued so far (password change, forced logout).
    token_version: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    # Set when the user's personal data was erased (lms_app.privacy.erase): the row
    # stays, anonymous, so enrolments and progress keep adding up; every user
    # endpoint treats it as absent.
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
