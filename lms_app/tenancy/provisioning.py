"""Creating and dropping schools: schema, tables, first admin, registry row."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine, delete, func, insert, select
from sqlalchemy.exc import IntegrityError, ProgrammingError
from sqlalchemy.schema import CreateSchema, DropSchema

from lms_app.accounts.models import User
from lms_app.accounts.passwords import hash_password, normalize_email
from lms_app.db.engines import translate_map
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


def create_tenant(engine: Engine, new: NewTenant) -> TenantInfo:
    """Schema, tables, indexes, admin and registry row in one transaction.

    Either the school exists and is usable when this returns, or nothing of it does.
    """
    new = validate_new_tenant(new)
    password_hash = hash_password(new.admin_password)  # before the transaction: it is slow
    schema = schema_for(new.slug)
    try:
        with engine.begin() as conn:
            row = conn.execute(
                insert(Tenant)
                .values(slug=new.slug, name=new.name, schema_name=schema)
                .returning(*TENANT_INFO_COLUMNS)
            ).one()
            conn.execute(CreateSchema(schema))
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
    except ProgrammingError as exc:
        if getattr(exc.orig, "pgcode", None) == "42P06":  # duplicate_schema
            raise TenantExists(
                f"{new.slug}: schema {schema} exists without a registry row; drop it first"
            ) from None
        raise
    log.info("tenant created: %s", new.slug)
    return tenant_info_from_row(row)


def drop_tenant(engine: Engine, slug: str) -> None:
    with engine.begin() as conn:
        schema = conn.execute(
            delete(Tenant).where(Tenant.slug == slug).returning(Tenant.schema_name)
        ).scalar_one_or_none()
        if schema is None:
            raise TenantNotFound(slug)
        conn.execute(DropSchema(schema, cascade=True, if_exists=True))
    log.info("tenant dropped: %s", slug)


def list_tenants(engine: Engine) -> list[TenantInfo]:
    with engine.connect() as conn:
        rows = conn.execute(select(*TENANT_INFO_COLUMNS).order_by(Tenant.slug))
        return [tenant_info_from_row(r) for r in rows]


def count_tenants(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Tenant)).scalar_one()
