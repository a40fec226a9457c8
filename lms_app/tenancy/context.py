"""The current tenant: resolved once per request and kept on `flask.g`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from flask import g, has_app_context


@dataclass(frozen=True, slots=True)
class TenantInfo:
    """What a request needs to know about its tenant, detached from any session."""

    id: int
    slug: str
    name: str
    schema_name: str
    status: str
    created_at: datetime

    @property
    def is_active(self) -> bool:
        return self.status == "active"


def current_tenant() -> TenantInfo | None:
    if not has_app_context():
        return None
    return g.get("tenant")


def require_tenant() -> TenantInfo:
    tenant = current_tenant()
    if tenant is None:
        raise RuntimeError("no tenant bound to this context")
    return tenant


@contextmanager
def tenant_scope(tenant: TenantInfo) -> Iterator[TenantInfo]:
    """Bind `tenant` for code outside a request (CLI, tests); restores the previous one.

    The caller must not share one Session across two tenants: commit or close it first.
    """
    previous = g.get("tenant")
    g.tenant = tenant
    try:
        yield tenant
    finally:
        g.tenant = previous
