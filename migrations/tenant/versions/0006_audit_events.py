"""Audit trail (`audit_events`, append-only) and the erasure mark on users.

`audit_events` records who did what to whom (ids and counts only, never personal
data). Privileges alone cannot keep it append-only: in development, and on many
managed services, the application's role owns its tables or is a superuser, and
an owner may UPDATE/DELETE/TRUNCATE whatever it owns. So triggers refuse those
statements for every role, and fire even under `session_replication_role =
replica` (ENABLE ALWAYS), which would otherwise switch ordinary triggers off.

The one exception is retention: a DELETE of a row passes only when the
transaction names a retention (`SET LOCAL lms.audit_retention_days`, done by
`flask audit prune`) *and* the row is older than that retention and than
RETENTION_FLOOR_DAYS, a floor compiled into the trigger here. Any connection may
set the setting, but no value of it lets a row younger than the floor go: the
trail of the last RETENTION_FLOOR_DAYS days cannot be deleted by any DML. Only
DDL (dropping or disabling the trigger, dropping the schema) gets around it,
and that is a schema change for the migration history, not something a request
or a stolen application password does by accident.

`users.erased_at` marks accounts whose personal data was erased (GDPR art. 17):
they are hidden from every user endpoint while their enrolments and progress stay
as anonymous rows.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from lms_app.db import migration_ops

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

S = "tenant"
# Frozen with this revision on purpose: AUDIT_RETENTION_DAYS may only lengthen it
# (config/settings.py refuses less), and changing it means a new migration.
RETENTION_FLOOR_DAYS = 30

_INDEXES = {
    "ix_audit_events_created": ["created_at", "id"],
    "ix_audit_events_actor": ["actor_id", "created_at", "id"],
    "ix_audit_events_action": ["action", "created_at", "id"],
    "ix_audit_events_target": ["target_type", "target_id", "created_at", "id"],
}


def _quoted_schema() -> str:
    # Raw DDL is not translated by schema_translate_map: name the real schema, quoted.
    return op.get_bind().dialect.identifier_preparer.quote_schema(migration_ops.real_schema())


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=False),
        sa.Column("target_id", sa.BigInteger(), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "detail",
            postgresql.JSONB(),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
        schema=S,
    )
    # A new, empty table: plain CREATE INDEX in the migration's transaction is instant.
    for name, columns in _INDEXES.items():
        op.create_index(name, "audit_events", columns, schema=S)

    s = _quoted_schema()
    op.execute(
        f"""
        CREATE FUNCTION {s}.audit_events_refuse_row_change() RETURNS trigger
        LANGUAGE plpgsql AS $fn$
        DECLARE
            requested text := nullif(current_setting('lms.audit_retention_days', true), '');
        BEGIN
            IF TG_OP = 'DELETE' AND requested IS NOT NULL THEN
                IF OLD.created_at < now() - make_interval(
                    days => greatest(requested::integer, {RETENTION_FLOOR_DAYS})
                ) THEN
                    RETURN OLD;
                END IF;
            END IF;
            RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'rows past the retention period go with `flask audit prune`';
        END
        $fn$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION {s}.audit_events_refuse_truncate() RETURNS trigger
        LANGUAGE plpgsql AS $fn$
        BEGIN
            RAISE EXCEPTION 'audit_events is append-only: TRUNCATE refused'
                USING ERRCODE = 'insufficient_privilege';
        END
        $fn$
        """
    )
    op.execute(
        f"CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE "
        f"ON {s}.audit_events FOR EACH ROW "
        f"EXECUTE FUNCTION {s}.audit_events_refuse_row_change()"
    )
    op.execute(
        f"CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE "
        f"ON {s}.audit_events FOR EACH STATEMENT "
        f"EXECUTE FUNCTION {s}.audit_events_refuse_truncate()"
    )
    for trigger in ("audit_events_append_only", "audit_events_no_truncate"):
        op.execute(f"ALTER TABLE {s}.audit_events ENABLE ALWAYS TRIGGER {trigger}")

    # NULL default: no table rewrite on a school with many users.
    op.add_column(
        "users",
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        schema=migration_ops.real_schema(),
    )


def downgrade() -> None:
    op.drop_column("users", "erased_at", schema=migration_ops.real_schema())
    s = _quoted_schema()
    op.drop_table("audit_events", schema=S)  # its triggers go with it
    op.execute(f"DROP FUNCTION {s}.audit_events_refuse_row_change()")
    op.execute(f"DROP FUNCTION {s}.audit_events_refuse_truncate()")
