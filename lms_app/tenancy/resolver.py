"""Request -> tenant, once per request, before any view runs."""

from __future__ import annotations

from flask import Flask, current_app, g, request

from lms_app.errors import abort
from lms_app.extensions import db
from lms_app.tenancy.context import TenantInfo
from lms_app.tenancy.registry import TenantRegistry
from lms_app.tenancy.slugs import SLUG_PATTERN

TENANT_URL_PREFIX = "/api/v1/"
TENANT_HEADER = "X-Tenant"


def registry() -> TenantRegistry:
    return current_app.extensions["lms_tenant_registry"]


def slug_from_request() -> str | None:
    header = request.headers.get(TENANT_HEADER)
    if header is not None and header.strip():
        return header.strip().lower()
    base = current_app.config.get("TENANT_BASE_DOMAIN")
    if base:
        host = request.host.split(":", 1)[0].lower()
        suffix = "." + base.lower()
        if host.endswith(suffix) and host != suffix[1:]:
            return host[: -len(suffix)]
    return None


def resolve_tenant() -> TenantInfo:
    slug = slug_from_request()
    if slug is None:
        abort(
            400, f"tenant required: send the {TENANT_HEADER} header or use the school's subdomain"
        )
    if not SLUG_PATTERN.fullmatch(slug):
        abort(400, "malformed tenant slug")
    tenant = registry().get(db.engine, slug)
    if tenant is None:
        abort(404, f"unknown tenant {slug!r}")
    if not tenant.is_active:
        abort(403, "this school's account is suspended")
    return tenant


def _before_request() -> None:
    if request.path.startswith(TENANT_URL_PREFIX):
        g.tenant = resolve_tenant()


def init_app(app: Flask) -> None:
    app.extensions["lms_tenant_registry"] = TenantRegistry(app.config["TENANT_CACHE_TTL"])
    app.before_request(_before_request)
