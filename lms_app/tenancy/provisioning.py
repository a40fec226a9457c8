"""Creating and dropping schools: schema, tables, first admin, registry row."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, ProgrammingError
from sqlalchemy.schema import CreateSchema, DropSchema

from lms_app.accounts.models import User
from lms_app.accounts.passwords import hash_password, normalize_email
from lms_app.db.engines import for_schema, translate_map
from lms_app.tenancy.context import TenantInfo
from lms_app.tenancy.migrations import migrate_tenant
from lms_app.tenancy.models import Tenant
from lms_app.tenancy.registry import TENANT_INFO_COLUMNS, load_tenant, tenant_info_from_row
from lms_app.tenancy.slugs import schema_for, validate_slug

log = logging.getLogger(__name__)


class TenantExists(Exception):
    pass


class TenantNotFound(Exception):
    pass


@dataclass(frozen=True)
class NewTenant:
    slug: str
    name: str
    admin_email: str
    admin_password: str
    admin_name: str = "Administrator"


def validate_new_tenant(new: NewTenant) -> NewTenant:
    """Check everything before touching the database; raises ValueError."""
    validate_slug(new.slug)
    name = new.name.strip()
    if not name or len(name) > 120:
        raise ValueError("name must be 1-120 characters")
    return NewTenant(
        slug=new.slug,
        name=name,
        admin_email=normalize_email(new.admin_email),
        admin_password=new.admin_password,
        admin_name=new.admin_name.strip()[:120] or "Administrator",
    )


def register_tenant(conn: Connection, slug: str, name: str, status: str = "active") -> Row:
    """The registry row and its empty schema, in the caller's transaction (create and
    restore): nothing of the school is visible until that transaction commits.

    The schema name carries the id, known once the row exists; the placeholder is
    unique because the slug is, and never leaves the transaction.
    """
    tenant_id = conn.execute(
        insert(Tenant)
        .values(slug=slug, name=name, status=status, schema_name=f"pending:{slug}")
        .returning(Tenant.id)
    ).scalar_one()
    row = conn.execute(
        update(Tenant)
        .where(Tenant.id == tenant_id)
        .values(schema_name=schema_for(tenant_id, slug))
        .returning(*TENANT_INFO_COLUMNS)
    ).one()
    try:
        conn.execute(CreateSchema(row.schema_name))
    except ProgrammingError as exc:
        if getattr(exc.orig, "pgcode", None) == "42P06":  # duplicate_schema
            raise TenantExists(
                f"{slug}: schema {row.schema_name} exists without a registry row; drop it first"
            ) from None
        raise
    return row


def create_tenant(engine: Engine, new: NewTenant) -> TenantInfo:
    """Schema, tables, indexes, admin and registry row in one transaction.

    Either the school exists and is usable when this returns, or nothing of it does.
    """
    new = validate_new_tenant(new)
    password_hash = hash_password(new.admin_password)  # before the transaction: it is slow
    try:
        with engine.begin() as conn:
            row = register_tenant(conn, new.slug, new.name)
            schema = row.schema_name
            migrate_tenant(conn, schema, fresh=True)
            conn.execution_options(schema_translate_map=translate_map(schema)).execute(
                insert(User).values(
                    email=new.admin_email,
                    name=new.admin_name,
                    role="admin",
                    password_hash=password_hash,
                )
            )
    except IntegrityError as exc:
        if load_tenant(engine, new.slug) is not None:
            raise TenantExists(new.slug) from None
        raise exc
    log.info("tenant created: %s", new.slug)
    return tenant_info_from_row(row)


def drop_tenant(engine: Engine, slug: str) -> TenantInfo:
    """Registry row and schema, in one transaction; returns what the school was."""
    with engine.begin() as conn:
        row = conn.execute(
            delete(Tenant).where(Tenant.slug == slug).returning(*TENANT_INFO_COLUMNS)
        ).first()
        if row is None:
            raise TenantNotFound(slug)
        conn.execute(DropSchema(row.schema_name, cascade=True, if_exists=True))
    log.info("tenant dropped: %s", slug)
    return tenant_info_from_row(row)


def list_tenants(
    engine: Engine, after_slug: str | None = None, limit: int | None = None
) -> list[TenantInfo]:
    stmt = select(*TENANT_INFO_COLUMNS).order_by(Tenant.slug)
    if after_slug is not None:
        stmt = stmt.where(Tenant.slug > after_slug)
    if limit is not None:
        stmt = stmt.limit(limit)
    with engine.connect() as conn:
        return [tenant_info_from_row(r) for r in conn.execute(stmt)]


def update_tenant(engine: Engine, slug: str, changes: dict[str, str]) -> TenantInfo:
    values = {k: v for k, v in changes.items() if k in ("name", "status")}
    with engine.begin() as conn:
        stmt = update(Tenant).where(Tenant.slug == slug).returning(*TENANT_INFO_COLUMNS)
        row = conn.execute(stmt.values(**values, updated_at=func.now())).first()
    if row is None:
        raise TenantNotFound(slug)
    return tenant_info_from_row(row)


def tenant_counts(engine: Engine, tenant: TenantInfo) -> dict[str, int]:
    """Users, courses and enrollments of one tenant, in one statement."""
    from lms_app.catalog.models import Course
    from lms_app.learning.models import Enrollment

    def count(model) -> Any:
        return select(func.count()).select_from(model).scalar_subquery()

    stmt = select(
        count(User).label("users"),
        count(Course).label("courses"),
        count(Enrollment).label("enrollments"),
    )
    with for_schema(engine, tenant.schema_name).connect() as conn:
        return dict(conn.execute(stmt).one()._mapping)


def count_tenants(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Tenant)).scalar_one()
