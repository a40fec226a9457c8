"""Per-process copies of shared cache entries, kept for a couple of seconds.

They save the shared-cache round trip on the hottest reads (auth state, catalog
pages). The price is bounded staleness across processes: a change made by another
process reaches this one within `ttl_s`; the process making the change forgets its
own copies at once. Nothing per-user that changes with learning (progress,
enrolments) is ever kept here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app

T = TypeVar("T")


class LocalCopies:
    """Entries grouped (one group per generation counter or per kind) so a whole
    group can be forgotten in O(1).

    A reader takes the group's `epoch()` and the time *before* it reads the shared
    cache or the database, and hands both to `put()`: a value read before a
    `forget()` of its group (another thread's write, under threaded workers) is then
    refused instead of outliving the write, and a copy never lives longer than
    `ttl_s` counted from when it was read.
    """

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._groups: dict[str, dict[str, tuple[float, Any]]] = {}
        self._epochs: dict[str, int] = {}
        # Per-user groups (auth state) would make `_epochs` grow with every user ever
        # changed; past `max_entries` groups it starts over under a new era, which
        # refuses every value read before (as a forget of every group would).
        self._era = 0
        self._size = 0

    def epoch(self, group: str) -> tuple[int, int]:
        return self._era, self._epochs.get(group, 0)

    def get(self, group: str, key: str) -> Any | None:
        entry = self._groups.get(group, {}).get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(
        self, group: str, key: str, value: Any, *, epoch: tuple[int, int], read_at: float
    ) -> None:
        if self.ttl_s <= 0 or self.epoch(group) != epoch:
            return
        if self._size >= self.max_entries:
            # Crude but bounded; entries live seconds anyway.
            self._groups.clear()
            self._size = 0
        entries = self._groups.setdefault(group, {})
        if key not in entries:
            self._size += 1
        entries[key] = (read_at + self.ttl_s, value)

    def get_or_read(
        self,
        group: str,
        key: str,
        read: Callable[[], T | None],
        keep: Callable[[T], bool] | None = None,
    ) -> T | None:
        """This process's copy, else `read()`: kept unless None, refused by `keep`, or
        forgotten meanwhile."""
        value = self.get(group, key)
        if value is not None:
            return value
        epoch, read_at = self.epoch(group), time.monotonic()
        value = read()
        if value is not None and (keep is None or keep(value)):
            self.put(group, key, value, epoch=epoch, read_at=read_at)
        return value

    def forget(self, group: str, key: str | None = None) -> None:
        """Forget one entry, or the whole group when `key` is None; either way, values
        of the group read before this call are no longer accepted by `put()`."""
        if len(self._epochs) >= self.max_entries:
            self._era += 1
            self._epochs.clear()
            self._groups.clear()
            self._size = 0
        self._epochs[group] = self._epochs.get(group, 0) + 1
        if key is None:
            self._size -= len(self._groups.pop(group, {}))
        elif self._groups.get(group, {}).pop(key, None) is not None:
            self._size -= 1


def init_app(app: Flask, ttl_s: float) -> None:
    app.extensions["lms_cache_local"] = LocalCopies(ttl_s, max_entries=2_000)


def shared_copies() -> LocalCopies:
    """This process's copies of namespace values read through `cached_read`."""
    return current_app.extensions["lms_cache_local"]
