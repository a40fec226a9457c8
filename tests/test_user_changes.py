"""One set of rules for changing a user, whichever route (issue 8, findings 4 and 5).

`POST /users/bulk` used to skip what `PATCH /users/<id>` enforced: a password reset
left old tokens valid, and an admin could demote themself, leaving a school with no
admin. And a refused login was fast when the account was deactivated or had no
password yet, which told an attacker which accounts those were.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from lms_app.accounts import passwords
from lms_app.accounts.models import User
from lms_app.extensions import db
from lms_app.tenancy.context import tenant_scope
from tests.conftest import (
    ADMIN_PASSWORD,
    USER_PASSWORD,
    add_user,
    admin_id,
    assert_error,
    headers_for,
    login,
    staged_race,
    tenant_headers,
    user_email,
)

BULK = "/api/v1/users/bulk"


@pytest.fixture(scope="module")
def school(make_tenant):
    return make_tenant()


@pytest.fixture
def admin(client, school):
    return login(client, school, f"admin@{school.slug}.test", ADMIN_PASSWORD)


def bulk_item(email: str, role: str = "student", **extra) -> dict:
    return {"email": email, "name": "Someone", "role": role, **extra}


def role_of(app, tenant, user_id: int) -> str:
    with app.app_context(), tenant_scope(tenant):
        return db.session.scalar(select(User.role).where(User.id == user_id))


def test_a_password_set_in_bulk_revokes_the_users_tokens(app, client, school, admin):
    student = add_user(app, school, "student")
    email = user_email(app, school, student)
    old = login(client, school, email)
    assert client.get("/api/v1/me", headers=old).status_code == 200  # state cached

    r = client.post(
        BULK, json={"users": [bulk_item(email, password="a-reset-password-1")]}, headers=admin
    )
    assert r.get_json() == {"created": 0, "updated": 1}
    assert_error(client.get("/api/v1/me", headers=old), 401)
    fresh = login(client, school, email, "a-reset-password-1")
    assert client.get("/api/v1/me", headers=fresh).status_code == 200

    # Without a password the stored one and the tokens stay.
    r = client.post(BULK, json={"users": [bulk_item(email)]}, headers=admin)
    assert r.status_code == 200
    assert client.get("/api/v1/me", headers=fresh).status_code == 200


@pytest.mark.parametrize("role", ["student", "instructor"])
def test_an_admin_cannot_demote_themself_in_bulk(app, client, school, admin, role):
    me = admin_id(app, school)
    bystander = f"bystander-{role}@{school.slug}.test"
    users = [bulk_item(bystander), bulk_item(f"admin@{school.slug}.test", role)]
    assert_error(client.post(BULK, json={"users": users}, headers=admin), 409)
    # Nothing was written: still an admin, and the other item was not created either.
    assert role_of(app, school, me) == "admin"
    assert client.get("/api/v1/users", headers=admin).status_code == 200
    with app.app_context(), tenant_scope(school):
        assert db.session.scalar(select(User.id).where(User.email == bystander)) is None


def test_an_admin_keeps_their_role_in_bulk_and_may_rename_themself(app, client, school, admin):
    me = admin_id(app, school)
    users = [{"email": f"admin@{school.slug}.test", "name": "Head Teacher", "role": "admin"}]
    r = client.post(BULK, json={"users": users}, headers=admin)
    assert r.get_json() == {"created": 0, "updated": 1}
    assert client.get("/api/v1/me", headers=admin).get_json()["name"] == "Head Teacher"
    assert role_of(app, school, me) == "admin"


def test_ones_own_password_is_not_changed_in_bulk(app, client, school, admin):
    item = bulk_item(f"admin@{school.slug}.test", "admin", password="hijacked-password-1")
    assert_error(client.post(BULK, json={"users": [item]}, headers=admin), 409)
    assert client.get("/api/v1/me", headers=admin).status_code == 200
    login(client, school, f"admin@{school.slug}.test", ADMIN_PASSWORD)


def test_every_refused_login_pays_one_password_hash(app, client, school, monkeypatch):
    """Timing must not tell unknown, deactivated and password-less accounts apart from a
    wrong password: each refusal checks exactly one scrypt hash (counted, not timed)."""
    active = user_email(app, school, add_user(app, school, "student"))
    inactive = user_email(app, school, add_user(app, school, "student", is_active=False))
    no_password = user_email(app, school, add_user(app, school, "student"))
    with app.app_context(), tenant_scope(school):
        db.session.execute(
            User.__table__.update().where(User.email == no_password).values(password_hash=None)
        )
        db.session.commit()
    checks: list[str] = []
    real_check = passwords.check_password_hash

    def counting_check(stored: str, given: str) -> bool:
        checks.append(stored.split("$", 1)[0])
        return real_check(stored, given)

    monkeypatch.setattr(passwords, "check_password_hash", counting_check)
    for email, password, status in (
        (active, "wrong-password-1", 401),
        ("nobody@nowhere.test", USER_PASSWORD, 401),
        (inactive, USER_PASSWORD, 401),
        (no_password, USER_PASSWORD, 401),
        (active, USER_PASSWORD, 200),
    ):
        checks.clear()
        r = client.post(
            "/api/v1/auth/token",
            json={"email": email, "password": password},
            headers=tenant_headers(school),
        )
        assert r.status_code == status, (email, r.get_json())
        assert len(checks) == 1, (email, checks)
        assert checks[0].startswith("scrypt")  # the same work every time


@pytest.mark.parametrize("change", [{"role": "student"}, {"is_active": False}])
def test_two_admins_demoting_each_other_leave_one_admin(app, make_tenant, tmp_path, change):
    """Found by the review of issue 8: each admin demoted the other at the same moment
    and the school was left with none, and no way back through the API."""
    school = make_tenant()
    first, second = admin_id(app, school), add_user(app, school, "admin")
    one, other = headers_for(app, school, first), headers_for(app, school, second)

    def demote(target: int, headers: dict):
        return lambda worker: worker.test_client().patch(
            f"/api/v1/users/{target}", json=change, headers=headers
        )

    held, waited = staged_race(
        app, tmp_path, demote(second, one), demote(first, other), pause_after="UPDATE "
    )
    assert (held.status_code, waited.status_code) == (200, 409), waited.get_json()
    assert_error(waited, 409)
    with app.app_context(), tenant_scope(school):
        admins = db.session.scalars(
            select(User.id).where(User.role == "admin", User.is_active)
        ).all()
    assert admins == [first]


def test_a_bulk_demotion_racing_a_patch_leaves_one_admin(app, make_tenant, tmp_path):
    school = make_tenant()
    first, second = admin_id(app, school), add_user(app, school, "admin")
    one, other = headers_for(app, school, first), headers_for(app, school, second)
    users = [bulk_item(user_email(app, school, second), "student")]

    held, waited = staged_race(
        app,
        tmp_path,
        lambda worker: worker.test_client().post(BULK, json={"users": users}, headers=one),
        lambda worker: worker.test_client().patch(
            f"/api/v1/users/{first}", json={"role": "instructor"}, headers=other
        ),
        pause_after="INSERT INTO",
    )
    assert held.get_json() == {"created": 0, "updated": 1}
    assert_error(waited, 409)
    assert role_of(app, school, first) == "admin"
