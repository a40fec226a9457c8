"""How full each pool is: gauges for /metrics, and a warning before requests queue.

Every engine's pool is a QueuePool that times its checkouts (`_do_get`, the
method SQLAlchemy's pool implementations provide). Per bind (primary, read,
each replica) it publishes connections checked out, idle and in overflow, the
requests waiting for one, and a histogram of checkout time. When utilisation
(checked out / (size + overflow)) passes POOL_WARN_UTILISATION or more than
POOL_WARN_WAITING requests wait, it logs a warning with the numbers, at most once
a minute per pool and process: a pool near exhaustion is a capacity problem to
fix before its timeout turns into 503s (lms_app.errors answers those with
Retry-After, never a 500 or a hang).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy.pool import QueuePool

from lms_app.observability import metrics

log = logging.getLogger(__name__)

WARN_EVERY_S = 60.0
# Gauges are samples: written at most this often per pool (each write is a locked
# write to the metrics file in multiprocess mode, too dear for every checkout).
PUBLISH_EVERY_S = 0.5


class WatchedQueuePool(QueuePool):
    """QueuePool that counts and times its checkouts."""

    _lms_bind = "unnamed"
    _lms_warn_utilisation = 0.8
    _lms_warn_waiting = 10

    def watch(self, bind: str, warn_utilisation: float, warn_waiting: int) -> None:
        self._lms_bind = bind
        self._lms_warn_utilisation = warn_utilisation
        self._lms_warn_waiting = warn_waiting
        self._lms_waiting = 0
        self._lms_capacity = self.size() + max(0, self._max_overflow)
        self._lms_lock = threading.Lock()
        self._lms_warned_at = float("-inf")
        self._lms_published_at = float("-inf")
        self._lms_gauges = {
            name: metrics.DB_POOL.labels(bind, name) for name in ("idle", "overflow", "waiting")
        }

    def _do_get(self) -> Any:
        if not metrics.ENABLED or not hasattr(self, "_lms_lock"):
            return super()._do_get()
        with self._lms_lock:
            self._lms_waiting += 1
        started = time.perf_counter()
        try:
            return super()._do_get()
        finally:
            with self._lms_lock:
                self._lms_waiting -= 1
            metrics.observe(
                metrics.DB_POOL_CHECKOUT_SECONDS, time.perf_counter() - started, self._lms_bind
            )
            self._watch_pressure()

    def _do_return_conn(self, record: Any) -> None:
        super()._do_return_conn(record)
        if metrics.ENABLED and hasattr(self, "_lms_lock"):
            self._publish()

    def _watch_pressure(self) -> None:
        """At every checkout, when the pool is fullest: two comparisons, the numbers
        worked out only past a threshold."""
        capacity = self._lms_capacity
        in_use = self.checkedout()
        waiting = self._lms_waiting
        if waiting:
            self._publish(force=True)
        utilisation = in_use / capacity if capacity else 1.0
        if utilisation <= self._lms_warn_utilisation and waiting <= self._lms_warn_waiting:
            return
        now = time.monotonic()
        if now - self._lms_warned_at < WARN_EVERY_S:
            return
        self._lms_warned_at = now
        log.warning(
            "pool_pressure bind=%s in_use=%d capacity=%d utilisation=%.2f waiting=%d",
            self._lms_bind,
            in_use,
            capacity,
            utilisation,
            waiting,
        )

    def _publish(self, force: bool = False) -> None:
        """The gauges, sampled at checkin (the state between requests: sampled at
        checkout, a pool serving one request at a time never showed a connection
        idle) at most every PUBLISH_EVERY_S, and at once while requests wait."""
        now = time.monotonic()
        if not force and now - self._lms_published_at < PUBLISH_EVERY_S:
            return
        self._lms_published_at = now
        gauges = self._lms_gauges
        gauges["idle"].set(self.checkedin())
        gauges["overflow"].set(max(0, self.overflow()))
        gauges["waiting"].set(self._lms_waiting)
