"""Batched metric observations (lms_app.observability.batching) add up to what
prometheus_client records when observed one by one, and reach the metric without a
scrape once the flusher runs."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lms_app.observability.batching import FLUSH_EVERY_S, Batch

BUCKETS = (0.001, 0.01, 0.1, 1.0)
VALUES = [0.0, 0.0005, 0.001, 0.001, 0.002, 0.05, 0.1, 0.7, 1.0, 3.0, 42.0]


def families() -> tuple[CollectorRegistry, Counter, Gauge, Histogram]:
    registry = CollectorRegistry()
    counter = Counter("c", "c", ["kind"], registry=registry)
    gauge = Gauge("g", "g", ["bind"], registry=registry)
    histogram = Histogram("h", "h", ["route"], buckets=BUCKETS, registry=registry)
    return registry, counter, gauge, histogram


def samples(registry: CollectorRegistry) -> dict[tuple, float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_a_flushed_batch_equals_direct_observations() -> None:
    direct, counter, gauge, histogram = families()
    for value in VALUES:
        histogram.labels("/a").observe(value)
        counter.labels("hit").inc()
    counter.labels("miss").inc(3)
    gauge.labels("primary").inc()
    gauge.labels("primary").inc()
    gauge.labels("primary").dec()

    batched, counter, gauge, histogram = families()
    batch = Batch()
    for value in VALUES:
        batch.observe(histogram, ("/a",), value)
        batch.inc(counter, ("hit",))
    batch.inc(counter, ("miss",), 3)
    batch.inc(gauge, ("primary",))
    batch.inc(gauge, ("primary",))
    batch.inc(gauge, ("primary",), -1)
    assert samples(batched).get(("c_total", (("kind", "hit"),)), 0) == 0  # held until flushed
    batch.flush()

    assert samples(batched) == samples(direct)
    assert samples(batched)[("h_bucket", (("le", "0.001"), ("route", "/a")))] == 4
    assert samples(batched)[("g", (("bind", "primary"),))] == 1
    batch.flush()  # nothing pending: nothing counted twice
    assert samples(batched) == samples(direct)


def test_the_flusher_publishes_without_a_scrape() -> None:
    registry, counter, _, _ = families()
    batch = Batch()
    batch.start_flusher()
    batch.start_flusher()  # one thread per process, however often it is asked
    batch.inc(counter, ("hit",), 5)
    deadline = time.monotonic() + 5 * FLUSH_EVERY_S
    while samples(registry).get(("c_total", (("kind", "hit"),))) != 5:
        assert time.monotonic() < deadline, "the flusher did not flush"
        time.sleep(0.05)
