"""Tenant slugs and the schema names derived from them."""

from __future__ import annotations

import re

SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,40}$")
SCHEMA_PREFIX = "t_"
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


def schema_for(slug: str) -> str:
    """The tenant's schema: derived, never taken raw from a request.

    The prefix keeps tenants clear of `public`, `pg_*` and `information_schema`.
    """
    return SCHEMA_PREFIX + validate_slug(slug)
