"""`public.tenants`: the registry of schools and the schema each one owns."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Identity, String
from sqlalchemy.orm import Mapped, mapped_column

from lms_app.db.base import PublicBase, created_at_column, updated_at_column

TENANT_STATUSES = ("active", "suspended")


class Tenant(PublicBase):
    __tablename__ = "tenants"
    __table_args__ = (CheckConstraint(f"status IN {TENANT_STATUSES!r}", name="status"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    slug: Mapped[str] = mapped_column(String(41), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    schema_name: Mapped[str] = mapped_column(String(63), unique=True)
    status: Mapped[str] = mapped_column(String(16), server_default="active")
    # Where the tenant lives once tenants spread over databases (Citus / shards).
    shard_key: Mapped[str] = mapped_column(String(63), server_default="default")
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
