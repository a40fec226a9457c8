"""Deleting audit events past the retention period (`flask audit prune`).

The audit trigger refuses every DELETE unless the transaction names a retention in
`lms.audit_retention_days` (transaction-local: `set_config(..., true)`, gone at
commit, so it cannot leak to the next user of a pooled connection), and even then
lets only rows older than that retention *and* than the floor compiled into the
trigger go. This module is the only code that sets it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, delete, func, select

from lms_app.audit.models import AuditEvent
from lms_app.audit.trail import AUDIT_PRUNE, Event, record
from lms_app.db.engines import for_schema
from lms_app.tenancy.context import TenantInfo

RETENTION_SETTING = "lms.audit_retention_days"
# Rows per DELETE: each batch is a short transaction, so a first prune of years of
# events neither holds locks long nor writes one huge WAL burst.
BATCH_ROWS = 10_000


@dataclass(frozen=True)
class Pruned:
    tenant: str
    deleted: int


def _cutoff(days: int):
    return func.now() - func.make_interval(0, 0, 0, days)


def prune_tenant(engine: Engine, tenant: TenantInfo, retention_days: int) -> Pruned:
    """Delete `tenant`'s audit events older than `retention_days`, in batches; the run
    itself is recorded (actor NULL: no user acted) with the number deleted."""
    schema_engine = for_schema(engine, tenant.schema_name)
    old = (
        select(AuditEvent.id)
        .where(AuditEvent.created_at < _cutoff(retention_days))
        .order_by(AuditEvent.created_at, AuditEvent.id)
        .limit(BATCH_ROWS)
    )
    deleted = 0
    while True:
        with schema_engine.begin() as conn:
            conn.execute(select(func.set_config(RETENTION_SETTING, str(retention_days), True)))
            batch = conn.execute(delete(AuditEvent).where(AuditEvent.id.in_(old.scalar_subquery())))
            deleted += batch.rowcount
        if batch.rowcount < BATCH_ROWS:
            break
    with schema_engine.begin() as conn:
        detail = {"deleted": deleted, "retention_days": retention_days}
        record(Event(AUDIT_PRUNE, "audit", None, detail), session=conn)
    return Pruned(tenant.slug, deleted)
