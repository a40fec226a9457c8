"""Accounts API: POST /auth/token, GET /me, /users, /users/bulk (API.md, issue 4 items 2, 3, 6).

Real PostgreSQL and Redis. Every test makes its own users (random e-mails) in the
module's tenants, so tests do not depend on each other or on their order.
"""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner
from sqlalchemy import func, select

from lms_app.accounts.models import User
from lms_app.extensions import db
from lms_app.tenancy.context import TenantInfo, tenant_scope
from tests.conftest import (
    ADMIN_PASSWORD,
    USER_PASSWORD,
    add_user,
    assert_error,
    dispose,
    login,
    make_app,
    tenant_headers,
    unique_slug,
    user_email,
)

NEW_PASSWORD = "a-brand-new-password-456"
TOKEN = "/api/v1/auth/token"


# --- helpers --------------------------------------------------------------------------


def admin_headers(client: FlaskClient, tenant: TenantInfo) -> dict[str, str]:
    return login(client, tenant, f"admin@{tenant.slug}.test", ADMIN_PASSWORD)


def user_headers(client: FlaskClient, app: Flask, tenant: TenantInfo, role: str = "student"):
    """(user id, headers with a fresh token) for a new user of `role`."""
    user_id = add_user(app, tenant, role)
    return user_id, login(client, tenant, user_email(app, tenant, user_id))


def token_request(
    client: FlaskClient, tenant: TenantInfo, email: str, password: str, address: str | None = None
):
    """POST /auth/token, from another client address if given."""
    return client.post(
        TOKEN,
        json={"email": email, "password": password},
        headers=tenant_headers(tenant),
        environ_base={"REMOTE_ADDR": address} if address else {},
    )


def token_serializer(app: Flask, tenant: TenantInfo, signer=TimestampSigner, key=None):
    """The serializer lms_app signs tokens with (tenant-bound salt), for forging tests."""
    from lms_app.accounts.auth import token_serializer as app_serializer

    with app.app_context():
        return app_serializer(tenant, signer=signer, secret_key=key or app.config["SECRET_KEY"])


def random_email(prefix: str = "u") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.test"


def new_user_body(**overrides) -> dict:
    body = {
        "email": random_email("new"),
        "name": "New Person",
        "role": "student",
        "password": USER_PASSWORD,
    }
    body.update(overrides)
    return body


@pytest.fixture(scope="module")
def tenant(make_tenant) -> TenantInfo:
    return make_tenant()


@pytest.fixture(scope="module")
def other_tenant(make_tenant) -> TenantInfo:
    return make_tenant()


@pytest.fixture
def admin(client, tenant) -> dict[str, str]:
    return admin_headers(client, tenant)


# --- POST /auth/token -----------------------------------------------------------------


def test_token_happy_path_email_case_insensitive(app, client, tenant):
    email = random_email("case")
    user_id = add_user(app, tenant, "student", email=email)

    r = token_request(client, tenant, "  " + email.upper() + " ", USER_PASSWORD)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 12 * 3600  # the default setting
    assert isinstance(body["access_token"], str) and len(body["access_token"]) > 20

    me = client.get("/api/v1/me", headers=tenant_headers(tenant, body["access_token"]))
    assert me.status_code == 200
    assert me.get_json()["id"] == user_id
    assert me.get_json()["email"] == email


@pytest.mark.parametrize("case", ["wrong_password", "unknown_email", "inactive", "bulk_no_pw"])
def test_token_refused_is_401(app, client, tenant, admin, case):
    email = random_email(case)
    password = USER_PASSWORD
    if case == "wrong_password":
        add_user(app, tenant, "student", email=email)
        password = USER_PASSWORD + "x"
    elif case == "inactive":
        add_user(app, tenant, "student", email=email, is_active=False)
    elif case == "bulk_no_pw":
        r = client.post(
            "/api/v1/users/bulk",
            json={"users": [{"email": email, "name": "No Password", "role": "student"}]},
            headers=admin,
        )
        assert r.status_code == 200 and r.get_json() == {"created": 1, "updated": 0}
    body = assert_error(token_request(client, tenant, email, password), 401)
    # Same message whatever the reason: the response does not reveal who has an account.
    assert body["message"] == "invalid e-mail or password"


@pytest.mark.parametrize(
    "payload",
    [{}, {"email": "a@b.test"}, {"password": "x" * 12}, {"email": 5, "password": "x" * 12}],
)
def test_token_request_validation_is_422(client, tenant, payload):
    assert_error(client.post(TOKEN, json=payload, headers=tenant_headers(tenant)), 422)


def test_token_of_tenant_a_is_401_in_tenant_b_even_for_same_user_id(
    app, client, tenant, other_tenant
):
    # Both schools' first admin has the same id: the token must still not cross over.
    with app.app_context(), tenant_scope(tenant):
        a_id = db.session.scalar(select(User.id).where(User.email == f"admin@{tenant.slug}.test"))
    with app.app_context(), tenant_scope(other_tenant):
        b_id = db.session.scalar(
            select(User.id).where(User.email == f"admin@{other_tenant.slug}.test")
        )
    assert a_id == b_id

    a_headers = admin_headers(client, tenant)
    assert client.get("/api/v1/me", headers=a_headers).status_code == 200
    crossed = {**a_headers, "X-Tenant": other_tenant.slug}
    assert_error(client.get("/api/v1/me", headers=crossed), 401)
    assert_error(client.get("/api/v1/users", headers=crossed), 401)
    assert_error(client.get(f"/api/v1/users/{b_id}", headers=crossed), 401)


def test_expired_token_is_401(app, client, tenant):
    user_id = add_user(app, tenant, "student")

    class ThirteenHoursAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 13 * 3600

    fresh = token_serializer(app, tenant).dumps({"u": user_id, "v": 0})
    expired = token_serializer(app, tenant, signer=ThirteenHoursAgo).dumps({"u": user_id, "v": 0})
    # The forged-but-fresh token works, so the 401 below is the expiry and nothing else.
    assert client.get("/api/v1/me", headers=tenant_headers(tenant, fresh)).status_code == 200
    assert_error(client.get("/api/v1/me", headers=tenant_headers(tenant, expired)), 401)


def test_tampered_or_malformed_token_is_401(app, client, tenant):
    user_id, headers = user_headers(client, app, tenant)
    token = headers["Authorization"].removeprefix("Bearer ")
    _payload, timestamp, signature = token.split(".")
    other_id = add_user(app, tenant, "admin")
    forged_payload = base64.urlsafe_b64encode(json.dumps({"u": other_id, "v": 0}).encode()).decode()
    signed = token_serializer(app, tenant)
    bad_tokens = [
        # Signature changed in its first character: the last one partly holds
        # base64 padding bits, so changing it may decode to the same bytes.
        f"{_payload}.{timestamp}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}",
        f"{forged_payload.rstrip('=')}.{timestamp}.{signature}",  # claims swapped
        token_serializer(app, tenant, key="another-secret").dumps({"u": user_id, "v": 0}),
        signed.dumps({"u": 987_654_321, "v": 0}),  # well signed, no such user
        signed.dumps({"u": user_id, "v": 1}),  # well signed, wrong token version
        signed.dumps({"u": user_id}),  # no version
        signed.dumps({"u": "abc", "v": 0}),
        signed.dumps([user_id, 0]),
        "not-a-token",
        "",
    ]
    for bad in bad_tokens:
        r = client.get("/api/v1/me", headers={**headers, "Authorization": f"Bearer {bad}"})
        assert_error(r, 401)
    for header in (f"Token {token}", token, "Bearer", "Basic dXNlcjpwYXNz"):
        assert_error(client.get("/api/v1/me", headers={**headers, "Authorization": header}), 401)
    assert_error(client.get("/api/v1/me", headers=tenant_headers(tenant)), 401)
    # The genuine token still works.
    assert client.get("/api/v1/me", headers=headers).status_code == 200


def test_password_change_revokes_old_tokens(app, client, tenant, admin):
    user_id, old = user_headers(client, app, tenant)
    _, other_device = user_headers(client, app, tenant)  # another user: unaffected
    email = user_email(app, tenant, user_id)
    second = login(client, tenant, email)  # a second session of the same user
    assert client.get("/api/v1/me", headers=old).status_code == 200  # warm the auth cache

    # One's own password needs the current one: a stolen token alone cannot take over.
    change = f"/api/v1/users/{user_id}"
    r = client.patch(change, json={"password": NEW_PASSWORD}, headers=old)
    assert "current_password" in assert_error(r, 422)["errors"]
    r = client.patch(
        change, json={"password": NEW_PASSWORD, "current_password": "not-my-password"}, headers=old
    )
    assert "current_password" in assert_error(r, 422)["errors"]
    assert client.get("/api/v1/me", headers=old).status_code == 200  # nothing changed
    r = client.patch(
        change, json={"password": NEW_PASSWORD, "current_password": USER_PASSWORD}, headers=old
    )
    assert r.status_code == 200, r.get_json()
    assert "password" not in r.get_json() and "password_hash" not in r.get_json()

    assert_error(client.get("/api/v1/me", headers=old), 401)
    assert_error(client.get("/api/v1/me", headers=second), 401)
    assert client.get("/api/v1/me", headers=other_device).status_code == 200
    assert_error(token_request(client, tenant, email, USER_PASSWORD), 401)
    new = login(client, tenant, email, NEW_PASSWORD)
    assert client.get("/api/v1/me", headers=new).get_json()["id"] == user_id

    # An admin resetting the password signs the user out too.
    r = client.patch(
        f"/api/v1/users/{user_id}", json={"password": NEW_PASSWORD + "!"}, headers=admin
    )
    assert r.status_code == 200
    assert_error(client.get("/api/v1/me", headers=new), 401)
    login(client, tenant, email, NEW_PASSWORD + "!")


def test_deactivation_applies_to_existing_tokens_at_once(app, client, tenant, admin):
    user_id, headers = user_headers(client, app, tenant)
    email = user_email(app, tenant, user_id)
    assert client.get("/api/v1/me", headers=headers).status_code == 200  # cached: active

    r = client.patch(f"/api/v1/users/{user_id}", json={"is_active": False}, headers=admin)
    assert r.status_code == 200 and r.get_json()["is_active"] is False
    assert_error(client.get("/api/v1/me", headers=headers), 401)
    assert_error(token_request(client, tenant, email, USER_PASSWORD), 401)

    r = client.patch(f"/api/v1/users/{user_id}", json={"is_active": True}, headers=admin)
    assert r.status_code == 200 and r.get_json()["is_active"] is True
    # Reactivation does not revive tokens issued before: the user logs in again.
    assert_error(client.get("/api/v1/me", headers=headers), 401)
    fresh = login(client, tenant, email)
    assert client.get("/api/v1/me", headers=fresh).status_code == 200


def test_role_change_applies_at_once(app, client, tenant, admin):
    demoted_id, demoted = user_headers(client, app, tenant, "admin")
    assert client.get("/api/v1/users", headers=demoted).status_code == 200  # cached: admin

    r = client.patch(f"/api/v1/users/{demoted_id}", json={"role": "student"}, headers=admin)
    assert r.status_code == 200 and r.get_json()["role"] == "student"
    assert_error(client.get("/api/v1/users", headers=demoted), 403)
    assert client.get("/api/v1/me", headers=demoted).get_json()["role"] == "student"

    # A role change through the bulk upsert takes effect at once as well.
    promoted_id, promoted = user_headers(client, app, tenant, "instructor")
    assert_error(client.get("/api/v1/users", headers=promoted), 403)  # cached: instructor
    email = user_email(app, tenant, promoted_id)
    r = client.post(
        "/api/v1/users/bulk",
        json={"users": [{"email": email.upper(), "name": "Promoted", "role": "admin"}]},
        headers=admin,
    )
    assert r.get_json() == {"created": 0, "updated": 1}
    assert client.get("/api/v1/users", headers=promoted).status_code == 200


# --- rate limits ----------------------------------------------------------------------


def test_login_limit_per_account(own_app, make_tenant):
    own_app.config["LOGIN_LIMIT_PER_ACCOUNT"] = "3/minute"
    own_app.config["LOGIN_LIMIT_PER_ADDRESS"] = "1000/minute"
    school, elsewhere = make_tenant(unique_slug("rl")), make_tenant(unique_slug("rl"))
    client = own_app.test_client()
    target = random_email("target")
    other = random_email("other")
    add_user(own_app, school, "student", email=target)
    add_user(own_app, school, "student", email=other)
    add_user(own_app, elsewhere, "student", email=target)

    for _ in range(3):
        assert_error(token_request(client, school, target, "wrong-password-1"), 401)
    r = token_request(client, school, target, "wrong-password-1")
    assert_error(r, 429)
    assert int(r.headers["Retry-After"]) > 0  # the client learns when to come back
    # Limited whatever the password or the e-mail's case: the key is tenant + e-mail.
    assert_error(token_request(client, school, target, USER_PASSWORD), 429)
    assert_error(token_request(client, school, target.upper(), USER_PASSWORD), 429)
    # Another account of the same school, and the same e-mail in another school, still work.
    assert token_request(client, school, other, USER_PASSWORD).status_code == 200
    assert token_request(client, elsewhere, target, USER_PASSWORD).status_code == 200
    # The key is the account *and* the address: guesses from one place do not lock the
    # real owner out from another (finding 11 of issue 8).
    r = token_request(client, school, target, USER_PASSWORD, address="10.20.30.41")
    assert r.status_code == 200, r.get_json()


def test_each_app_counts_its_own_logins(database_url, redis_url, tmp_path, make_tenant, caplog):
    """Two apps of one test run (two deployments) share no counters, and a refused
    attempt logs no e-mail."""
    first = make_app(database_url, redis_url, tmp_path / "a")
    second = make_app(database_url, redis_url, tmp_path / "b")
    for one in (first, second):
        one.config["LOGIN_LIMIT_PER_ACCOUNT"] = "2/minute"
    school = make_tenant(unique_slug("rl"))
    target = random_email("shared")
    add_user(first, school, "student", email=target)
    a, b = first.test_client(), second.test_client()
    with caplog.at_level("DEBUG"):
        for _ in range(2):
            assert_error(token_request(a, school, target, "wrong-password-1"), 401)
        assert_error(token_request(a, school, target, USER_PASSWORD), 429)
    assert token_request(b, school, target, USER_PASSWORD).status_code == 200
    assert target not in caplog.text
    dispose(first, second)


def test_current_password_guesses_count_as_login_attempts(own_app, make_tenant):
    """Found by the review of issue 8: with a user's token, PATCH /users/<own id> tested
    unlimited guesses of their password through `current_password`."""
    own_app.config["LOGIN_LIMIT_PER_ACCOUNT"] = "3/minute"
    school = make_tenant(unique_slug("rl"))
    client = own_app.test_client()
    user_id, headers = user_headers(client, own_app, school)
    url = f"/api/v1/users/{user_id}"
    for attempt in range(2):  # the login above was the first attempt
        body = {"password": NEW_PASSWORD, "current_password": f"guess-{attempt:06d}"}
        assert (
            "current_password"
            in assert_error(client.patch(url, json=body, headers=headers), 422)["errors"]
        )
    body = {"password": NEW_PASSWORD, "current_password": USER_PASSWORD}
    r = client.patch(url, json=body, headers=headers)
    assert_error(r, 429)
    assert int(r.headers["Retry-After"]) > 0
    assert client.get("/api/v1/me", headers=headers).status_code == 200  # nothing changed


def test_login_limit_per_address(own_app, make_tenant):
    own_app.config["LOGIN_LIMIT_PER_ACCOUNT"] = "1000/minute"
    own_app.config["LOGIN_LIMIT_PER_ADDRESS"] = "5/minute"
    school = make_tenant(unique_slug("rl"))
    client = own_app.test_client()
    email = random_email("addr")
    add_user(own_app, school, "student", email=email)

    for _ in range(5):
        assert_error(token_request(client, school, random_email("guess"), "wrong-password"), 401)
    # A sixth attempt from that address is refused, even with good credentials.
    assert_error(token_request(client, school, email, USER_PASSWORD), 429)
    assert_error(token_request(client, school, random_email("guess"), "wrong-password"), 429)
    # Another client address is not affected.
    r = token_request(client, school, email, USER_PASSWORD, address="10.20.30.40")
    assert r.status_code == 200, r.get_json()


# --- GET /me --------------------------------------------------------------------------


def test_me(app, client, tenant):
    email = random_email("me")
    user_id = add_user(app, tenant, "instructor", email=email, name="Ada Lovelace")
    headers = login(client, tenant, email)
    r = client.get("/api/v1/me", headers=headers)
    assert r.status_code == 200
    body = r.get_json()
    assert body["id"] == user_id
    assert body["email"] == email
    assert body["name"] == "Ada Lovelace"
    assert body["role"] == "instructor"
    assert body["is_active"] is True
    assert body["created_at"] and body["updated_at"]
    assert not {"password", "password_hash", "token_version"} & body.keys()

    assert_error(client.get("/api/v1/me", headers=tenant_headers(tenant)), 401)
    no_tenant = {"Authorization": headers["Authorization"]}
    assert_error(client.get("/api/v1/me", headers=no_tenant), 400)
    unknown = {**headers, "X-Tenant": unique_slug("nope")}
    assert_error(client.get("/api/v1/me", headers=unknown), 404)


def test_me_query_budget(app, client, tenant, count_queries):
    _, headers = user_headers(client, app, tenant)
    with count_queries() as first:
        assert client.get("/api/v1/me", headers=headers).status_code == 200
    # The first authenticated request may read the auth state once (then it is cached).
    assert first.count <= 2, first.statements
    with count_queries() as warm:
        assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert warm.count <= 1, warm.statements


def test_users_query_budget(app, client, tenant, admin, count_queries):
    user_id = add_user(app, tenant, "student")
    client.get("/api/v1/users?limit=50", headers=admin)  # warm-up
    with count_queries() as q:
        r = client.get("/api/v1/users?limit=50", headers=admin)
    assert r.status_code == 200
    assert q.count == 1, q.statements
    with count_queries() as q:
        assert client.get(f"/api/v1/users/{user_id}", headers=admin).status_code == 200
    assert q.count == 1, q.statements


# --- POST /users ----------------------------------------------------------------------


def test_create_user(app, client, tenant, admin):
    email = random_email("Created").replace("created", "CrEaTeD")
    r = client.post(
        "/api/v1/users", json=new_user_body(email=email, role="instructor"), headers=admin
    )
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["email"] == email.lower()
    assert body["role"] == "instructor" and body["name"] == "New Person"
    assert body["is_active"] is True
    assert not {"password", "password_hash"} & body.keys()
    headers = login(client, tenant, email)
    assert client.get("/api/v1/me", headers=headers).get_json()["id"] == body["id"]
    r = client.get(f"/api/v1/users/{body['id']}", headers=admin)
    assert r.status_code == 200 and r.get_json() == body


def test_create_user_duplicate_email_is_409(client, tenant, admin):
    body = new_user_body()
    assert client.post("/api/v1/users", json=body, headers=admin).status_code == 201
    assert_error(client.post("/api/v1/users", json=body, headers=admin), 409)
    shouted = {**body, "email": body["email"].upper(), "name": "Someone Else"}
    assert_error(client.post("/api/v1/users", json=shouted, headers=admin), 409)
    # The admin's session survives the failed insert.
    assert client.get("/api/v1/users", headers=admin).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"password": "short-pw1"}, "password"),
        ({"role": "superuser"}, "role"),
        ({"role": "Admin"}, "role"),
        ({"email": "not-an-email"}, "email"),
        ({"email": "a b@example.test"}, "email"),
        ({"email": "x@nodot"}, "email"),
        ({"name": "Bad\x00Name"}, "name"),
        ({"name": ""}, "name"),
        ({"name": "n" * 121}, "name"),
        ({"is_admin": True}, "is_admin"),
        ({"name": None}, "name"),
        ({"email": 42}, "email"),
    ],
)
def test_create_user_validation_is_422(client, tenant, admin, overrides, field):
    body = assert_error(
        client.post("/api/v1/users", json=new_user_body(**overrides), headers=admin), 422
    )
    assert field in body["errors"], body


@pytest.mark.parametrize("missing", ["email", "name", "role", "password"])
def test_create_user_missing_field_is_422(client, tenant, admin, missing):
    payload = new_user_body()
    del payload[missing]
    body = assert_error(client.post("/api/v1/users", json=payload, headers=admin), 422)
    assert missing in body["errors"]


# --- role matrix for /users -------------------------------------------------------------


def _users_calls(target_id: int) -> list[tuple[str, str, dict | None, int]]:
    """(method, path, body, admin's status) for every /users route on another user."""
    return [
        ("GET", "/api/v1/users", None, 200),
        ("GET", "/api/v1/users?role=student", None, 200),
        ("POST", "/api/v1/users", new_user_body(), 201),
        (
            "POST",
            "/api/v1/users/bulk",
            {"users": [{"email": random_email("m"), "name": "M", "role": "student"}]},
            200,
        ),
        ("GET", f"/api/v1/users/{target_id}", None, 200),
        ("PATCH", f"/api/v1/users/{target_id}", {"name": "Renamed"}, 200),
    ]


@pytest.mark.parametrize("role", [None, "student", "instructor", "admin"])
def test_users_role_matrix(app, client, tenant, role):
    target_id = add_user(app, tenant, "student")
    if role is None:
        headers = tenant_headers(tenant)
    else:
        _, headers = user_headers(client, app, tenant, role)
    for method, path, body, admin_status in _users_calls(target_id):
        r = client.open(path, method=method, json=body, headers=headers)
        if role is None:
            assert_error(r, 401)
        elif role == "admin":
            assert r.status_code == admin_status, (method, path, r.get_json())
        else:
            assert_error(r, 403)


@pytest.mark.parametrize("role", ["student", "instructor"])
def test_non_admin_on_own_account(app, client, tenant, role):
    user_id, headers = user_headers(client, app, tenant, role)
    other_id = add_user(app, tenant, "student")

    r = client.get(f"/api/v1/users/{user_id}", headers=headers)
    assert r.status_code == 200 and r.get_json()["id"] == user_id
    r = client.patch(f"/api/v1/users/{user_id}", json={"name": "My New Name"}, headers=headers)
    assert r.status_code == 200 and r.get_json()["name"] == "My New Name"

    assert_error(
        client.patch(f"/api/v1/users/{user_id}", json={"role": "admin"}, headers=headers), 403
    )
    assert_error(
        client.patch(f"/api/v1/users/{user_id}", json={"is_active": False}, headers=headers), 403
    )
    assert_error(client.get(f"/api/v1/users/{other_id}", headers=headers), 403)
    assert_error(
        client.patch(f"/api/v1/users/{other_id}", json={"name": "Hijack"}, headers=headers), 403
    )
    # Nothing changed for the user or the other one.
    me = client.get("/api/v1/me", headers=headers).get_json()
    assert me["role"] == role and me["is_active"] is True
    assert user_email(app, tenant, other_id)
    with app.app_context(), tenant_scope(tenant):
        assert db.session.get(User, other_id).name != "Hijack"


def test_admin_cannot_deactivate_or_demote_self(app, client, tenant):
    admin_id, headers = user_headers(client, app, tenant, "admin")
    for change in ({"is_active": False}, {"role": "student"}, {"role": "instructor"}):
        assert_error(client.patch(f"/api/v1/users/{admin_id}", json=change, headers=headers), 409)
    r = client.patch(
        f"/api/v1/users/{admin_id}", json={"name": "Still Admin", "role": "admin"}, headers=headers
    )
    assert r.status_code == 200
    assert r.get_json()["role"] == "admin" and r.get_json()["is_active"] is True
    assert client.get("/api/v1/users", headers=headers).status_code == 200


@pytest.mark.parametrize("value", [0, 1])
def test_patch_is_active_accepts_json_booleans_only(app, client, tenant, admin, value):
    user_id = add_user(app, tenant, "student")
    r = client.patch(f"/api/v1/users/{user_id}", json={"is_active": value}, headers=admin)
    assert "is_active" in assert_error(r, 422)["errors"]


def test_patch_user_validation_and_unknown(app, client, tenant, admin):
    user_id = add_user(app, tenant, "student")
    for change, field in (
        ({"role": "root"}, "role"),
        ({"is_active": "false"}, "is_active"),
        ({"password": "short"}, "password"),
        ({"name": ""}, "name"),
        ({"name": "x\x00y"}, "name"),
        ({"email": "new@example.test"}, "email"),
    ):
        r = client.patch(f"/api/v1/users/{user_id}", json=change, headers=admin)
        assert field in assert_error(r, 422)["errors"], change
    assert_error(client.get("/api/v1/users/987654321", headers=admin), 404)
    assert_error(
        client.patch("/api/v1/users/987654321", json={"name": "Nobody"}, headers=admin), 404
    )
    # Ids beyond bigint are not a database error.
    assert_error(client.get(f"/api/v1/users/{2**63}", headers=admin), 404)
    assert_error(client.get("/api/v1/users/0", headers=admin), 404)


# --- POST /users/bulk -------------------------------------------------------------------


def test_bulk_upsert(app, client, tenant, admin):
    existing_email = random_email("existing")
    existing_id = add_user(app, tenant, "student", email=existing_email, name="Old Name")
    with_pw, without_pw, instructor = (random_email(p) for p in ("withpw", "nopw", "inst"))
    r = client.post(
        "/api/v1/users/bulk",
        json={
            "users": [
                {
                    "email": existing_email.upper(),
                    "name": "New Name",
                    "role": "instructor",
                },
                {"email": with_pw, "name": "With Pw", "role": "student", "password": NEW_PASSWORD},
                {"email": without_pw.upper(), "name": "No Pw", "role": "student"},
                {"email": instructor, "name": "Teacher", "role": "instructor"},
            ]
        },
        headers=admin,
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"created": 3, "updated": 1}

    # Updated by e-mail, case-insensitively; the missing password kept the old one.
    r = client.get(f"/api/v1/users/{existing_id}", headers=admin)
    assert r.get_json()["name"] == "New Name" and r.get_json()["role"] == "instructor"
    assert r.get_json()["email"] == existing_email
    login(client, tenant, existing_email, USER_PASSWORD)

    login(client, tenant, with_pw, NEW_PASSWORD)
    assert_error(token_request(client, tenant, without_pw, USER_PASSWORD), 401)
    with app.app_context(), tenant_scope(tenant):
        rows = {
            u.email: u
            for u in db.session.scalars(
                select(User).where(User.email.in_([with_pw, without_pw, instructor]))
            )
        }
    assert set(rows) == {with_pw, without_pw, instructor}  # stored lower-case
    assert rows[instructor].role == "instructor" and rows[without_pw].password_hash is None

    # An admin sets the password: the bulk-created user can log in from then on.
    no_pw_id = rows[without_pw].id
    r = client.patch(f"/api/v1/users/{no_pw_id}", json={"password": NEW_PASSWORD}, headers=admin)
    assert r.status_code == 200
    login(client, tenant, without_pw, NEW_PASSWORD)

    # Sending a password in a later upsert replaces the stored one.
    r = client.post(
        "/api/v1/users/bulk",
        json={
            "users": [
                {
                    "email": existing_email,
                    "name": "New Name",
                    "role": "instructor",
                    "password": NEW_PASSWORD,
                }
            ]
        },
        headers=admin,
    )
    assert r.get_json() == {"created": 0, "updated": 1}
    login(client, tenant, existing_email, NEW_PASSWORD)
    assert_error(token_request(client, tenant, existing_email, USER_PASSWORD), 401)


def _count_emails(app: Flask, tenant: TenantInfo, domain: str) -> int:
    with app.app_context(), tenant_scope(tenant):
        return db.session.scalar(
            select(func.count()).select_from(User).where(User.email.like(f"%@{domain}"))
        )


@pytest.mark.parametrize("case", ["duplicates", "too_many_users", "too_many_passwords", "empty"])
def test_bulk_limits_are_422_and_write_nothing(app, client, tenant, admin, case):
    domain = f"{uuid.uuid4().hex[:10]}.test"

    def item(i: int, password: bool = False) -> dict:
        row = {"email": f"user{i}@{domain}", "name": f"User {i}", "role": "student"}
        if password:
            row["password"] = USER_PASSWORD
        return row

    users = {
        "duplicates": [item(1), item(2), {**item(1), "email": f"USER1@{domain.upper()}"}],
        "too_many_users": [item(i) for i in range(5001)],
        "too_many_passwords": [item(i, password=True) for i in range(101)],
        "empty": [],
    }[case]
    body = assert_error(
        client.post("/api/v1/users/bulk", json={"users": users}, headers=admin), 422
    )
    assert "users" in body["errors"]
    if case == "duplicates":
        assert f"user1@{domain}" in json.dumps(body["errors"])
    assert _count_emails(app, tenant, domain) == 0


def test_bulk_item_errors_are_422(client, tenant, admin):
    users = [
        {"email": random_email(), "name": "Ok", "role": "student"},
        {"email": "broken", "name": "Bad", "role": "student"},
        {"email": random_email(), "name": "Bad", "role": "wizard"},
        {"email": random_email(), "name": "Bad", "role": "student", "password": "short"},
    ]
    body = assert_error(
        client.post("/api/v1/users/bulk", json={"users": users}, headers=admin), 422
    )
    assert "users" in body["errors"]
    assert_error(client.post("/api/v1/users/bulk", json={"users": "nope"}, headers=admin), 422)
    assert_error(client.post("/api/v1/users/bulk", json={}, headers=admin), 422)


def test_bulk_of_2000_users_in_one_request(app, client, tenant, admin, count_queries):
    domain = f"bulk-{uuid.uuid4().hex[:8]}.test"
    users = [
        {"email": f"Learner{i}@{domain.upper()}", "name": f"Learner {i}", "role": "student"}
        for i in range(2000)
    ]
    with count_queries() as q:
        r = client.post("/api/v1/users/bulk", json={"users": users}, headers=admin)
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"created": 2000, "updated": 0}
    # A set-based upsert, not a statement per row.
    assert q.count <= 5, q.count
    assert _count_emails(app, tenant, domain) == 2000

    # Again, half of them renamed and promoted, plus 500 new ones.
    again = [
        {**u, "name": f"Renamed {i}", "role": "instructor"} if i % 2 else u
        for i, u in enumerate(users)
    ] + [{"email": f"late{i}@{domain}", "name": f"Late {i}", "role": "student"} for i in range(500)]
    with count_queries() as q:
        r = client.post("/api/v1/users/bulk", json={"users": again}, headers=admin)
    assert r.get_json() == {"created": 500, "updated": 2000}
    assert q.count <= 5, q.count
    with app.app_context(), tenant_scope(tenant):
        rows = db.session.execute(
            select(User.email, User.name, User.role).where(User.email.like(f"%@{domain}"))
        ).all()
    assert len(rows) == 2500
    by_email = {row.email: row for row in rows}
    assert by_email[f"learner1@{domain}"].name == "Renamed 1"
    assert by_email[f"learner1@{domain}"].role == "instructor"
    assert by_email[f"learner2@{domain}"].name == "Learner 2"
    assert by_email[f"learner2@{domain}"].role == "student"
    assert sum(1 for row in rows if row.role == "instructor") == 1000


# --- GET /users: keyset pagination, filter, validation ----------------------------------


def test_users_keyset_pagination(app, client, make_tenant):
    school = make_tenant()  # its own tenant: the walk must see exactly these users
    roles = ["student", "instructor", "admin"]
    with app.app_context(), tenant_scope(school):
        # One transaction: these rows share created_at, so the id tie-break matters.
        db.session.add_all(
            User(email=f"p{i}@page.test", name=f"P {i}", role=roles[i % 3]) for i in range(30)
        )
        db.session.commit()
        db.session.add_all(
            User(email=f"q{i}@page.test", name=f"Q {i}", role=roles[i % 3]) for i in range(15)
        )
        db.session.commit()
        expected = db.session.execute(
            select(User.id, User.role).order_by(User.created_at.desc(), User.id.desc())
        ).all()
    headers = admin_headers(client, school)
    assert len(expected) == 46  # with the school's first admin

    def walk(query: str, limit: int) -> list[dict]:
        seen: list[dict] = []
        cursor = None
        for _ in range(100):
            url = f"/api/v1/users?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
            r = client.get(url, headers=headers)
            assert r.status_code == 200, r.get_json()
            body = r.get_json()
            assert len(body["items"]) <= limit
            seen.extend(body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                return seen
            assert body["items"], "a page with a cursor must not be empty"
        raise AssertionError("pagination does not end")

    items = walk("", 7)
    ids = [u["id"] for u in items]
    assert len(ids) == len(set(ids)) == 46
    assert ids == [row.id for row in expected]

    # Exactly a multiple of the page size: no empty trailing page is served.
    items = walk("", 23)
    assert [u["id"] for u in items] == [row.id for row in expected]

    instructors = walk("&role=instructor", 4)
    assert [u["id"] for u in instructors] == [r.id for r in expected if r.role == "instructor"]
    assert {u["role"] for u in instructors} == {"instructor"}

    # Default page size 20.
    r = client.get("/api/v1/users", headers=headers).get_json()
    assert len(r["items"]) == 20 and r["next_cursor"]


def test_users_list_validation(app, client, tenant, admin):
    def b64(value) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    for query in ("limit=0", "limit=101", "limit=-1", "limit=abc", "role=superuser"):
        assert_error(client.get(f"/api/v1/users?{query}", headers=admin), 422)
    bad_cursors = [
        "garbage!!",
        "%00",
        "x" * 600,
        b64({"a": 1}),
        b64(["2024-01-01T00:00:00+00:00"]),
        b64(["not-a-date", 1]),
        b64(["2024-01-01T00:00:00", 1]),  # no offset
        b64(["2024-01-01T00:00:00+00:00", "1"]),
        b64(["2024-01-01T00:00:00+00:00", 2**70]),
        b64(["2024-01-01T00:00:00+00:00", True]),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        # Instants UTC cannot hold (they were a 500 on the catalog's cache key).
        b64(["0001-01-01T00:00:00+14:00", 1]),
        b64(["9999-12-31T23:59:59-14:00", 1]),
    ]
    for cursor in bad_cursors:
        for path in ("/api/v1/users", "/api/v1/courses", "/api/v1/me/courses"):
            body = assert_error(client.get(f"{path}?cursor={cursor}", headers=admin), 422)
            assert "cursor" in body["errors"], (path, cursor, body)
