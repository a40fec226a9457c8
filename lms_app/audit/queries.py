"""Reading the trail: one keyset page, newest first, on the matching index."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Row, select, tuple_

from lms_app.audit.models import AuditEvent
from lms_app.extensions import db

_FILTERS = ("actor_id", "action", "target_type", "target_id")


def audit_page(args: Mapping[str, Any]) -> list[Row[Any]]:
    """`limit + 1` events matching the filters in `args`, after the cursor `after`."""
    stmt = select(
        AuditEvent.id,
        AuditEvent.actor_id,
        AuditEvent.action,
        AuditEvent.target_type,
        AuditEvent.target_id,
        AuditEvent.request_id,
        AuditEvent.created_at,
        AuditEvent.detail,
    )
    for name in _FILTERS:
        if args.get(name) is not None:
            stmt = stmt.where(getattr(AuditEvent, name) == args[name])
    if args.get("after") is not None:
        stmt = stmt.where(tuple_(AuditEvent.created_at, AuditEvent.id) < tuple_(*args["after"]))
    stmt = stmt.order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    return list(db.session.execute(stmt.limit(args["limit"] + 1)).all())
