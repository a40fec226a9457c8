"""Login throttling, owned by each app, on `limits` (the engine under flask-limiter).

flask-limiter's extension object is module-global: every app bound to it kept the
storage and key prefix of the first one, and it logged each refused key, e-mail
included. Here each app holds its own throttle, and keys carry no personal data:
the e-mail enters them as a keyed digest.

Two fixed-window limits guard `POST /auth/token`: per account *and* client address
(LOGIN_LIMIT_PER_ACCOUNT), so guessing one person's password from one place is
slow without locking the real owner out from elsewhere; and per client address
(LOGIN_LIMIT_PER_ADDRESS), so one place cannot spray many accounts.

A storage outage must not fail logins: the limits then count in this process's
memory (still enforced, per worker) while the cache's breaker is open (one Redis,
one breaker: lms_app.caching.safe), and Redis is tried again after it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from functools import cache

from flask import Flask, current_app, request
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from lms_app.caching.keys import tenant_scope_key
from lms_app.caching.safe import breaker
from lms_app.errors import abort
from lms_app.tenancy.context import require_tenant


@cache
def _limit(spec: str) -> RateLimitItem:
    return parse(spec)


class Throttle:
    def __init__(self, storage_uri: str | None, key_prefix: str, timeout_s: float):
        self._memory = FixedWindowRateLimiter(MemoryStorage())
        self._shared = None
        if storage_uri:
            storage = storage_from_string(
                storage_uri,
                key_prefix=key_prefix,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
            )
            self._shared = FixedWindowRateLimiter(storage)

    def hit(self, spec: str, *key: str) -> int | None:
        """Count one attempt against `spec` ("10/minute") for `key`; the seconds to wait
        when that goes over the limit, else None."""
        item = _limit(spec)
        guard = breaker()
        if self._shared is not None and not guard.is_open:
            try:
                return self._count(self._shared, item, key)
            except Exception as exc:  # the storage, not the request, failed
                guard.trip("throttle", exc)
        return self._count(self._memory, item, key)

    @staticmethod
    def _count(limiter: FixedWindowRateLimiter, item: RateLimitItem, key: tuple[str, ...]):
        if limiter.hit(item, *key):
            return None
        reset_at, _ = limiter.get_window_stats(item, *key)
        return max(1, math.ceil(reset_at - time.time()))


def init_app(app: Flask) -> None:
    settings = app.config["LMS_SETTINGS"]
    app.extensions["lms_throttle"] = Throttle(
        settings.redis_url,
        app.config["LOGIN_THROTTLE_KEY_PREFIX"],
        timeout_s=settings.cache_timeout_ms / 1000,
    )


def _digest(value: str) -> str:
    """A key part that names an e-mail without holding it (keyed: not guessable)."""
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()[:32]


def throttle_login(email: str) -> None:
    """429 with Retry-After when this login attempt goes over a limit."""
    throttle: Throttle = current_app.extensions["lms_throttle"]
    config = current_app.config
    address = request.remote_addr or "unknown"
    account = (tenant_scope_key(require_tenant()), _digest(email.strip().lower()), address)
    waits = [
        throttle.hit(config["LOGIN_LIMIT_PER_ACCOUNT"], "login-account", *account),
        throttle.hit(config["LOGIN_LIMIT_PER_ADDRESS"], "login-address", address),
    ]
    refused = [wait for wait in waits if wait is not None]
    if refused:
        abort(
            429,
            "too many login attempts; try again later",
            headers={"Retry-After": str(max(refused))},
        )
