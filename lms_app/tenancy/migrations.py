"""Running Alembic for the public registry and for tenant schemas, programmatically."""

from __future__ import annotations

from functools import cache

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, literal, select, union_all
from sqlalchemy.sql import column, table

from config.settings import PROJECT_ROOT

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
PUBLIC_SCRIPTS = MIGRATIONS_DIR / "public"
TENANT_SCRIPTS = MIGRATIONS_DIR / "tenant"
VERSION_TABLE = "alembic_version"


def alembic_config(script_location, **attributes) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes.update(attributes)
    return cfg


@cache
def tenant_scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(TENANT_SCRIPTS))


@cache
def tenant_head() -> str:
    head = tenant_scripts().get_current_head()
    assert head is not None
    return head


def is_tenant_revision(revision: str) -> bool:
    """Is `revision` one of the tenant scripts (so a schema at it can be built and
    migrated to head)? A snapshot from a newer release names one they do not know."""
    return revision in {script.revision for script in tenant_scripts().walk_revisions()}


def upgrade_public(engine: Engine, revision: str = "head") -> None:
    with engine.connect() as conn:
        command.upgrade(alembic_config(PUBLIC_SCRIPTS, connection=conn), revision)
        conn.commit()


def migrate_tenant(
    conn: Connection, schema: str, revision: str = "head", *, fresh: bool = False
) -> None:
    """Bring one tenant schema to `revision`.

    With `fresh=True` the caller owns an open transaction (provisioning) and
    everything, indexes included, happens inside it; otherwise Alembic manages
    the transaction and builds indexes online.
    """
    cfg = alembic_config(TENANT_SCRIPTS, connection=conn, schema=schema, fresh_schema=fresh)
    command.upgrade(cfg, revision)


def downgrade_tenant(conn: Connection, schema: str, revision: str) -> None:
    command.downgrade(alembic_config(TENANT_SCRIPTS, connection=conn, schema=schema), revision)


def schemas_with_version_table(conn: Connection, schemas: list[str]) -> set[str]:
    pg_class = table("pg_class", column("relname"), column("relnamespace"), schema="pg_catalog")
    pg_ns = table("pg_namespace", column("oid"), column("nspname"), schema="pg_catalog")
    rows = conn.execute(
        select(pg_ns.c.nspname)
        .join(pg_class, pg_class.c.relnamespace == pg_ns.c.oid)
        .where(pg_class.c.relname == VERSION_TABLE, pg_ns.c.nspname.in_(schemas))
    )
    return {r[0] for r in rows}


# Reading a version table locks it (and its key) until the transaction ends;
# chunks in short transactions keep far below max_locks_per_transaction and keep
# planning time linear however many schools there are.
REVISION_CHUNK = 500


def tenant_revisions(
    conn: Connection, schemas: list[str], chunk: int = REVISION_CHUNK
) -> dict[str, str | None]:
    """Every tenant's current revision (None: not migrated), one UNION ALL per chunk.

    Commits `conn` after each chunk to release the locks: call it on a connection
    that holds no transaction of the caller's.
    """
    found: dict[str, str | None] = dict.fromkeys(schemas)
    for start in range(0, len(schemas), chunk):
        present = sorted(schemas_with_version_table(conn, schemas[start : start + chunk]))
        if present:
            parts = [
                select(literal(s).label("schema"), column("version_num")).select_from(
                    table(VERSION_TABLE, column("version_num"), schema=s)
                )
                for s in present
            ]
            for schema, version in conn.execute(union_all(*parts)):
                found[schema] = version
        conn.commit()
    return found
