"""Cache counters per namespace, in this process (what /platform/cache-stats shows
and the metrics work will publish).

`hits` counts answers from a cache (this process's copy or the shared cache; the
first are also in `local_hits`), `misses` values loaded from the database and
`errors` reads that went to the database because the shared cache failed or its
breaker was open. Plain integer increments: exact under sync workers, at worst a
lost count under threads, never a lock on the hot path.

The seed watches the hit rate: at most once a minute (checked on a lookup, so an
idle process does nothing) each namespace with enough lookups since it was last
judged and a hit rate over them under CACHE_WARN_HIT_RATE logs a
`cache_hit_rate_low` warning with its numbers. A low rate means invalidation is
too broad or a TTL too short, and the database is carrying reads the cache was
meant to take.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from flask import Flask, current_app

from lms_app.observability import metrics
from lms_app.observability.metrics import CACHE_LOOKUPS

FIELDS = ("hits", "local_hits", "misses", "errors")
WATCH_EVERY_S = 60.0
# Fewer lookups than this in a minute say nothing about a namespace's hit rate.
WATCH_MIN_LOOKUPS = 100

log = logging.getLogger(__name__)


class CacheStats:
    def __init__(self, warn_hit_rate: float = 0.8, watch_every_s: float = WATCH_EVERY_S) -> None:
        self._counts: defaultdict[str, list[int]] = defaultdict(lambda: [0] * len(FIELDS))
        self._warn_hit_rate = warn_hit_rate
        self._watch_every_s = watch_every_s
        self._watch_at = time.monotonic() + watch_every_s
        # namespace -> (hits, lookups) at the last check
        self._watched: dict[str, tuple[int, int]] = {}

    def hit(self, namespace: str, *, local: bool) -> None:
        counts = self._counts[namespace]
        counts[0] += 1
        if local:
            counts[1] += 1
        metrics.inc(CACHE_LOOKUPS, namespace, "local_hit" if local else "hit")
        if time.monotonic() >= self._watch_at:
            self._watch()

    def miss(self, namespace: str) -> None:
        self._counts[namespace][2] += 1
        metrics.inc(CACHE_LOOKUPS, namespace, "miss")
        if time.monotonic() >= self._watch_at:
            self._watch()

    def error(self, namespace: str) -> None:
        self._counts[namespace][3] += 1
        metrics.inc(CACHE_LOOKUPS, namespace, "error")

    def _watch(self) -> None:
        self._watch_at = time.monotonic() + self._watch_every_s
        for namespace, counts in list(self._counts.items()):
            hits, lookups = counts[0], counts[0] + counts[2]
            hits_before, lookups_before = self._watched.get(namespace, (0, 0))
            window = lookups - lookups_before
            if window < WATCH_MIN_LOOKUPS:
                continue  # judged when it has enough lookups, over however long
            self._watched[namespace] = (hits, lookups)
            if (hits - hits_before) / window < self._warn_hit_rate:
                log.warning(
                    "cache_hit_rate_low namespace=%s hit_rate=%.2f lookups=%d threshold=%.2f",
                    namespace,
                    (hits - hits_before) / window,
                    window,
                    self._warn_hit_rate,
                )

    def snapshot(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for namespace, counts in sorted(self._counts.items()):
            figures: dict[str, Any] = dict(zip(FIELDS, counts, strict=True))
            looked_up = figures["hits"] + figures["misses"]
            figures["hit_rate"] = round(figures["hits"] / looked_up, 4) if looked_up else None
            out[namespace] = figures
        return out


def init_app(app: Flask) -> None:
    app.extensions["lms_cache_stats"] = CacheStats(app.config["LMS_SETTINGS"].cache_warn_hit_rate)


def cache_stats() -> CacheStats:
    return current_app.extensions["lms_cache_stats"]
