"""GET /users/<id>/export: everything held about one user, and nobody else's."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from lms_app.audit.models import AuditEvent
from lms_app.extensions import db
from lms_app.learning.models import Enrollment, LessonProgress, UserActivity
from lms_app.privacy import export as export_module
from lms_app.tenancy.context import tenant_scope
from tests.conftest import ADMIN_PASSWORD, add_user, assert_error, login
from tests.privacy_support import add_activity, seed


@pytest.fixture(scope="module")
def school(app, make_tenant):
    return seed(app, app.test_client(), make_tenant(), learners=2)


def ids_of(app, tenant, model, user_id):
    with app.app_context(), tenant_scope(tenant):
        return sorted(db.session.scalars(select(model.id).where(model.user_id == user_id)))


def export(client, user_id, headers):
    r = client.get(f"/api/v1/users/{user_id}/export", headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.mimetype == "application/json"
    return r, json.loads(r.get_data())


def test_export_holds_exactly_the_learners_rows(app, client, school):
    me, other = school.learners
    _, body = export(client, me.id, school.admin)
    assert set(body) == {"user", "enrollments", "progress", "activity"}
    assert body["user"] == {
        **body["user"],
        "id": me.id,
        "email": me.email,
        "name": me.name,
        "role": "student",
        "is_active": True,
    }
    assert set(body["user"]) == {
        "id",
        "email",
        "name",
        "role",
        "is_active",
        "created_at",
        "updated_at",
    }
    t = school.tenant
    for key, model in (
        ("enrollments", Enrollment),
        ("progress", LessonProgress),
        ("activity", UserActivity),
    ):
        mine = ids_of(app, t, model, me.id)
        theirs = set(ids_of(app, t, model, other.id))
        exported = sorted(row["id"] for row in body[key])
        assert exported == mine and mine, key
        assert not theirs & set(exported), key
    assert {e["course_id"] for e in body["enrollments"]} == {
        school.course_id,
        school.other_course_id,
    }
    assert all(e["course_title"] for e in body["enrollments"])
    completed = [p for p in body["progress"] if p["progress_percentage"] == 100]
    assert len(completed) == 1 and completed[0]["time_spent"] == 300
    assert sorted(a["id"] for a in body["activity"]) == me.activity_ids


def test_export_never_carries_secrets_or_other_learners(app, client, school):
    me, other = school.learners
    r, _ = export(client, me.id, school.admin)
    text = r.get_data(as_text=True)
    for secret in ("password", "scrypt", "token", "hash"):
        assert secret not in text.lower(), secret
    assert other.email not in text and other.name not in text
    assert r.headers["Cache-Control"] == "no-store"


def test_a_learner_exports_their_own_data(app, client, school):
    me = school.learners[0]
    _, body = export(client, me.id, me.headers)
    assert body["user"]["id"] == me.id


def test_who_may_export(app, client, school, make_tenant):
    me, other = school.learners
    url = f"/api/v1/users/{me.id}/export"
    assert_error(client.get(url, headers=other.headers), 403)
    assert_error(client.get(url, headers=school.instructor), 403)
    assert_error(client.get(url, headers={"X-Tenant": school.tenant.slug}), 401)
    assert_error(client.get("/api/v1/users/987654321/export", headers=school.admin), 404)
    # Another school's admin asking for this school's id: no such user there.
    elsewhere = make_tenant()
    foreign = login(client, elsewhere, f"admin@{elsewhere.slug}.test", ADMIN_PASSWORD)
    r = client.get(f"/api/v1/users/{me.id + 1000}/export", headers=foreign)
    assert_error(r, 404)
    # A token of this school sent to the other school: 401, as everywhere.
    assert_error(client.get(url, headers={**school.admin, "X-Tenant": elsewhere.slug}), 401)


def test_export_is_streamed_in_chunks(app, client, school, monkeypatch):
    """Rows arrive through a server-side cursor a few at a time: with 3 rows per fetch,
    40 activity rows come as 14 body pieces of their own, and still make valid JSON."""
    learner_id = add_user(app, school.tenant, "student")
    activity = add_activity(app, school.tenant, learner_id, school.course_id, 40)
    monkeypatch.setattr(export_module, "ROWS_PER_FETCH", 3)
    r = client.get(f"/api/v1/users/{learner_id}/export", headers=school.admin)
    assert r.status_code == 200 and r.is_streamed
    pieces = [piece for piece in r.response if piece]
    # user, 3 section openings, 14 activity pieces, 3 closings, the final brace.
    assert len(pieces) >= 14 + 8, len(pieces)
    body = json.loads(b"".join(pieces))
    assert sorted(a["id"] for a in body["activity"]) == activity
    assert body["enrollments"] == [] and body["progress"] == []


def test_export_is_audited_with_counts_and_request_id(app, client, school):
    me = school.learners[1]
    _, body = export(client, me.id, {**school.admin, "X-Request-ID": "export-req-1"})
    with app.app_context(), tenant_scope(school.tenant):
        event = db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "user.export", AuditEvent.target_id == me.id)
            .order_by(AuditEvent.id.desc())
        ).first()
    assert event is not None
    assert (event.actor_id, event.target_type, event.request_id) == (
        school.admin_id,
        "user",
        "export-req-1",
    )
    assert event.detail == {
        "stage": "completed",
        "enrollments": len(body["enrollments"]),
        "progress": len(body["progress"]),
        "activity": len(body["activity"]),
        "complete": True,
    }


def test_an_export_that_fails_mid_stream_is_in_the_trail(app, school):
    """Review finding: the database failing after data left recorded nothing. The
    started event is committed before the first byte, on its own."""
    me = school.learners[0]

    def stages() -> list[str]:
        with app.app_context(), tenant_scope(school.tenant):
            return list(
                db.session.scalars(
                    select(AuditEvent.detail["stage"].astext)
                    .where(AuditEvent.action == "user.export", AuditEvent.target_id == me.id)
                    .order_by(AuditEvent.id)
                )
            )

    before = stages()
    with app.test_request_context(), tenant_scope(school.tenant):
        export = export_module.UserExport.open(db.engine, school.tenant, me.id, school.admin_id)
    body = export.chunks()
    assert next(body).startswith(b'{"user":')  # personal data has left
    with pytest.raises(RuntimeError):
        body.throw(RuntimeError("the database failed mid-stream"))
    assert stages() == [*before, "started"]


def test_a_body_never_read_records_nothing(app, client, school):
    """HEAD: the export is opened and checked, but no data leaves: no event."""
    me = school.learners[0]
    with app.app_context(), tenant_scope(school.tenant):
        before = db.session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1))
    r = client.head(f"/api/v1/users/{me.id}/export", headers=school.admin)
    assert r.status_code == 200 and r.get_data() == b""
    r.close()
    with app.app_context(), tenant_scope(school.tenant):
        after = db.session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1))
    assert after == before


def test_export_is_documented(client):
    spec = client.get("/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/users/{user_id}/export"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/UserExport")
    assert {"401", "403", "404"} <= set(operation["responses"])
