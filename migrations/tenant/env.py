"""Migrations of one tenant schema.

The scripts name the placeholder schema "tenant"; the connection's
schema_translate_map points it at the real schema, and the version table lives in
that schema, so every school carries its own revision.
"""

from alembic import context

from lms_app.db.base import TenantBase
from lms_app.db.engines import translate_map
from lms_app.models import User  # noqa: F401  (fills TenantBase.metadata)

attributes = context.config.attributes
connection = attributes.get("connection")
schema = attributes.get("schema")
if connection is None or not schema:
    raise SystemExit("run tenant migrations with `flask --app wsgi db-upgrade`")

context.configure(
    connection=connection.execution_options(schema_translate_map=translate_map(schema)),
    target_metadata=TenantBase.metadata,
    version_table_schema=schema,
)
with context.begin_transaction():
    context.run_migrations()
