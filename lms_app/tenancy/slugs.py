"""Tenant slugs and the schema names derived from them."""

from __future__ import annotations

import re

SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,40}$")
SCHEMA_PREFIX = "t"
RESERVED_SLUGS = frozenset({"public", "platform", "api", "www", "admin", "static"})


class InvalidSlug(ValueError):
    pass


def validate_slug(slug: str) -> str:
    if not isinstance(slug, str) or not SLUG_PATTERN.fullmatch(slug):
        raise InvalidSlug(
            "slug must be 2-41 characters: a lower-case letter, then lower-case letters, "
            "digits or underscores"
        )
    if slug in RESERVED_SLUGS:
        raise InvalidSlug(f"slug {slug!r} is reserved")
    return slug


def schema_for(tenant_id: int, slug: str) -> str:
    """The tenant's schema: derived, never taken raw from a request.

    It carries the registry id as well as the slug, so a school created again under
    a deleted school's slug gets a schema of its own: a process still holding the
    deleted school's registry entry queries a schema that no longer exists (404),
    never the new school's. The prefix keeps tenants clear of `public`, `pg_*` and
    `information_schema`; at most 1 + 19 + 1 + 41 = 62 characters (PostgreSQL: 63).
    """
    if not isinstance(tenant_id, int) or tenant_id < 0:
        raise ValueError("tenant id must be a non-negative integer")
    return f"{SCHEMA_PREFIX}{tenant_id}_{validate_slug(slug)}"
