"""Slug -> tenant lookups, cached in process so a warm request costs no query."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from sqlalchemy import Engine, select

from lms_app.caching.safe import cache_get, cache_incr
from lms_app.tenancy.context import TenantInfo
from lms_app.tenancy.models import Tenant

# Not scoped to a tenant: it counts changes to the registry of every tenant.
REGISTRY_GENERATION = "registry:gen"

TENANT_INFO_COLUMNS = (
    Tenant.id,
    Tenant.slug,
    Tenant.name,
    Tenant.schema_name,
    Tenant.status,
    Tenant.created_at,
)


def tenant_info_from_row(row) -> TenantInfo:
    return TenantInfo(
        id=row.id,
        slug=row.slug,
        name=row.name,
        schema_name=row.schema_name,
        status=row.status,
        created_at=row.created_at,
    )


def load_tenant(engine: Engine, slug: str) -> TenantInfo | None:
    with engine.connect() as conn:
        row = conn.execute(select(*TENANT_INFO_COLUMNS).where(Tenant.slug == slug)).first()
    return tenant_info_from_row(row) if row is not None else None


class TenantRegistry:
    """A bounded TTL cache in front of `public.tenants`.

    Unknown slugs are cached too (for a shorter time) so a client hammering a
    wrong subdomain does not cost a query per request. A change to the registry
    (create, suspend, rename, drop) moves a generation counter in the shared cache;
    each process looks at it at most every `check_s` and starts over when it moved,
    so every process sees the change within `check_s`: one cache read per process
    per interval, not per request. While the cache cannot be read, entries live
    their TTL.
    """

    def __init__(
        self,
        ttl_s: float,
        miss_ttl_s: float | None = None,
        max_entries: int = 10_000,
        check_s: float = 1.0,
    ):
        self.ttl_s = ttl_s
        self.miss_ttl_s = min(ttl_s, 5.0) if miss_ttl_s is None else miss_ttl_s
        self.max_entries = max_entries
        self.check_s = check_s
        self._entries: OrderedDict[str, tuple[float, TenantInfo | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._generation: object = None
        self._next_check = 0.0
        # Moved by every invalidation: a row read before one is not stored after it
        # (another thread of a threaded worker may clear while this one reads).
        self._epoch = 0

    def get(self, engine: Engine, slug: str) -> TenantInfo | None:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.check_s
            self._follow_changes()
        entry = self._entries.get(slug)
        if entry is not None and entry[0] > now:
            return entry[1]
        epoch = self._epoch
        tenant = load_tenant(engine, slug)
        ttl = self.ttl_s if tenant is not None else self.miss_ttl_s
        with self._lock:
            if epoch != self._epoch:
                return tenant  # read before a change: serve it once, keep nothing
            self._entries[slug] = (now + ttl, tenant)
            self._entries.move_to_end(slug)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return tenant

    def _follow_changes(self) -> None:
        generation = cache_get(REGISTRY_GENERATION)
        if generation is not None and generation != self._generation:
            self._generation = generation
            self.invalidate()

    def invalidate(self, slug: str | None = None) -> None:
        with self._lock:
            self._epoch += 1
            if slug is None:
                self._entries.clear()
            else:
                self._entries.pop(slug, None)


def registry_changed() -> None:
    """Call after a change to `public.tenants` commits: other processes follow."""
    cache_incr(REGISTRY_GENERATION)
