"""Migrations of the shared `public` schema (the tenant registry)."""

from alembic import context

from lms_app.db.base import PublicBase
from lms_app.models import Tenant  # noqa: F401  (fills PublicBase.metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run migrations with `flask --app wsgi db-upgrade`")

context.configure(
    connection=connection,
    target_metadata=PublicBase.metadata,
    version_table_schema="public",
    include_schemas=True,
    include_name=lambda name, type_, _parent: type_ != "schema" or name == "public",
)
with context.begin_transaction():
    context.run_migrations()
