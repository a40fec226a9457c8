"""Per-process copies of shared cache entries.

They save the shared-cache round trip on the hottest reads (auth state, catalog
pages, course details). Every key carries its namespace's generation, which this
process re-reads from PostgreSQL at least every CACHE_LOCAL_SECONDS
(lms_app.caching.generations): a copy stops being asked for as soon as a write moves
its generation, so a copy can live as long as the shared entry's TTL. Nothing
per-user that changes with learning (progress, enrolments) is ever kept here.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app

T = TypeVar("T")

# Entries kept per process (least recently used first out): hot course details,
# pages, lessons and users' auth states. Values of retired generations stay until
# pushed out, so count on the cap being reached: the largest values (lessons, at most
# learning.service.LOCAL_LESSON_MAX_CHARS) bound it to about 10,000 x 8 KB, 80 MB of
# ASCII text per worker; most entries are far smaller.
DEFAULT_MAX_ENTRIES = 10_000


class LocalCopies:
    """A bounded LRU of values with a per-entry expiry (thread-safe)."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            with self._lock:
                self._entries.pop(key, None)
            return None
        with contextlib.suppress(KeyError):  # evicted by another thread meanwhile
            self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: str, value: Any, *, ttl_s: float, read_at: float) -> None:
        """Keep `value` until `ttl_s` after `read_at` (when it was read, not now)."""
        if ttl_s <= 0:
            return
        with self._lock:
            self._entries[key] = (read_at + ttl_s, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get_or_read(
        self,
        key: str,
        read: Callable[[], T | None],
        *,
        ttl_s: float,
        keep: Callable[[T], bool] | None = None,
    ) -> tuple[T | None, bool]:
        """(value, found here): this process's copy, else `read()`, kept unless None
        or refused by `keep`."""
        value = self.get(key)
        if value is not None:
            return value, True
        read_at = time.monotonic()
        value = read()
        if value is not None and (keep is None or keep(value)):
            self.put(key, value, ttl_s=ttl_s, read_at=read_at)
        return value, False

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def init_app(app: Flask) -> None:
    app.extensions["lms_cache_local"] = LocalCopies()


def shared_copies() -> LocalCopies:
    """This process's copies of namespace values read through `cached_read`."""
    return current_app.extensions["lms_cache_local"]
