"""Cache generation counters move into the tenant's schema.

A counter kept only in the shared cache misses a bump when the cache cannot be
reached at the moment of a write, and other processes then serve what the write
replaced. A row moved by the writing transaction itself cannot miss (see
lms_app.caching.generations).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cache_generations",
        sa.Column("namespace", sa.Text(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("namespace", name="pk_cache_generations"),
        schema="tenant",
    )


def downgrade() -> None:
    op.drop_table("cache_generations", schema="tenant")
