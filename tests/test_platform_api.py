"""Operators' API: /platform/tenants (API.md "Platform"; issue 4 items 2 and 6).

Tenants made here go through the API and are deleted through it when the test
ends (a fallback drops whatever a failing test left behind).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from lms_app.accounts.models import User
from lms_app.catalog.models import Course
from lms_app.extensions import db
from lms_app.learning.models import Enrollment
from lms_app.tenancy.context import TenantInfo, tenant_scope
from lms_app.tenancy.provisioning import TenantNotFound, drop_tenant
from lms_app.tenancy.registry import load_tenant
from tests.conftest import (
    ADMIN_PASSWORD,
    PLATFORM_HEADERS,
    PLATFORM_KEY,
    USER_PASSWORD,
    assert_error,
    login,
    tenant_headers,
    unique_slug,
)


def schema_exists(app: Flask, schema: str) -> bool:
    with app.app_context(), db.engine.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": schema}
            ).scalar_one()
        )


def tenant_info(app: Flask, slug: str) -> TenantInfo | None:
    with app.app_context():
        return load_tenant(db.engine, slug)


def create_body(slug: str, **overrides) -> dict:
    body = {
        "slug": slug,
        "name": f"School {slug}",
        "admin_email": f"Head@{slug}.Example",
        "admin_password": ADMIN_PASSWORD,
    }
    body.update(overrides)
    return body


@pytest.fixture
def onboard(app: Flask, client: FlaskClient) -> Iterator[Callable[..., dict]]:
    """POST /platform/tenants; every tenant made is DELETEd through the API afterwards."""
    made: list[str] = []

    def factory(slug: str | None = None, **overrides) -> dict:
        slug = slug or unique_slug("pl")
        r = client.post(
            "/platform/tenants", json=create_body(slug, **overrides), headers=PLATFORM_HEADERS
        )
        assert r.status_code == 201, r.get_json()
        made.append(slug)
        return r.get_json()

    yield factory
    for slug in made:
        r = client.delete(f"/platform/tenants/{slug}?confirm={slug}", headers=PLATFORM_HEADERS)
        if r.status_code != 204:  # the test deleted it itself (404), or something broke
            with app.app_context(), contextlib.suppress(TenantNotFound):
                drop_tenant(db.engine, slug)


# --- the platform key ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def existing(make_tenant) -> TenantInfo:
    return make_tenant()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong-key",
        f"Bearer {PLATFORM_KEY[:-1]}z",  # differs only in the last character
        f"Bearer {PLATFORM_KEY[:-1]}",  # a prefix of the key
        f"Bearer {PLATFORM_KEY}x",  # the key plus one character
        f"Bearer {PLATFORM_KEY.upper()}",
        f"Basic {PLATFORM_KEY}",
        PLATFORM_KEY,
    ],
)
def test_platform_key_required(client, existing, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    slug = unique_slug("nokey")
    calls = [
        ("GET", "/platform/tenants", None),
        ("POST", "/platform/tenants", create_body(slug)),
        ("GET", f"/platform/tenants/{existing.slug}", None),
        ("PATCH", f"/platform/tenants/{existing.slug}", {"status": "suspended"}),
        ("DELETE", f"/platform/tenants/{existing.slug}?confirm={existing.slug}", None),
        ("GET", f"/platform/tenants/{slug}", None),
    ]
    for method, path, body in calls:
        assert_error(client.open(path, method=method, json=body, headers=headers), 401)
    # Nothing happened: no tenant made, the existing one untouched.
    r = client.get(f"/platform/tenants/{existing.slug}", headers=PLATFORM_HEADERS)
    assert r.status_code == 200 and r.get_json()["status"] == "active"
    assert_error(client.get(f"/platform/tenants/{slug}", headers=PLATFORM_HEADERS), 404)


def test_tenant_admin_token_is_not_a_platform_key(client, make_tenant):
    school = make_tenant()
    headers = login(client, school, f"admin@{school.slug}.test", ADMIN_PASSWORD)
    assert_error(client.get("/platform/tenants", headers=headers), 401)


# --- POST /platform/tenants ----------------------------------------------------------------


def test_create_tenant_is_usable_at_once(app, client, onboard):
    slug = unique_slug("pl")
    body = onboard(slug, name="  Springfield Elementary ")
    assert body["slug"] == slug
    assert body["status"] == "active"
    assert body["created_at"]
    assert "admin_password" not in body
    assert body["name"].strip() == "Springfield Elementary"

    info = tenant_info(app, slug)
    assert info is not None and schema_exists(app, info.schema_name)
    # Log in as its admin straight away (the e-mail is stored lower-case).
    headers = login(client, info, f"head@{slug}.example", ADMIN_PASSWORD)
    me = client.get("/api/v1/me", headers=headers).get_json()
    assert me["role"] == "admin" and me["email"] == f"head@{slug}.example"
    assert client.get("/api/v1/users", headers=headers).status_code == 200
    r = client.get("/api/v1/tenant", headers=tenant_headers(info))
    assert r.status_code == 200 and r.get_json()["slug"] == slug


def test_create_tenant_with_admin_name(app, client, onboard):
    slug = unique_slug("pl")
    onboard(slug, admin_name="Principal Skinner")
    headers = login(client, tenant_info(app, slug), f"head@{slug}.example", ADMIN_PASSWORD)
    assert client.get("/api/v1/me", headers=headers).get_json()["name"] == "Principal Skinner"


def test_create_duplicate_tenant_is_409(app, client, onboard):
    slug = unique_slug("pl")
    onboard(slug)
    again = create_body(slug, name="Impostor", admin_email=f"other@{slug}.example")
    assert_error(client.post("/platform/tenants", json=again, headers=PLATFORM_HEADERS), 409)
    # The original is intact.
    r = client.get(f"/platform/tenants/{slug}", headers=PLATFORM_HEADERS)
    assert r.get_json()["name"] == f"School {slug}"
    assert r.get_json()["counts"]["users"] == 1
    login(client, tenant_info(app, slug), f"head@{slug}.example", ADMIN_PASSWORD)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"slug": "Upper_Case"}, "slug"),
        ({"slug": "1starts_with_digit"}, "slug"),
        ({"slug": "has-dash"}, "slug"),
        ({"slug": "a"}, "slug"),
        ({"slug": "x" * 42}, "slug"),
        ({"slug": "public"}, "slug"),
        ({"slug": "platform"}, "slug"),
        ({"slug": "bad\x00slug"}, "slug"),
        ({"slug": "drop; --"}, "slug"),
        ({"admin_password": "short-pw1"}, "admin_password"),
        ({"admin_email": "not-an-email"}, "admin_email"),
        ({"admin_email": "no@tld"}, "admin_email"),
        ({"name": ""}, "name"),
        ({"name": "n" * 121}, "name"),
        ({"status": "active"}, "status"),
    ],
)
def test_create_tenant_validation_is_422(app, client, overrides, field):
    slug = unique_slug("bad")
    body = {**create_body(slug), **overrides}
    errors = assert_error(
        client.post("/platform/tenants", json=body, headers=PLATFORM_HEADERS), 422
    )
    assert field in errors["errors"], errors
    # Nothing half-made: no registry row, no schema.
    if body["slug"] == slug:
        assert tenant_info(app, slug) is None
        assert not schema_exists(app, f"t_{slug}")


@pytest.mark.parametrize("missing", ["slug", "name", "admin_email", "admin_password"])
def test_create_tenant_missing_field_is_422(client, missing):
    body = create_body(unique_slug("bad"))
    del body[missing]
    errors = assert_error(
        client.post("/platform/tenants", json=body, headers=PLATFORM_HEADERS), 422
    )
    assert missing in errors["errors"]


# --- GET /platform/tenants ---------------------------------------------------------------


def test_list_tenants_pagination(client, onboard):
    prefix = unique_slug("ls")
    mine = sorted(onboard(f"{prefix}_{i}")["slug"] for i in range(5))

    seen: list[dict] = []
    cursor = None
    for _ in range(1000):
        url = "/platform/tenants?limit=2" + (f"&cursor={cursor}" if cursor else "")
        r = client.get(url, headers=PLATFORM_HEADERS)
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        assert len(body["items"]) <= 2
        seen.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    else:
        raise AssertionError("pagination does not end")
    slugs = [t["slug"] for t in seen]
    assert len(slugs) == len(set(slugs))
    assert slugs == sorted(slugs)
    assert set(mine) <= set(slugs)
    item = next(t for t in seen if t["slug"] == mine[0])
    assert set(item) >= {"slug", "name", "status", "created_at"}
    assert item["status"] == "active"

    # Starting after one of mine continues right after it.
    r = client.get(
        f"/platform/tenants?limit=3&cursor={mine[0]}", headers=PLATFORM_HEADERS
    ).get_json()
    assert [t["slug"] for t in r["items"]] == mine[1:4]

    # Default page size, and the limits.
    assert len(client.get("/platform/tenants", headers=PLATFORM_HEADERS).get_json()["items"]) <= 20
    for query in ("limit=0", "limit=101", "limit=x", f"cursor={'z' * 42}"):
        assert_error(client.get(f"/platform/tenants?{query}", headers=PLATFORM_HEADERS), 422)


def test_get_tenant_with_counts(app, client, onboard):
    slug = unique_slug("pl")
    onboard(slug, name="Counting School")
    r = client.get(f"/platform/tenants/{slug}", headers=PLATFORM_HEADERS)
    assert r.status_code == 200
    body = r.get_json()
    assert body["slug"] == slug and body["name"] == "Counting School"
    assert body["status"] == "active" and body["created_at"]
    assert body["counts"] == {"users": 1, "courses": 0, "enrollments": 0}

    info = tenant_info(app, slug)
    with app.app_context(), tenant_scope(info):
        students = [User(email=f"s{i}@count.test", name=f"S {i}", role="student") for i in range(4)]
        teacher = User(email="t@count.test", name="T", role="instructor")
        db.session.add_all([*students, teacher])
        db.session.flush()
        courses = [Course(title=f"C {i}", instructor_id=teacher.id) for i in range(3)]
        db.session.add_all(courses)
        db.session.flush()
        db.session.add_all(
            Enrollment(user_id=s.id, course_id=c.id, status="dropped" if i == 0 else "active")
            for i, s in enumerate(students)
            for c in courses[:2]
        )
        db.session.commit()

    r = client.get(f"/platform/tenants/{slug}", headers=PLATFORM_HEADERS)
    assert r.get_json()["counts"] == {"users": 6, "courses": 3, "enrollments": 8}


def test_unknown_tenant_is_404(client):
    slug = unique_slug("ghost")
    assert_error(client.get(f"/platform/tenants/{slug}", headers=PLATFORM_HEADERS), 404)
    assert_error(
        client.patch(f"/platform/tenants/{slug}", json={"name": "X"}, headers=PLATFORM_HEADERS), 404
    )
    assert_error(
        client.delete(f"/platform/tenants/{slug}?confirm={slug}", headers=PLATFORM_HEADERS), 404
    )


# --- PATCH /platform/tenants/<slug> --------------------------------------------------------


def test_suspend_and_reactivate(app, client, onboard):
    slug = unique_slug("pl")
    onboard(slug)
    info = tenant_info(app, slug)
    email = f"head@{slug}.example"
    headers = login(client, info, email, ADMIN_PASSWORD)

    r = client.patch(
        f"/platform/tenants/{slug}", json={"status": "suspended"}, headers=PLATFORM_HEADERS
    )
    assert r.status_code == 200 and r.get_json()["status"] == "suspended"
    assert client.get(f"/platform/tenants/{slug}", headers=PLATFORM_HEADERS).get_json()[
        "status"
    ] == ("suspended")
    # Every tenant route is refused, with a token or without, login included.
    assert_error(client.get("/api/v1/me", headers=headers), 403)
    assert_error(client.get("/api/v1/users", headers=headers), 403)
    assert_error(client.get("/api/v1/tenant", headers=tenant_headers(info)), 403)
    r = client.post(
        "/api/v1/auth/token",
        json={"email": email, "password": ADMIN_PASSWORD},
        headers=tenant_headers(info),
    )
    assert_error(r, 403)

    r = client.patch(
        f"/platform/tenants/{slug}", json={"status": "active"}, headers=PLATFORM_HEADERS
    )
    assert r.status_code == 200 and r.get_json()["status"] == "active"
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    login(client, info, email, ADMIN_PASSWORD)


def test_patch_name_and_validation(app, client, onboard):
    slug = unique_slug("pl")
    onboard(slug)
    r = client.patch(
        f"/platform/tenants/{slug}", json={"name": "Renamed"}, headers=PLATFORM_HEADERS
    )
    assert r.status_code == 200
    assert r.get_json()["name"] == "Renamed" and r.get_json()["status"] == "active"
    assert client.get(f"/platform/tenants/{slug}", headers=PLATFORM_HEADERS).get_json()["name"] == (
        "Renamed"
    )
    r = client.get("/api/v1/tenant", headers=tenant_headers(tenant_info(app, slug)))
    assert r.get_json()["name"] == "Renamed"

    for change, field in (
        ({"status": "deleted"}, "status"),
        ({"status": None}, "status"),
        ({"name": ""}, "name"),
        ({"name": "n" * 121}, "name"),
        ({"slug": "other"}, "slug"),
    ):
        r = client.patch(f"/platform/tenants/{slug}", json=change, headers=PLATFORM_HEADERS)
        assert field in assert_error(r, 422)["errors"], change
    body = client.get(f"/platform/tenants/{slug}", headers=PLATFORM_HEADERS).get_json()
    assert body["name"] == "Renamed" and body["status"] == "active" and body["slug"] == slug


# --- DELETE /platform/tenants/<slug> -------------------------------------------------------


def test_delete_tenant(app, client, onboard):
    slug = unique_slug("pl")
    onboard(slug)
    info = tenant_info(app, slug)
    email = f"head@{slug}.example"
    headers = login(client, info, email, ADMIN_PASSWORD)

    for query in ("", "?confirm=", f"?confirm={slug}x", f"?confirm={slug.upper()}", "?confirm=a"):
        r = client.delete(f"/platform/tenants/{slug}{query}", headers=PLATFORM_HEADERS)
        assert_error(r, 422)
    # Nothing was dropped.
    assert schema_exists(app, info.schema_name)
    assert client.get(f"/platform/tenants/{slug}", headers=PLATFORM_HEADERS).status_code == 200
    assert client.get("/api/v1/me", headers=headers).status_code == 200

    r = client.delete(f"/platform/tenants/{slug}?confirm={slug}", headers=PLATFORM_HEADERS)
    assert r.status_code == 204
    assert r.get_data() == b""
    assert not schema_exists(app, info.schema_name)
    assert tenant_info(app, slug) is None
    assert_error(client.get(f"/platform/tenants/{slug}", headers=PLATFORM_HEADERS), 404)
    assert_error(client.get("/api/v1/me", headers=headers), 404)
    r = client.post(
        "/api/v1/auth/token",
        json={"email": email, "password": ADMIN_PASSWORD},
        headers=tenant_headers(info),
    )
    assert_error(r, 404)
    assert_error(
        client.delete(f"/platform/tenants/{slug}?confirm={slug}", headers=PLATFORM_HEADERS), 404
    )
    r = client.get(f"/platform/tenants?limit=1&cursor={slug[:-1]}", headers=PLATFORM_HEADERS)
    assert slug not in {t["slug"] for t in r.get_json()["items"]}


def test_slug_can_be_reused_after_delete(app, client, onboard):
    slug = unique_slug("pl")
    onboard(slug)
    old_info = tenant_info(app, slug)
    old_token = login(client, old_info, f"head@{slug}.example", ADMIN_PASSWORD)
    r = client.delete(f"/platform/tenants/{slug}?confirm={slug}", headers=PLATFORM_HEADERS)
    assert r.status_code == 204

    onboard(slug, admin_email=f"new@{slug}.example", admin_password=USER_PASSWORD)
    info = tenant_info(app, slug)
    headers = login(client, info, f"new@{slug}.example", USER_PASSWORD)
    users = client.get("/api/v1/users", headers=headers).get_json()["items"]
    assert [u["email"] for u in users] == [f"new@{slug}.example"]
    # A token of the dropped school is worthless in the new school of the same slug,
    # although both admins have the same user id.
    assert info.id != old_info.id
    assert client.get("/api/v1/me", headers=headers).get_json()["id"] == 1
    assert_error(client.get("/api/v1/me", headers=old_token), 401)
