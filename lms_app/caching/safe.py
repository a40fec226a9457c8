"""Cache calls that never fail a request: an outage degrades to the database.

Every call has the client's short socket timeout (CACHE_TIMEOUT_MS). After a
failure the breaker opens for CACHE_BREAKER_SECONDS: reads and fills are skipped
(straight to the database, no timeout paid per request), then the cache is tried
again. Invalidations (delete, generation bumps) are always attempted, even with the
breaker open: skipping one could leave another process serving stale data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from flask import Flask, current_app

from lms_app.extensions import cache

log = logging.getLogger(__name__)


class Breaker:
    def __init__(self, open_s: float) -> None:
        self.open_s = open_s
        self._open_until = 0.0

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self._open_until

    def trip(self, op: str, exc: Exception) -> None:
        if not self.is_open:
            log.warning(
                "cache_error op=%s error=%s breaker_open_s=%s", op, type(exc).__name__, self.open_s
            )
        self._open_until = time.monotonic() + self.open_s

    def reset(self) -> None:
        self._open_until = 0.0


def init_app(app: Flask, open_s: float) -> None:
    app.extensions["lms_cache_breaker"] = Breaker(open_s)


def breaker() -> Breaker:
    return current_app.extensions["lms_cache_breaker"]


def cache_get(key: str) -> Any | None:
    return cache_get_many([key])[0]


def cache_get_many(keys: Sequence[str]) -> list[Any | None]:
    """Values of `keys` in one round trip (MGET); Nones while the cache is down."""
    guard = breaker()
    if guard.is_open:
        return [None] * len(keys)
    try:
        return list(cache.get_many(*keys))
    except Exception as exc:
        guard.trip("get", exc)
        return [None] * len(keys)


def cache_set(key: str, value: Any, ttl_s: int) -> None:
    guard = breaker()
    if guard.is_open:
        return
    try:
        cache.set(key, value, timeout=ttl_s)
    except Exception as exc:
        guard.trip("set", exc)


def cache_delete(key: str) -> None:
    try:
        cache.delete(key)
    except Exception as exc:
        breaker().trip("delete", exc)


def cache_incr(key: str) -> None:
    try:
        # The backend's INCR: atomic in Redis (Flask-Caching's facade has no inc).
        cache.cache.inc(key)
    except Exception as exc:
        breaker().trip("incr", exc)
