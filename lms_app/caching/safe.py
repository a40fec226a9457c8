"""Cache calls that never fail a request: an outage degrades to the database."""

from __future__ import annotations

import logging
from typing import Any

from lms_app.extensions import cache

log = logging.getLogger(__name__)


def cache_get(key: str) -> Any | None:
    try:
        return cache.get(key)
    except Exception as exc:
        log.warning("cache_error op=get error=%s", type(exc).__name__)
        return None


def cache_set(key: str, value: Any, ttl_s: int) -> None:
    try:
        cache.set(key, value, timeout=ttl_s)
    except Exception as exc:
        log.warning("cache_error op=set error=%s", type(exc).__name__)


def cache_delete(key: str) -> None:
    try:
        cache.delete(key)
    except Exception as exc:
        log.warning("cache_error op=delete error=%s", type(exc).__name__)
