"""Prometheus metrics, added up across gunicorn's workers.

With PROMETHEUS_MULTIPROC_DIR set (config/gunicorn.conf.py sets it before anything
imports prometheus_client), every worker writes its values to files there and
`GET /metrics` reads them all; outside gunicorn (tests, `flask run`) the process's
own registry is served.

Labels are bounded by construction: route templates (never paths), methods, status
codes, bind names, cache namespaces, replica names from settings, and statement
fingerprints: the SQL with tenant schemas and literals taken out, hashed, with at
most MAX_FINGERPRINTS kept per process (the rest count as "other"). No label ever
carries a tenant, a user, or a value from a request.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from lms_app.errors import abort
from lms_app.observability.batching import BATCH

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "lms_http_requests", "Requests answered, by route template, method and status.",
    ["route", "method", "status"],
)  # fmt: skip
HTTP_DURATION = Histogram(
    "lms_http_request_duration_seconds", "Time from the first hook to the response.",
    ["route", "method"], buckets=_LATENCY,
)  # fmt: skip
DB_STATEMENT_DURATION = Histogram(
    "lms_db_statement_duration_seconds",
    "Statement time on the driver, by fingerprint (the SQL with schemas and literals"
    " taken out, hashed).",
    ["fingerprint"], buckets=_LATENCY,
)  # fmt: skip
DB_POOL_CHECKED_OUT = Gauge(
    "lms_db_pool_checked_out", "Connections in use, by bind.", ["bind"],
    multiprocess_mode="livesum",
)  # fmt: skip
DB_POOL = Gauge(
    "lms_db_pool_connections", "Pooled connections by bind and state (idle, overflow, waiting).",
    ["bind", "state"], multiprocess_mode="livesum",
)  # fmt: skip
DB_POOL_CHECKOUT_SECONDS = Histogram(
    "lms_db_pool_checkout_seconds", "Time to get a pooled connection (waiting included).",
    ["bind"], buckets=_LATENCY,
)  # fmt: skip
CACHE_LOOKUPS = Counter(
    "lms_cache_lookups", "Cache lookups by namespace and outcome (hit, local_hit, miss, error).",
    ["namespace", "outcome"],
)  # fmt: skip
REPLICA_ROUTING = Counter(
    "lms_replica_routing", "Read-only requests by where their reads went.", ["decision"],
)  # fmt: skip
REPLICA_LAG = Gauge(
    "lms_replica_lag_seconds", "Each replica's lag behind the primary, as last checked.",
    ["replica"], multiprocess_mode="max",
)  # fmt: skip

# METRICS=false (a process serves one app): nothing is recorded, for measuring what
# monitoring costs (bench/monitoring_bench.py) or for a deployment without Prometheus.
ENABLED = True


def set_enabled(enabled: bool) -> None:
    global ENABLED
    ENABLED = enabled


MAX_FINGERPRINTS = 500
_TEXTS = 8192  # statement texts remembered (one per statement and tenant schema)
_SCHEMA = re.compile(r'"?\bt\d+_[a-z0-9_]+\b"?')
# Literals, and the driver's placeholders (their names are numbered per statement).
_LITERAL = re.compile(r"'(?:[^']|'')*'|%\(\w+\)s|\$\d+|\b\d+\b")
# Lists whose length varies with the input: IN (?, ?, ...) and VALUES (...), (...).
_LIST = re.compile(r"\((?:\?, )+\?\)")
_ROWS = re.compile(r"\(\?\)(?:, \(\?\))+")
_by_text: dict[str, tuple[str, str]] = {}
_known: set[str] = set()


def describe(statement: str) -> tuple[str, str]:
    """(fingerprint, shape): a short stable name for a statement's shape, the same in
    every tenant, and the shape itself (SQL with schemas and literals taken out)."""
    found = _by_text.get(statement)
    if found is None:
        shape = _LITERAL.sub("?", _SCHEMA.sub("tenant", " ".join(statement.split())))
        shape = _ROWS.sub("(?)", _LIST.sub("(?)", shape))
        digest = hashlib.blake2b(shape.encode(), digest_size=6).hexdigest()
        name = f"{shape.split(' ', 1)[0].lower()}_{digest}"
        if name not in _known:
            if len(_known) >= MAX_FINGERPRINTS:
                name, shape = "other", "(fingerprints past MAX_FINGERPRINTS)"
            else:
                _known.add(name)
        if len(_by_text) >= _TEXTS:
            _by_text.clear()
        found = _by_text[statement] = (name, shape)
    return found


def fingerprint(statement: str) -> str:
    return describe(statement)[0]


def inc(metric: Any, *labels: str, amount: float = 1.0) -> None:
    """Count on a counter or move a gauge (batched: lms_app.observability.batching)."""
    if ENABLED:
        BATCH.inc(metric, labels, amount)


def observe(metric: Any, value: float, *labels: str) -> None:
    """One histogram observation (batched: lms_app.observability.batching)."""
    if ENABLED:
        BATCH.observe(metric, labels, value)


def observe_request(route: str | None, method: str, status: int, seconds: float) -> None:
    if not ENABLED:
        return
    route = route or "unmatched"
    BATCH.inc(HTTP_REQUESTS, (route, method, str(status)))
    BATCH.observe(HTTP_DURATION, (route, method), seconds)


blp = Blueprint("metrics", __name__)


@blp.get("/metrics")
def metrics() -> Response:
    token = current_app.config["LMS_SETTINGS"].metrics_token
    if token is not None:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            abort(401, "a valid metrics token is required")
    BATCH.flush()  # this process's last second; other workers flush on their own
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(_WithHitRatio(registry)), mimetype=CONTENT_TYPE_LATEST)


class _WithHitRatio:
    """The collected families plus each cache namespace's hit ratio, worked out from
    the lookup counters of every worker (a per-worker ratio gauge could not be added
    up across workers)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        hits: dict[str, float] = {}
        lookups: dict[str, float] = {}
        for family in self.source.collect():
            yield family
            if family.name != "lms_cache_lookups":
                continue
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                namespace, outcome = sample.labels["namespace"], sample.labels["outcome"]
                if outcome in ("hit", "local_hit"):
                    hits[namespace] = hits.get(namespace, 0.0) + sample.value
                if outcome in ("hit", "local_hit", "miss"):
                    lookups[namespace] = lookups.get(namespace, 0.0) + sample.value
        ratio = GaugeMetricFamily(
            "lms_cache_hit_ratio",
            "Cache hits over hits and misses per namespace, all workers, since the start.",
            labels=["namespace"],
        )
        for namespace, looked_up in sorted(lookups.items()):
            if looked_up:
                ratio.add_metric([namespace], hits.get(namespace, 0.0) / looked_up)
        yield ratio
