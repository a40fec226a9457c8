"""Request -> tenant, once per request, before any view runs."""

from __future__ import annotations

from flask import Flask, current_app, g, request
from sqlalchemy.exc import ProgrammingError

from lms_app.errors import abort, error_response, unexpected_error_response
from lms_app.extensions import db
from lms_app.tenancy.context import TenantInfo
from lms_app.tenancy.registry import TenantRegistry, load_tenant, registry_changed
from lms_app.tenancy.slugs import SLUG_PATTERN

TENANT_URL_PREFIX = "/api/v1/"
TENANT_HEADER = "X-Tenant"
# undefined_table, invalid_schema_name: what a query meets in a dropped schema.
MISSING_RELATION_CODES = frozenset({"42P01", "3F000"})


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
            # Host names cannot carry "_", slugs cannot carry "-": my-school -> my_school.
            return host[: -len(suffix)].replace("-", "_")
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


def _schema_gone(exc: ProgrammingError):
    """A tenant dropped by another process while this one still had it cached."""
    tenant = g.get("tenant")
    if tenant is None or getattr(exc.orig, "pgcode", None) not in MISSING_RELATION_CODES:
        return unexpected_error_response(exc)
    registry().invalidate(tenant.slug)
    now = load_tenant(db.engine, tenant.slug)
    if now is not None and now.id == tenant.id:
        return unexpected_error_response(exc)  # the school exists: a real fault
    # Dropped, or dropped and created again under the same slug: either way the
    # school this request resolved is gone, and so is everything bound to it.
    return error_response(404, f"unknown tenant {tenant.slug!r}")


def forget_tenant(slug: str) -> None:
    """After a change to a school's registry row commits (created, suspended,
    renamed): this process forgets it at once, the others within a second."""
    registry().invalidate(slug)
    registry_changed()


def forget_dropped(tenant: TenantInfo) -> None:
    """After a school is dropped: as `forget_tenant`. Its cached values need nothing:
    every key names the school's id and creation time, which no later school shares
    (a school created again under the slug has new ones), and they expire on their TTL."""
    forget_tenant(tenant.slug)


def _before_request() -> None:
    # `g` can outlive one request (tests, scripts): no request inherits a tenant.
    g.pop("tenant", None)
    if request.path.startswith(TENANT_URL_PREFIX):
        g.tenant = resolve_tenant()


def init_app(app: Flask) -> None:
    settings = app.config["LMS_SETTINGS"]
    app.extensions["lms_tenant_registry"] = TenantRegistry(
        app.config["TENANT_CACHE_TTL"], check_s=settings.cache_local_s
    )
    app.before_request(_before_request)
    app.register_error_handler(ProgrammingError, _schema_gone)
