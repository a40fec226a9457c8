"""The cached-read helper: a value of a namespace, validated by its generation.

Three levels, cheapest first:

1. this process's copy, younger than its LocalCopies' TTL (no round trip);
2. the shared cache: the generation counter and the value under the generation this
   process saw last come back together (one MGET); only when the counter moved is
   the value under the new generation fetched as well;
3. `load()`, stored under the generation read *before* it ran.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import current_app

from lms_app.caching.generations import generation_key, parse_generation
from lms_app.caching.keys import tenant_key
from lms_app.caching.local import LocalCopies, shared_copies
from lms_app.caching.safe import breaker, cache_get, cache_get_many, cache_set
from lms_app.tenancy.context import require_tenant

T = TypeVar("T")

# Generations this process saw last, per counter: a guess that saves a round trip.
# Per-user namespaces (auth state) make it grow with users; past this it starts over
# (a wrong guess costs one GET more, never a stale value).
MAX_REMEMBERED_GENERATIONS = 100_000


def _last_seen() -> dict[str, int]:
    seen = current_app.extensions.setdefault("lms_cache_generations", {})
    if len(seen) > MAX_REMEMBERED_GENERATIONS:
        seen.clear()
    return seen


def cached_read(
    namespace: str,
    key: str,
    ttl_s: int,
    load: Callable[[], T | None],
    *,
    copies: LocalCopies | None = None,
    keep: Callable[[T], bool] | None = None,
) -> T | None:
    """`load()`'s value for `key` in `namespace`, from a cache while it is current.

    A None from `load` is returned and never stored. `keep(value)` False: return the
    value without storing it (a value nobody else will ask for). `copies`: the process
    copies to use (default: the shared namespaces' ones).
    """
    tenant = require_tenant()
    gen_key = generation_key(namespace, tenant)
    prefix = tenant_key(tenant, namespace)
    return (copies or shared_copies()).get_or_read(
        gen_key, key, lambda: _shared_read(prefix, gen_key, key, ttl_s, load, keep), keep
    )


def _shared_read(
    prefix: str,
    gen_key: str,
    key: str,
    ttl_s: int,
    load: Callable[[], T | None],
    keep: Callable[[T], bool] | None,
) -> T | None:
    if breaker().is_open:
        return load()
    seen = _last_seen()
    guess = seen.get(gen_key, 0)
    raw_generation, value = cache_get_many([gen_key, f"{prefix}:g{guess}:{key}"])
    if breaker().is_open:  # that call just failed
        return load()
    generation = parse_generation(raw_generation)
    if generation != guess:
        seen[gen_key] = generation
        value = cache_get(f"{prefix}:g{generation}:{key}")
    if value is not None:
        return value
    value = load()
    if value is not None and (keep is None or keep(value)):
        cache_set(f"{prefix}:g{generation}:{key}", value, ttl_s)
    return value
