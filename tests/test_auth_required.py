"""Every tenant route but the public ones refuses a request without a token (401).

Walks the URL map, so a route added later without `@auth_required` (or with the
decorator in a position where it never runs) fails here. The body is invalid on
purpose: authentication must come before validation.
"""

from __future__ import annotations

import re

import pytest
from flask import Flask

from tests.conftest import ADMIN_PASSWORD, login, tenant_headers

PUBLIC = {("POST", "/api/v1/auth/token"), ("GET", "/api/v1/tenant")}


def tenant_routes(app: Flask) -> list[tuple[str, str]]:
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<[^>]+>", "1", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if (method, rule.rule) not in PUBLIC:
                found.append((method, path))
    return found


def test_the_walk_finds_every_tenant_route(app: Flask) -> None:
    routes = tenant_routes(app)
    assert ("GET", "/api/v1/courses") in routes
    assert ("PUT", "/api/v1/lessons/1/progress") in routes
    assert ("POST", "/api/v1/courses/1/enrollments") in routes
    assert len(routes) >= 28  # API.md's tenant routes, less the public two


def test_no_token_is_401_everywhere(app: Flask, client, make_tenant) -> None:
    tenant = make_tenant()
    failures = []
    for method, path in tenant_routes(app):
        r = client.open(path, method=method, json={"bogus": True}, headers=tenant_headers(tenant))
        if r.status_code != 401:
            failures.append((method, path, r.status_code))
    assert failures == []


@pytest.mark.parametrize("token", ["garbage", "a.b.c", ""])
def test_bad_token_is_401_everywhere(app: Flask, client, make_tenant, token: str) -> None:
    tenant = make_tenant()
    headers = {**tenant_headers(tenant), "Authorization": f"Bearer {token}"}
    failures = []
    for method, path in tenant_routes(app):
        r = client.open(path, method=method, json={"bogus": True}, headers=headers)
        if r.status_code != 401:
            failures.append((method, path, r.status_code))
    assert failures == []


def test_other_tenants_token_is_401_everywhere(app: Flask, client, make_tenant) -> None:
    """A valid admin token of school A opens nothing in school B, whatever the route."""
    school_a, school_b = make_tenant(), make_tenant()
    token_a = login(client, school_a, f"admin@{school_a.slug}.test", ADMIN_PASSWORD)
    headers = {**tenant_headers(school_b), "Authorization": token_a["Authorization"]}
    failures = []
    for method, path in tenant_routes(app):
        r = client.open(path, method=method, json={"bogus": True}, headers=headers)
        if r.status_code != 401:
            failures.append((method, path, r.status_code))
    assert failures == []
