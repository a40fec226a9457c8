"""POST /users/<id>/erase: no trace of the person, analytics unchanged, idempotent."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select, text

from lms_app.accounts.models import User
from lms_app.audit.models import AuditEvent
from lms_app.extensions import db
from lms_app.learning.models import Enrollment, LessonProgress, UserActivity
from lms_app.tenancy.context import tenant_scope
from tests.conftest import USER_PASSWORD, assert_error, tenant_headers
from tests.privacy_support import seed


@pytest.fixture
def school(app, client, make_tenant):
    return seed(app, client, make_tenant(), learners=2)


def erase(client, school, user_id, confirm):
    return client.post(
        f"/api/v1/users/{user_id}/erase", json={"confirm": confirm}, headers=school.admin
    )


def text_columns(app, schema):
    """(table, column) of every text-like or JSON column of the school's schema."""
    with app.app_context(), db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = :s AND (data_type IN ('text', 'character varying', "
                "'character', 'json', 'jsonb', 'tsvector') OR data_type = 'ARRAY')"
            ),
            {"s": schema},
        ).all()
    return [(r.table_name, r.column_name) for r in rows]


def occurrences(app, schema, needle):
    """Where `needle` occurs (case-insensitively) in any text or JSON column."""
    found = []
    with app.app_context(), db.engine.connect() as conn:
        for table, column in text_columns(app, schema):
            sql = text(
                f'SELECT count(*) FROM "{schema}"."{table}" '
                f'WHERE position(lower(:n) in lower("{column}"::text)) > 0'
            )
            if conn.execute(sql, {"n": needle}).scalar_one():
                found.append((table, column))
    return found


def figures(client, school):
    return {
        course: {
            k: v
            for k, v in client.get(f"/api/v1/analytics/courses/{course}", headers=school.admin)
            .get_json()
            .items()
            if k != "as_of"
        }
        for course in (school.course_id, school.other_course_id)
    }


def test_erasure_leaves_no_trace_of_the_person(app, client, school):
    me, other = school.learners
    schema = school.tenant.schema_name
    # The search finds them before: it would find them after.
    assert ("users", "email") in occurrences(app, schema, me.email)
    assert ("users", "name") in occurrences(app, schema, me.name)
    # Audited actions about them meanwhile: the trail must not copy their data either.
    client.get(f"/api/v1/analytics/users/{me.id}", headers=school.admin)
    client.get(f"/api/v1/users/{me.id}/export", headers=school.admin)

    r = erase(client, school, me.id, me.email.upper())  # e-mails compare case-blind
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"id": me.id, "erased": True}

    assert occurrences(app, schema, me.email) == []
    assert occurrences(app, schema, me.name) == []
    assert occurrences(app, schema, me.email.split("@")[0]) == []
    with app.app_context(), tenant_scope(school.tenant):
        row = db.session.get(User, me.id)
        assert row.password_hash is None and not row.is_active and row.erased_at is not None
        # Random, not derived from the id or the address: it points at nobody.
        assert re.fullmatch(r"erased-[0-9a-f]{24}@erased\.invalid", row.email), row.email
        assert (
            db.session.scalars(select(UserActivity.id).where(UserActivity.user_id == me.id)).all()
            == []
        )
        # The other learner is untouched.
        assert db.session.get(User, other.id).email == other.email
        assert len(
            db.session.scalars(
                select(UserActivity.id).where(UserActivity.user_id == other.id)
            ).all()
        ) == len(other.activity_ids)


def test_enrolments_and_progress_stay_so_analytics_add_up(app, client, school):
    me = school.learners[0]
    with app.app_context(), tenant_scope(school.tenant):
        counts = [
            len(db.session.scalars(select(m.id).where(m.user_id == me.id)).all())
            for m in (Enrollment, LessonProgress)
        ]
    before = figures(client, school)
    assert before[school.course_id]["enrolled"] == 2
    assert erase(client, school, me.id, me.email).status_code == 200
    # Analytics are cached for 15 minutes: a course write retires them, so the figures
    # below are computed afresh from the rows, not served from before.
    patch = client.patch(
        f"/api/v1/courses/{school.course_id}", json={"title": "Renamed"}, headers=school.admin
    )
    assert patch.status_code == 200
    after = figures(client, school)
    assert after == before
    with app.app_context(), tenant_scope(school.tenant):
        assert [
            len(db.session.scalars(select(m.id).where(m.user_id == me.id)).all())
            for m in (Enrollment, LessonProgress)
        ] == counts


def test_erased_user_cannot_log_in_and_old_tokens_fail(app, client, school):
    me = school.learners[0]
    login = client.post(
        "/api/v1/auth/token",
        json={"email": me.email, "password": USER_PASSWORD},
        headers=tenant_headers(school.tenant),
    )
    assert login.status_code == 200
    fresh = tenant_headers(school.tenant, login.get_json()["access_token"])
    assert client.get("/api/v1/me", headers=fresh).status_code == 200
    assert client.get("/api/v1/me", headers=me.headers).status_code == 200

    assert erase(client, school, me.id, me.email).status_code == 200

    for headers in (fresh, me.headers):
        assert_error(client.get("/api/v1/me", headers=headers), 401)
        assert_error(client.get(f"/api/v1/users/{me.id}/export", headers=headers), 401)
    r = client.post(
        "/api/v1/auth/token",
        json={"email": me.email, "password": USER_PASSWORD},
        headers=tenant_headers(school.tenant),
    )
    assert_error(r, 401)


def test_erased_user_is_gone_from_the_api(app, client, school):
    me = school.learners[0]
    assert erase(client, school, me.id, me.email).status_code == 200
    admin = school.admin
    assert_error(client.get(f"/api/v1/users/{me.id}", headers=admin), 404)
    assert_error(client.patch(f"/api/v1/users/{me.id}", json={"name": "X"}, headers=admin), 404)
    assert_error(client.get(f"/api/v1/users/{me.id}/export", headers=admin), 404)
    assert_error(client.get(f"/api/v1/analytics/users/{me.id}", headers=admin), 404)
    listed = client.get("/api/v1/users?limit=100", headers=admin).get_json()["items"]
    assert me.id not in {u["id"] for u in listed}
    students = client.get("/api/v1/users?role=student&limit=100", headers=admin).get_json()
    assert me.id not in {u["id"] for u in students["items"]}
    # Nobody can enrol the erased account again.
    r = client.post(
        f"/api/v1/courses/{school.course_id}/enrollments",
        json={"user_ids": [me.id]},
        headers=admin,
    )
    assert_error(r, 422)
    # A roster still counts the anonymous enrolment, named by the placeholder only.
    roster = client.get(
        f"/api/v1/courses/{school.course_id}/enrollments?limit=100", headers=admin
    ).get_json()["items"]
    mine = [row for row in roster if row["user"]["id"] == me.id]
    assert len(mine) == 1
    assert mine[0]["user"]["name"] == "Erased user"
    assert me.email not in str(roster) and me.name not in str(roster)
    # An import naming the placeholder does not bring the account back.
    placeholder = mine[0]["user"]["email"]
    r = client.post(
        "/api/v1/users/bulk",
        json={"users": [{"email": placeholder, "name": "Back Again", "role": "student"}]},
        headers=admin,
    )
    assert r.status_code == 200 and r.get_json() == {"created": 0, "updated": 0}
    with app.app_context(), tenant_scope(school.tenant):
        assert db.session.get(User, me.id).name == "Erased user"


def test_erasure_is_idempotent_and_audited(app, client, school):
    me = school.learners[1]
    first = erase(client, school, me.id, me.email)
    assert first.status_code == 200
    # The e-mail is gone: a retry with the same body, or any other confirm, answers
    # the same, and changes nothing.
    for confirm in (me.email, "whatever@example.test"):
        again = erase(client, school, me.id, confirm)
        assert again.status_code == 200 and again.get_json() == {"id": me.id, "erased": True}
    with app.app_context(), tenant_scope(school.tenant):
        events = db.session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "user.erase", AuditEvent.target_id == me.id
            )
        ).all()
    assert len(events) == 1
    assert events[0].actor_id == school.admin_id
    assert events[0].detail == {
        "activity_deleted": len(me.activity_ids),
        "enrollments_kept": 2,
        "progress_kept": 3,
    }


def test_bad_erasures_change_nothing(app, client, school):
    me = school.learners[0]
    body = assert_error(erase(client, school, me.id, "not-their@example.test"), 422)
    assert "confirm" in body["errors"]
    assert_error(erase(client, school, me.id, ""), 422)
    r = client.post(f"/api/v1/users/{me.id}/erase", json={}, headers=school.admin)
    assert_error(r, 422)
    assert_error(erase(client, school, 987654321, "x@example.test"), 404)
    assert_error(erase(client, school, school.admin_id, f"admin@{school.tenant.slug}.test"), 409)
    # Only admins erase; learners and instructors cannot, not even themselves.
    for headers in (me.headers, school.instructor):
        r = client.post(f"/api/v1/users/{me.id}/erase", json={"confirm": me.email}, headers=headers)
        assert_error(r, 403)
    with app.app_context(), tenant_scope(school.tenant):
        row = db.session.get(User, me.id)
        assert row.email == me.email and row.erased_at is None
        assert (
            db.session.scalar(
                select(AuditEvent.id).where(
                    AuditEvent.action == "user.erase", AuditEvent.target_id == me.id
                )
            )
            is None
        )
    assert client.get(f"/api/v1/users/{me.id}", headers=school.admin).status_code == 200
