"""Writing audit events, inside the transaction of the action they record.

An event is written by the same transaction as its action, so the trail can never
show an action that rolled back, nor miss one that committed. All events of one
request go in one INSERT (one statement, whatever their number). The actor and the
request id come from the request (the request id is the one the access log and
every log line carry, lms_app.observability.access_log), so a line of the trail
leads to the request's log lines and back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import g, has_request_context
from sqlalchemy import BigInteger, Connection, String, Text, bindparam, cast, func, select
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Session

from lms_app.audit.models import AuditEvent
from lms_app.db.arrays import array_param

# Every action the trail knows (GET /audit?action= accepts these only).
USER_CREATE = "user.create"
USER_UPDATE = "user.update"  # fields changed, by name only (name, password)
USER_ROLE_CHANGE = "user.role_change"
USER_DEACTIVATE = "user.deactivate"
USER_REACTIVATE = "user.reactivate"
USER_BULK_UPSERT = "user.bulk_upsert"
USER_EXPORT = "user.export"
USER_ERASE = "user.erase"
USER_ANALYTICS_READ = "user.analytics_read"
USER_PROGRESS_READ = "user.progress_read"
COURSE_ARCHIVE = "course.archive"
COURSE_ROSTER_READ = "course.roster_read"
ENROLLMENT_BULK = "enrollment.bulk"
AUDIT_PRUNE = "audit.prune"
ACTIONS = (
    USER_CREATE,
    USER_UPDATE,
    USER_ROLE_CHANGE,
    USER_DEACTIVATE,
    USER_REACTIVATE,
    USER_BULK_UPSERT,
    USER_EXPORT,
    USER_ERASE,
    USER_ANALYTICS_READ,
    USER_PROGRESS_READ,
    COURSE_ARCHIVE,
    COURSE_ROSTER_READ,
    ENROLLMENT_BULK,
    AUDIT_PRUNE,
)
TARGET_TYPES = ("user", "course", "audit")

_TABLE = AuditEvent.__table__


@dataclass(frozen=True, slots=True)
class Event:
    action: str
    target_type: str
    target_id: int | None
    # Ids, counts, role and field names: never a name, an e-mail or free text.
    detail: Mapping[str, Any] = field(default_factory=dict)


def current_actor_id() -> int | None:
    user = g.get("user") if has_request_context() else None
    return user.id if user is not None else None


def current_request_id() -> str | None:
    return g.get("request_id") if has_request_context() else None


def record(
    *events: Event,
    session: Session | Connection | None = None,
    actor_id: int | None = None,
    request_id: str | None = None,
) -> None:
    """Add `events` to the current transaction; the caller commits.

    One INSERT ... SELECT FROM unnest(...) with one array per column: one statement
    and six binds however many events (a bulk import records thousands).
    """
    if not events:
        return
    from lms_app.extensions import db

    params = {
        "actor_id": actor_id if actor_id is not None else current_actor_id(),
        "request_id": request_id if request_id is not None else current_request_id(),
        "actions": [e.action for e in events],
        "target_types": [e.target_type for e in events],
        "target_ids": [e.target_id for e in events],
        "details": [json.dumps(dict(e.detail), separators=(",", ":")) for e in events],
    }
    (session or db.session).execute(_INSERT, params)


def _insert_statement():
    rows = (
        func.unnest(
            array_param("actions", String()),
            array_param("target_types", String()),
            array_param("target_ids", BigInteger()),
            array_param("details", Text()),
        )
        .table_valued("action", "target_type", "target_id", "detail")
        .render_derived(name="e")
    )
    source = select(
        bindparam("actor_id", type_=BigInteger()),
        rows.c.action,
        rows.c.target_type,
        rows.c.target_id,
        bindparam("request_id", type_=String()),
        cast(rows.c.detail, JSONB),
    ).select_from(rows)
    return insert(_TABLE).from_select(
        ["actor_id", "action", "target_type", "target_id", "request_id", "detail"], source
    )


# Built once: a request pays neither its construction nor its cache key.
_INSERT = _insert_statement()
