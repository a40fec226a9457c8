"""The cached-read helper: a value of a namespace, under its current generation.

Three levels, cheapest first:

1. this process's copy (no round trip);
2. the shared cache, under the generation of this process's snapshot (one GET);
3. `load()`, stored under that same generation, read *before* `load()` ran.

A miss is recomputed by one request at a time per key (`claim`): the others wait a
little for its value, then load it themselves rather than wait longer. Nobody is
served a value of an older generation: after a write, staleness is what the
generation snapshot allows (CACHE_LOCAL_SECONDS), never more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from lms_app.caching import generations
from lms_app.caching.keys import tenant_key
from lms_app.caching.local import shared_copies
from lms_app.caching.safe import breaker, cache_claim, cache_get, cache_release, cache_set
from lms_app.caching.stats import cache_stats
from lms_app.db.routing import primary_reads
from lms_app.tenancy.context import require_tenant

T = TypeVar("T")

# How long a request waits for another one's recomputation of the same miss, and
# how often it looks; past that it loads the value itself.
CLAIM_MS = 2_000
WAIT_STEPS_S = (0.005, 0.01, 0.02, 0.04, 0.08)


def cached_read(
    namespace: str,
    key: str,
    ttl_s: int,
    load: Callable[[], T | None],
    *,
    keep: Callable[[T], bool] | None = None,
    keep_local: Callable[[T], bool] | None = None,
    claim: bool = True,
) -> T | None:
    """`load()`'s value for `key` in `namespace`, from a cache while it is current.

    A None from `load` is returned and never stored. `keep(value)` False: return the
    value without storing it (a value nobody else will ask for). `keep_local(value)`
    False: store it in the shared cache only (a value too big to keep per process).
    `claim` False: no
    single-flight on a miss (for cheap loads, where the extra round trip costs more
    than the duplicate work).
    """
    tenant = require_tenant()
    generation = generations.current(namespace, tenant)
    # "p": generations held in PostgreSQL. The previous release keyed Redis-held
    # generations "g<n>"; numbers restarted at 0, so the letter keeps the two apart.
    full_key = tenant_key(tenant, namespace, f"p{generation}", key)
    stats = cache_stats()
    outcome: list[str] = []

    def fill() -> T | None:
        # Whatever fills a shared cache reads from the primary: a lagging replica's
        # value would be kept under the new generation for the whole TTL.
        with primary_reads():
            return load()

    def shared() -> T | None:
        return _shared_read(full_key, ttl_s, fill, keep, claim, outcome)

    def kept_here(value: T) -> bool:
        return (keep is None or keep(value)) and (keep_local is None or keep_local(value))

    value, local = shared_copies().get_or_read(full_key, shared, ttl_s=ttl_s, keep=kept_here)
    if local or outcome == ["hit"]:
        stats.hit(namespace, local=local)
    else:
        stats.miss(namespace)
        if "error" in outcome:
            stats.error(namespace)
    return value


def _shared_read(
    full_key: str,
    ttl_s: int,
    load: Callable[[], T | None],
    keep: Callable[[T], bool] | None,
    claim: bool,
    outcome: list[str],
) -> T | None:
    guard = breaker()
    if guard.is_open:
        outcome.append("error")
        return load()
    value = cache_get(full_key)
    if guard.is_open:  # that call just failed
        outcome.append("error")
        return load()
    if value is not None:
        outcome.append("hit")
        return value
    if claim and not cache_claim(f"{full_key}:claim", CLAIM_MS):
        # Someone else is computing it: wait for their value a little.
        for pause in WAIT_STEPS_S:
            time.sleep(pause)
            value = cache_get(full_key)
            if value is not None:
                outcome.append("hit")
                return value
    try:
        value = load()
    except BaseException:
        if claim:
            cache_release(f"{full_key}:claim")  # nobody should wait for a failed load
        raise
    if value is not None and (keep is None or keep(value)):
        cache_set(full_key, value, ttl_s)
    elif claim:
        # Nothing to wait for: the next request for this key must not poll for it.
        cache_release(f"{full_key}:claim")
    return value
