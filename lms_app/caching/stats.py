"""Cache counters per namespace, in this process (what /platform/cache-stats shows
and the metrics work will publish).

`hits` counts answers from a cache (this process's copy or the shared cache; the
first are also in `local_hits`), `misses` values loaded from the database and
`errors` reads that went to the database because the shared cache failed or its
breaker was open. Plain integer increments: exact under sync workers, at worst a
lost count under threads, never a lock on the hot path.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from flask import Flask, current_app

from lms_app.observability import metrics
from lms_app.observability.metrics import CACHE_LOOKUPS

FIELDS = ("hits", "local_hits", "misses", "errors")


class CacheStats:
    def __init__(self) -> None:
        self._counts: defaultdict[str, list[int]] = defaultdict(lambda: [0] * len(FIELDS))

    def hit(self, namespace: str, *, local: bool) -> None:
        counts = self._counts[namespace]
        counts[0] += 1
        if local:
            counts[1] += 1
        if metrics.ENABLED:
            metrics.child(CACHE_LOOKUPS, namespace, "local_hit" if local else "hit").inc()

    def miss(self, namespace: str) -> None:
        self._counts[namespace][2] += 1
        if metrics.ENABLED:
            metrics.child(CACHE_LOOKUPS, namespace, "miss").inc()

    def error(self, namespace: str) -> None:
        self._counts[namespace][3] += 1
        if metrics.ENABLED:
            metrics.child(CACHE_LOOKUPS, namespace, "error").inc()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for namespace, counts in sorted(self._counts.items()):
            figures: dict[str, Any] = dict(zip(FIELDS, counts, strict=True))
            looked_up = figures["hits"] + figures["misses"]
            figures["hit_rate"] = round(figures["hits"] / looked_up, 4) if looked_up else None
            out[namespace] = figures
        return out


def init_app(app: Flask) -> None:
    app.extensions["lms_cache_stats"] = CacheStats()


def cache_stats() -> CacheStats:
    return current_app.extensions["lms_cache_stats"]
