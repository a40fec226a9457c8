"""Courses and lessons carry a version number for optimistic concurrency.

Two staff editing the same course used to overwrite each other silently. The
ORM's version_id_col bumps this number on every UPDATE and refuses one whose
row moved underneath it; the HTTP layer exposes it as an ETag and honours
If-Match (lms_app.web.etags).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from lms_app.db import migration_ops

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TABLES = ("courses", "lessons")


# Alembic's ALTER TABLE does not pass through schema_translate_map, so these name
# the real schema.


def upgrade() -> None:
    # A constant default is stored in the catalog (PostgreSQL 11+): no table rewrite.
    for table in _TABLES:
        op.add_column(
            table,
            sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
            schema=migration_ops.real_schema(),
        )


def downgrade() -> None:
    for table in _TABLES:
        op.drop_column(table, "version", schema=migration_ops.real_schema())
