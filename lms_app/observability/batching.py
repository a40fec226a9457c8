"""Metric observations held in the process and added to the shared files once a second.

In multiprocess mode every `inc()` or `observe()` of prometheus_client takes a lock,
asks the kernel for the process id (to notice a fork) and writes the metrics file:
about 1 µs each, and a request makes ten of them (its counter and histogram, each
statement's histogram, the pool's gauge and checkout time). py-spy put that at
4-5 % of a worker's CPU on course progress, more than the whole 3 % budget for
monitoring (bench/monitoring_bench.py). Here an observation is a dict update under
an uncontended lock; `flush()` applies the sums, a bucket count at a time, once a
second from a thread of each worker (started after the fork, `start_flusher`),
before every scrape this process answers, and when a worker exits. A scrape can
so miss at most the last second of another worker's traffic.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 1.0


class Batch:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        # (metric id, labels) -> [metric, labels, amount]
        self._amounts: dict[tuple, list[Any]] = {}
        # (metric id, labels) -> [metric, labels, sum, per-bucket counts]
        self._observations: dict[tuple, list[Any]] = {}
        self._children: dict[tuple, Any] = {}
        self._flusher: threading.Thread | None = None

    def inc(self, metric: Any, labels: tuple[str, ...], amount: float = 1.0) -> None:
        """Counter or gauge: add `amount` (a gauge takes negative amounts)."""
        key = (id(metric), labels)
        with self._lock:
            entry = self._amounts.get(key)
            if entry is None:
                self._amounts[key] = [metric, labels, amount]
            else:
                entry[2] += amount

    def observe(self, metric: Any, labels: tuple[str, ...], value: float) -> None:
        """Histogram: one observation, counted in its bucket as prometheus_client would
        (the first upper bound at or above the value)."""
        key = (id(metric), labels)
        upper = metric._upper_bounds
        with self._lock:
            entry = self._observations.get(key)
            if entry is None:
                entry = self._observations[key] = [metric, labels, 0.0, [0] * len(upper)]
            entry[2] += value
            entry[3][bisect.bisect_left(upper, value)] += 1

    def child(self, metric: Any, labels: tuple[str, ...]) -> Any:
        """The labelled child, kept: `labels()` builds a key and locks on every call."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels) if labels else metric
        return found

    def flush(self) -> None:
        # One flush at a time, swap and writes together: the final flush at worker
        # exit waits for the flusher thread's, instead of exiting in its middle.
        with self._flushing:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            amounts, self._amounts = self._amounts, {}
            observations, self._observations = self._observations, {}
        for metric, labels, amount in amounts.values():
            self.child(metric, labels).inc(amount)
        for metric, labels, total, counts in observations.values():
            child = self.child(metric, labels)
            # The histogram's own parts: one write per touched bucket, not per value.
            child._sum.inc(total)
            for bucket, count in zip(child._buckets, counts, strict=True):
                if count:
                    bucket.inc(count)

    def start_flusher(self) -> None:
        """Flush once a second from a daemon thread of this process (call after fork)."""
        if self._flusher is not None and self._flusher.is_alive():
            return
        self._flusher = threading.Thread(target=self._run, name="metrics-flush", daemon=True)
        self._flusher.start()

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_EVERY_S)
            try:
                self.flush()
            except Exception:  # a metrics file problem must not stop the next flush
                log.exception("metrics_flush_failed")


BATCH = Batch()
