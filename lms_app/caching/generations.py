"""Generation counters: O(1) invalidation of a whole namespace of a tenant.

Each (tenant, namespace) has a counter in the cache, and every cached value of the
namespace carries the counter in its key. A write bumps the counter (INCR) after it
commits; the old keys are never read again and expire on their TTL. No KEYS or
SCAN, whatever the number of keys.

A reader takes the generation *before* it reads the database and stores under that
generation, so a fill that raced with a write lands under the old, dead generation:
no value read before a write can be served after it, in any process.
"""

from __future__ import annotations

from collections.abc import Iterable

from lms_app.caching.keys import tenant_key
from lms_app.caching.local import LocalCopies, shared_copies
from lms_app.caching.safe import cache_incr_many
from lms_app.tenancy.context import TenantInfo, require_tenant

# The namespaces of DESIGN.md's caching section that are in use.
CATALOG = "catalog"


def generation_key(namespace: str, tenant: TenantInfo | None = None) -> str:
    return tenant_key(tenant or require_tenant(), "gen", namespace)


def bump(
    namespace: str, tenant: TenantInfo | None = None, copies: LocalCopies | None = None
) -> None:
    """Invalidate every cached value of `namespace` (call after the write commits)."""
    bump_many([namespace], tenant, copies)


def bump_many(
    namespaces: Iterable[str],
    tenant: TenantInfo | None = None,
    copies: LocalCopies | None = None,
) -> None:
    """`bump` for several namespaces in one cache round trip."""
    tenant = tenant or require_tenant()
    keys = [generation_key(namespace, tenant) for namespace in namespaces]
    # INCR first: a reader that starts after the forget below is sure to see the new
    # generation; one that started before cannot store its copy (see LocalCopies).
    cache_incr_many(keys)
    copies = copies or shared_copies()
    for key in keys:
        copies.forget(key)


def parse_generation(raw: object) -> int:
    """A counter never set (or evicted) reads as generation 0."""
    try:
        return int(raw)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0
