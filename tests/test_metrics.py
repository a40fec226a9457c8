"""GET /metrics: Prometheus text with every family the operators alert on."""

from __future__ import annotations

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lms_app.caching.stats import WATCH_MIN_LOOKUPS, CacheStats
from lms_app.observability.metrics import fingerprint
from tests.conftest import assert_error
from tests.test_catalog_api import API, make_school, new_course

FAMILIES = {
    "lms_http_requests",
    "lms_http_request_duration_seconds",
    "lms_db_statement_duration_seconds",
    "lms_db_pool_checked_out",
    "lms_cache_lookups",
    "lms_cache_hit_ratio",
    "lms_db_pool_connections",
    "lms_db_pool_checkout_seconds",
}


@pytest.fixture(scope="module")
def school(app, make_tenant):
    return make_school(app, make_tenant())


def scrape(client, headers=None) -> dict:
    r = client.get("/metrics", headers=headers or {})
    assert r.status_code == 200 and r.mimetype == "text/plain"
    return {f.name: f for f in text_string_to_metric_families(r.get_data(as_text=True))}


def samples(family, **labels) -> list:
    return [s for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items())]


def test_metrics_carry_each_family_after_traffic(client, school):
    course = new_course(client, school.headers["instructor"], is_published=True)
    for _ in range(2):
        assert client.get(f"{API}/courses/{course['id']}", headers=school.headers["student"])
    client.get("/healthz")
    families = scrape(client)
    assert families.keys() >= FAMILIES, sorted(families)
    route = "/api/v1/courses/<id:course_id>"
    answered = samples(families["lms_http_requests"], route=route, method="GET", status="200")
    assert answered and answered[0].value >= 2
    assert samples(families["lms_http_requests"], route="/healthz", status="200")
    assert samples(families["lms_http_request_duration_seconds"], route=route)
    statements = families["lms_db_statement_duration_seconds"].samples
    assert any(s.name.endswith("_count") and s.value > 0 for s in statements)
    assert {s.labels["bind"] for s in families["lms_db_pool_checked_out"].samples} >= {
        "primary",
        "read",
    }
    lookups = samples(families["lms_cache_lookups"], namespace="course")
    assert lookups
    counted = {s.labels["outcome"]: s.value for s in lookups if s.name.endswith("_total")}
    hits = counted.get("hit", 0) + counted.get("local_hit", 0)
    (ratio,) = samples(families["lms_cache_hit_ratio"], namespace="course")
    assert ratio.value == pytest.approx(hits / (hits + counted.get("miss", 0)))


def test_a_low_cache_hit_rate_is_warned_once_per_check(caplog):
    stats = CacheStats(warn_hit_rate=0.8, watch_every_s=0)
    with caplog.at_level(logging.WARNING, logger="lms_app.caching.stats"):
        for _ in range(WATCH_MIN_LOOKUPS - 1):
            stats.hit("catalog", local=False)  # a healthy namespace next to it
            stats.miss("course")
        assert not caplog.records  # too few lookups since the last check to judge
        stats.miss("course")
        for _ in range(WATCH_MIN_LOOKUPS - 1):
            stats.miss("course")  # judged again only after as many new lookups
    (warning,) = caplog.records
    assert warning.getMessage() == (
        f"cache_hit_rate_low namespace=course hit_rate=0.00 lookups={WATCH_MIN_LOOKUPS}"
        " threshold=0.80"
    )


def test_no_label_carries_a_tenant_a_user_or_a_request_value(client, school):
    client.get(f"{API}/courses/987654321", headers=school.headers["student"])
    text = client.get("/metrics").get_data(as_text=True)
    assert "987654321" not in text
    assert school.tenant.slug not in text and school.tenant.schema_name not in text


def test_statement_fingerprints_are_the_same_in_every_school():
    one = fingerprint("SELECT t1_alpha.users.id FROM t1_alpha.users WHERE id = 5")
    two = fingerprint("SELECT t22_beta.users.id FROM t22_beta.users WHERE id = 77")
    other = fingerprint("SELECT t1_alpha.courses.id FROM t1_alpha.courses")
    assert one == two != other and one.startswith("select_")


def test_a_metrics_token_when_set(own_app):
    from dataclasses import replace

    settings = replace(own_app.config["LMS_SETTINGS"], metrics_token="m" * 40)
    own_app.config["LMS_SETTINGS"] = settings
    client = own_app.test_client()
    assert_error(client.get("/metrics"), 401)
    assert_error(client.get("/metrics", headers={"Authorization": "Bearer wrong"}), 401)
    assert scrape(client, {"Authorization": f"Bearer {'m' * 40}"})
