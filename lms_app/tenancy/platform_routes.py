"""Operators' routes: onboarding and managing schools (`Bearer PLATFORM_API_KEY`)."""

from __future__ import annotations

import hmac
import os

from flask import current_app, request
from flask.views import MethodView

from lms_app.caching.stats import cache_stats
from lms_app.db.routing import replica_set
from lms_app.db.statement_stats import STATS, server_top
from lms_app.errors import abort
from lms_app.extensions import db
from lms_app.tenancy.platform_schemas import (
    CacheStatsSchema,
    DropArgs,
    ReplicaStatsSchema,
    SlowQueriesSchema,
    TenantCreate,
    TenantDetail,
    TenantListArgs,
    TenantPage,
    TenantPatch,
    TenantSchema,
)
from lms_app.tenancy.provisioning import (
    NewTenant,
    TenantExists,
    TenantNotFound,
    create_tenant,
    drop_tenant,
    list_tenants,
    tenant_counts,
    update_tenant,
)
from lms_app.tenancy.registry import load_tenant
from lms_app.tenancy.resolver import forget_dropped, forget_tenant
from lms_app.web.blueprint import Blueprint

blp = Blueprint("platform", __name__, url_prefix="/platform", description="Tenant onboarding")


@blp.before_request
def _require_platform_key() -> None:
    expected = current_app.config.get("PLATFORM_API_KEY")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # Constant-time compare: the key must not leak through response timing.
    if (
        not expected
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(given.strip().encode(), expected.encode())
    ):
        abort(401, "platform API key required")


def _tenant_or_404(slug: str):
    tenant = load_tenant(db.engine, slug)
    if tenant is None:
        abort(404, f"unknown tenant {slug!r}")
    return tenant


@blp.route("/tenants")
class Tenants(MethodView):
    @blp.arguments(TenantListArgs, location="query")
    @blp.response(200, TenantPage)
    def get(self, args):
        limit = args["limit"]
        rows = list_tenants(db.engine, after_slug=args["cursor"], limit=limit + 1)
        items = rows[:limit]
        return {"items": items, "next_cursor": items[-1].slug if len(rows) > limit else None}

    @blp.arguments(TenantCreate)
    @blp.response(201, TenantSchema)
    def post(self, data):
        new = NewTenant(
            data["slug"],
            data["name"],
            data["admin_email"],
            data["admin_password"],
            data["admin_name"],
        )
        try:
            tenant = create_tenant(db.engine, new)
        except TenantExists:
            abort(409, f"tenant {data['slug']!r} already exists")
        forget_tenant(tenant.slug)
        return tenant


@blp.route("/tenants/<slug:slug>")
class TenantBySlug(MethodView):
    @blp.response(200, TenantDetail)
    def get(self, slug):
        tenant = _tenant_or_404(slug)
        return {**_as_dict(tenant), "counts": tenant_counts(db.engine, tenant)}

    @blp.arguments(TenantPatch)
    @blp.response(200, TenantSchema)
    def patch(self, changes, slug):
        try:
            tenant = update_tenant(db.engine, slug, changes)
        except TenantNotFound:
            abort(404, f"unknown tenant {slug!r}")
        forget_tenant(slug)
        return tenant

    @blp.arguments(DropArgs, location="query")
    @blp.response(204)
    def delete(self, args, slug):
        if args["confirm"] != slug:
            abort(422, "confirm must repeat the slug", {"confirm": ["must equal the slug"]})
        try:
            dropped = drop_tenant(db.engine, slug)
        except TenantNotFound:
            abort(404, f"unknown tenant {slug!r}")
        forget_dropped(dropped)


def _as_dict(tenant) -> dict:
    return {f: getattr(tenant, f) for f in ("slug", "name", "status", "created_at")}


@blp.get("/cache-stats")
@blp.response(200, CacheStatsSchema)
def cache_stats_of_this_process():
    """This worker process's cache counters per namespace since it started (each
    gunicorn worker answers for itself; `pid` tells which)."""
    return {"pid": os.getpid(), "namespaces": cache_stats().snapshot()}


@blp.get("/replicas")
@blp.response(200, ReplicaStatsSchema)
def replicas_of_this_process():
    """This worker process's view of the read replicas (health, lag) and where its
    read-only requests' reads went since it started; empty without replicas."""
    found = replica_set()
    described = found.describe() if found is not None else {"replicas": [], "routing": {}}
    return {"pid": os.getpid(), **described}


@blp.get("/slow-queries")
@blp.response(200, SlowQueriesSchema)
def slow_queries_of_this_process():
    """The top statements by mean and by total time: this worker's since it started
    (by fingerprint: no literals, no values), and the server's from
    pg_stat_statements when it is available."""
    return {"pid": os.getpid(), "process": STATS.top(), "server": server_top(db.engine)}
