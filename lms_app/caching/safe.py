"""Cache calls that never fail a request: an outage degrades to the database.

Every call has the client's short socket timeout (CACHE_TIMEOUT_MS). After a
failure the breaker opens for CACHE_BREAKER_SECONDS: reads and fills are skipped
(straight to the database, no timeout paid per request), then the cache is tried
again. The one invalidation left in Redis, the tenant registry's counter INCR, is
always attempted; one that fails is remembered and replayed before this process
reads or fills the cache again (cached namespaces keep their generations in
PostgreSQL: lms_app.caching.generations).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from flask import Flask, current_app

from lms_app.extensions import cache

log = logging.getLogger(__name__)

INCR, DELETE = "incr", "delete"


class Breaker:
    def __init__(self, open_s: float) -> None:
        self.open_s = open_s
        self._open_until = 0.0
        # key -> INCR or DELETE: invalidations still owed to the cache.
        self.pending: dict[str, str] = {}

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self._open_until

    def trip(self, op: str, exc: Exception) -> None:
        if not self.is_open:
            log.warning(
                "cache_error op=%s error=%s breaker_open_s=%s", op, type(exc).__name__, self.open_s
            )
        self._open_until = time.monotonic() + self.open_s

    def usable(self) -> bool:
        """May this process read or fill the cache now? Replays owed invalidations
        first (one round trip); False while the breaker is open or a replay fails."""
        if self.is_open:
            return False
        if self.pending:
            # Swapped out whole: an invalidation owed by another thread meanwhile
            # lands in the new dict and is not dropped with these.
            owed, self.pending = self.pending, {}
            try:
                _invalidate(owed)
            except Exception as exc:
                for key, op in owed.items():
                    self.pending.setdefault(key, op)
                self.trip("replay", exc)
                return False
        return True


def init_app(app: Flask, open_s: float) -> None:
    app.extensions["lms_cache_breaker"] = Breaker(open_s)


def breaker() -> Breaker:
    return current_app.extensions["lms_cache_breaker"]


def cache_get(key: str) -> Any | None:
    return cache_get_many([key])[0]


def cache_get_many(keys: Sequence[str]) -> list[Any | None]:
    """Values of `keys` in one round trip (MGET); Nones while the cache is unusable."""
    guard = breaker()
    if not guard.usable():
        return [None] * len(keys)
    try:
        return list(cache.get_many(*keys))
    except Exception as exc:
        guard.trip("get", exc)
        return [None] * len(keys)


def cache_set(key: str, value: Any, ttl_s: int) -> None:
    guard = breaker()
    if not guard.usable():
        return
    try:
        cache.set(key, value, timeout=ttl_s)
    except Exception as exc:
        guard.trip("set", exc)


def cache_claim(key: str, ttl_ms: int) -> bool:
    """Take a short-lived claim on `key` (SET NX PX): True for the one caller that got
    it, and for everyone while the cache is unusable (nobody waits on a dead cache)."""
    guard = breaker()
    if not guard.usable():
        return True
    backend = cache.cache
    client = getattr(backend, "_write_client", None)
    try:
        if client is None:  # the in-process cache (REDIS_URL unset)
            return bool(backend.add(key, 1, timeout=max(1, ttl_ms // 1000)))
        return bool(client.set(backend._get_prefix() + key, b"1", nx=True, px=ttl_ms))
    except Exception as exc:
        guard.trip("claim", exc)
        return True


def cache_release(key: str) -> None:
    """Drop a claim (best effort: it expires anyway)."""
    guard = breaker()
    if not guard.usable():
        return
    try:
        cache.delete(key)
    except Exception as exc:
        guard.trip("release", exc)


# SET key to ARGV[1] unless it holds a larger number; (re)arm the expiry either way.
_RAISE_TO = """
local held = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if held < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
"""


def cache_raise_to(key: str, value: int, ttl_ms: int) -> bool:
    """Keep the larger of `value` and what `key` holds, for `ttl_ms`; False if the
    cache did not take it. Always attempted, even while the breaker is open: other
    processes may be reading the cache fine, and they must see this."""
    guard = breaker()
    backend = cache.cache
    client = getattr(backend, "_write_client", None)
    try:
        if client is None:  # the in-process cache (REDIS_URL unset)
            held = backend.get(key) or 0
            backend.set(key, max(held, value), timeout=max(1, ttl_ms // 1000))
        else:
            client.eval(_RAISE_TO, 1, backend._get_prefix() + key, value, ttl_ms)
    except Exception as exc:
        guard.trip("raise_to", exc)
        return False
    return True


def cache_get_int(key: str) -> int | None:
    """The integer at `key` (0 when there is none); None when the cache is unusable,
    so a caller can tell "nothing recorded" from "cannot know"."""
    guard = breaker()
    if not guard.usable():
        return None
    try:
        value = cache.get(key)
    except Exception as exc:
        guard.trip("get", exc)
        return None
    return int(value) if value is not None else 0


def cache_incr(key: str) -> None:
    _invalidate_or_owe({key: INCR})


def _invalidate(ops: dict[str, str]) -> None:
    """Apply {key: INCR or DELETE} in one round trip (a pipeline on Redis)."""
    backend = cache.cache
    client = getattr(backend, "_write_client", None)
    if client is None:  # the in-process cache (REDIS_URL unset)
        for key, op in ops.items():
            # The backend's INCR (Flask-Caching's facade has no inc).
            backend.inc(key) if op == INCR else backend.delete(key)
        return
    prefix = backend._get_prefix()
    pipe = client.pipeline(transaction=False)
    for key, op in ops.items():
        pipe.incr(prefix + key) if op == INCR else pipe.delete(prefix + key)
    pipe.execute()


def _invalidate_or_owe(ops: dict[str, str]) -> None:
    if not ops:
        return
    guard = breaker()
    try:
        _invalidate(ops)
    except Exception as exc:
        # One owed INCR is enough however many writes failed: any new generation
        # retires the old one.
        guard.pending.update(ops)
        guard.trip(next(iter(ops.values())), exc)
