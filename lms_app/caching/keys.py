"""Cache key building: every key is scoped to one tenant.

The scope includes the tenant's creation time as well as its id, so a database
rebuilt from scratch (ids start again at 1) never meets a previous life's keys.
"""

from __future__ import annotations

from lms_app.tenancy.context import TenantInfo


def tenant_scope_key(tenant: TenantInfo) -> str:
    return f"t{tenant.id}.{int(tenant.created_at.timestamp())}"


def tenant_key(tenant: TenantInfo, *parts: object) -> str:
    return ":".join((tenant_scope_key(tenant), *map(str, parts)))
