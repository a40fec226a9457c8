"""`audit_events`: one row per audited action, in the school's own schema.

Append-only in the database itself: migration 0006 installs triggers that refuse
UPDATE, DELETE and TRUNCATE for every role (superusers and the table's owner
included), except the retention DELETE of rows past the retention period
(lms_app.audit.retention). `detail` carries ids and counts only: an audit trail
that copied names or e-mails would itself need erasing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Identity, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lms_app.db.base import TenantBase, created_at_column


class AuditEvent(TenantBase):
    __tablename__ = "audit_events"
    __table_args__ = (
        # GET /audit is newest first, with or without one of its filters.
        Index("ix_audit_events_created", "created_at", "id"),
        Index("ix_audit_events_actor", "actor_id", "created_at", "id"),
        Index("ix_audit_events_action", "action", "created_at", "id"),
        Index("ix_audit_events_target", "target_type", "target_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    # NULL: no user acted (a CLI command). No foreign keys: the trail must outlive
    # anything it names, and it never blocks a change to the rows it names.
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[int | None] = mapped_column(BigInteger)
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at_column()
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
