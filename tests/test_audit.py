"""The audit trail: written with each audited action, listed for admins, scoped to its
school, impossible to change or delete (but for retention), pruned by the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.engine import make_url

from config.settings import AUDIT_RETENTION_FLOOR_DAYS, Settings, SettingsError
from lms_app.audit.models import AuditEvent
from lms_app.extensions import db
from lms_app.tenancy.context import tenant_scope
from tests.conftest import ADMIN_PASSWORD, assert_error, login
from tests.privacy_support import seed


@pytest.fixture(scope="module")
def school(app, make_tenant):
    return seed(app, app.test_client(), make_tenant(), learners=2)


def events(app, tenant, **where):
    with app.app_context(), tenant_scope(tenant):
        stmt = select(AuditEvent).order_by(AuditEvent.id)
        for name, value in where.items():
            stmt = stmt.where(getattr(AuditEvent, name) == value)
        return db.session.scalars(stmt).all()


def last_event(app, tenant, **where):
    found = events(app, tenant, **where)
    assert found, where
    return found[-1]


def request_id_of(response):
    return response.headers["X-Request-ID"]


# --- written with each action ---------------------------------------------------------


def test_user_changes_are_audited(app, client, school):
    admin = school.admin
    r = client.post(
        "/api/v1/users",
        json={
            "email": f"audited.person@{school.tenant.slug}.test",
            "name": "Audited Person",
            "role": "student",
            "password": "a-long-password-1",
        },
        headers=admin,
    )
    assert r.status_code == 201
    uid = r.get_json()["id"]
    created = last_event(app, school.tenant, action="user.create", target_id=uid)
    assert (created.actor_id, created.target_type, created.detail) == (
        school.admin_id,
        "user",
        {"role": "student"},
    )
    assert created.request_id == request_id_of(r)

    r = client.patch(
        f"/api/v1/users/{uid}",
        json={"name": "Renamed Person", "role": "instructor", "is_active": False},
        headers=admin,
    )
    assert r.status_code == 200
    written = events(app, school.tenant, target_id=uid, request_id=request_id_of(r))
    assert {(e.action, json.dumps(e.detail, sort_keys=True)) for e in written} == {
        ("user.update", '{"fields": ["name"]}'),
        ("user.role_change", '{"from": "student", "to": "instructor"}'),
        ("user.deactivate", "{}"),
    }
    r = client.patch(f"/api/v1/users/{uid}", json={"is_active": True}, headers=admin)
    assert last_event(app, school.tenant, target_id=uid).action == "user.reactivate"


def test_bulk_import_is_audited_per_user_with_role_changes(app, client, school):
    domain = f"bulk.{school.tenant.slug}.test"
    users = [{"email": f"b{i}@{domain}", "name": f"Bulk {i}", "role": "student"} for i in range(3)]
    r = client.post("/api/v1/users/bulk", json={"users": users}, headers=school.admin)
    assert r.get_json() == {"created": 3, "updated": 0}
    first = events(app, school.tenant, request_id=request_id_of(r))
    assert sorted(e.action for e in first) == ["user.bulk_upsert"] + ["user.create"] * 3
    summary = next(e for e in first if e.action == "user.bulk_upsert")
    assert summary.detail == {"created": 3, "updated": 0} and summary.target_id is None

    users[1]["role"] = "instructor"
    r = client.post("/api/v1/users/bulk", json={"users": users}, headers=school.admin)
    assert r.get_json() == {"created": 0, "updated": 3}
    second = events(app, school.tenant, request_id=request_id_of(r))
    assert sorted(e.action for e in second) == [
        "user.bulk_upsert",
        "user.role_change",
        *["user.update"] * 3,
    ]
    change = next(e for e in second if e.action == "user.role_change")
    assert change.detail == {"from": "student", "to": "instructor", "via": "bulk"}
    assert all(e.actor_id == school.admin_id for e in second)


def test_course_actions_and_staff_reads_are_audited(app, client, school):
    learner = school.learners[0]
    course = school.course_id
    instructor = school.instructor

    r = client.get(f"/api/v1/courses/{course}/enrollments", headers=instructor)
    assert r.status_code == 200
    roster = last_event(app, school.tenant, action="course.roster_read")
    assert (roster.actor_id, roster.target_type, roster.target_id) == (
        school.instructor_id,
        "course",
        course,
    )
    assert roster.request_id == request_id_of(r)

    r = client.get(f"/api/v1/courses/{course}/progress?user_id={learner.id}", headers=instructor)
    assert r.status_code == 200
    read = last_event(app, school.tenant, action="user.progress_read")
    assert (read.actor_id, read.target_id, read.detail) == (
        school.instructor_id,
        learner.id,
        {"course_id": course},
    )
    # A learner's own reads are not staff reads: no event.
    before = len(events(app, school.tenant))
    assert client.get(f"/api/v1/courses/{course}/progress", headers=learner.headers).status_code
    assert client.get(f"/api/v1/analytics/users/{learner.id}", headers=learner.headers)
    assert len(events(app, school.tenant)) == before

    r = client.get(f"/api/v1/analytics/users/{learner.id}", headers=school.admin)
    assert r.status_code == 200
    read = last_event(app, school.tenant, action="user.analytics_read")
    assert (read.actor_id, read.target_id) == (school.admin_id, learner.id)
    # A refused read leaves no event (its transaction rolled back).
    assert_error(client.get("/api/v1/analytics/users/987654321", headers=school.admin), 404)
    assert not events(app, school.tenant, target_id=987654321)

    extra = add_learner_ids(app, school)
    r = client.post(
        f"/api/v1/courses/{course}/enrollments", json={"user_ids": extra}, headers=school.admin
    )
    assert r.status_code == 200
    bulk = last_event(app, school.tenant, action="enrollment.bulk")
    assert (bulk.target_type, bulk.target_id, bulk.detail) == (
        "course",
        course,
        {"requested": 2, "enrolled": 2, "already_enrolled": 0},
    )

    assert client.delete(f"/api/v1/courses/{school.other_course_id}", headers=instructor)
    archived = last_event(app, school.tenant, action="course.archive")
    assert (archived.actor_id, archived.target_id) == (
        school.instructor_id,
        school.other_course_id,
    )


def add_learner_ids(app, school):
    from tests.conftest import add_user

    return [add_user(app, school.tenant, "student") for _ in range(2)]


def test_details_carry_no_personal_data(app, client, school):
    for learner in school.learners:
        client.get(f"/api/v1/analytics/users/{learner.id}", headers=school.admin)
        client.get(f"/api/v1/users/{learner.id}/export", headers=school.admin)
        client.patch(f"/api/v1/users/{learner.id}", json={"name": "New Name"}, headers=school.admin)
    everything = events(app, school.tenant)
    assert len(everything) >= 6
    dumped = json.dumps([e.detail for e in everything]).lower()
    for learner in school.learners:
        assert learner.email.lower() not in dumped and learner.name.lower() not in dumped
    assert "@" not in dumped and "password" not in dumped


# --- GET /audit -----------------------------------------------------------------------


def test_audit_list_newest_first_with_keyset_pages(app, client, school):
    client.get(f"/api/v1/courses/{school.course_id}/enrollments", headers=school.admin)
    newest_first = sorted(events(app, school.tenant), key=lambda e: (e.created_at, e.id))[::-1]
    expected = [e.id for e in newest_first]
    seen, cursor = [], None
    while True:
        url = "/api/v1/audit?limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=school.admin).get_json()
        assert len(body["items"]) <= 3
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    item = client.get("/api/v1/audit?limit=1", headers=school.admin).get_json()["items"][0]
    assert set(item) == {
        "id",
        "actor_id",
        "action",
        "target_type",
        "target_id",
        "request_id",
        "created_at",
        "detail",
    }
    assert item["action"] == "course.roster_read"


def test_audit_list_filters(app, client, school):
    learner = school.learners[1]
    client.get(f"/api/v1/analytics/users/{learner.id}", headers=school.admin)
    client.get(f"/api/v1/courses/{school.course_id}/enrollments", headers=school.instructor)
    url = "/api/v1/audit?limit=100"
    for query, check in (
        ("&action=user.analytics_read", lambda e: e["action"] == "user.analytics_read"),
        (f"&actor_id={school.admin_id}", lambda e: e["actor_id"] == school.admin_id),
        ("&target_type=course", lambda e: e["target_type"] == "course"),
        (
            f"&target_type=user&target_id={learner.id}",
            lambda e: e["target_type"] == "user" and e["target_id"] == learner.id,
        ),
    ):
        r = client.get(url + query, headers=school.admin)
        assert r.status_code == 200, (query, r.get_json())
        items = r.get_json()["items"]
        assert items and all(check(e) for e in items), query
    everything = client.get(url, headers=school.admin).get_json()["items"]
    by_actor = client.get(f"{url}&actor_id={school.instructor_id}", headers=school.admin)
    assert {e["id"] for e in by_actor.get_json()["items"]} == {
        e["id"] for e in everything if e["actor_id"] == school.instructor_id
    }
    assert_error(client.get(f"{url}&action=user.nonsense", headers=school.admin), 422)
    assert_error(client.get(f"{url}&target_type=planet", headers=school.admin), 422)
    assert_error(client.get(f"{url}&target_id=0", headers=school.admin), 422)
    assert_error(client.get(f"{url}&cursor=garbage", headers=school.admin), 422)


def test_audit_is_for_admins_and_scoped_to_the_school(app, client, school, make_tenant):
    assert_error(client.get("/api/v1/audit", headers=school.instructor), 403)
    assert_error(client.get("/api/v1/audit", headers=school.learners[0].headers), 403)
    assert_error(client.get("/api/v1/audit", headers={"X-Tenant": school.tenant.slug}), 401)
    elsewhere = make_tenant()
    foreign = login(client, elsewhere, f"admin@{elsewhere.slug}.test", ADMIN_PASSWORD)
    body = client.get("/api/v1/audit?limit=100", headers=foreign).get_json()
    assert body == {"items": [], "next_cursor": None}
    # Their token with this school's header: 401, never this school's trail.
    crossed = {**foreign, "X-Tenant": school.tenant.slug}
    assert_error(client.get("/api/v1/audit", headers=crossed), 401)
    assert events(app, school.tenant)


# --- append-only ----------------------------------------------------------------------


REFUSED = "append-only"


def test_rows_cannot_be_changed_through_the_apps_connection(app, school):
    with app.app_context(), tenant_scope(school.tenant):
        target = db.session.scalar(select(AuditEvent.id).limit(1))
        for stmt in (
            update(AuditEvent).where(AuditEvent.id == target).values(action="user.create"),
            delete(AuditEvent).where(AuditEvent.id == target),
            delete(AuditEvent),
        ):
            with pytest.raises(Exception, match=REFUSED):
                db.session.execute(stmt)
            db.session.rollback()
        # Asking for a retention of 0 days does not make a recent row deletable.
        db.session.execute(select(text("set_config('lms.audit_retention_days', '0', true)")))
        with pytest.raises(Exception, match=REFUSED):
            db.session.execute(delete(AuditEvent).where(AuditEvent.id == target))
        db.session.rollback()
        with pytest.raises(Exception, match=REFUSED):
            db.session.execute(text(f"TRUNCATE {school.tenant.schema_name}.audit_events"))
        db.session.rollback()
        assert db.session.get(AuditEvent, target) is not None


def test_rows_cannot_be_changed_by_a_superuser(app, school, database_url):
    schema = school.tenant.schema_name
    url = make_url(database_url).set(drivername="postgresql")
    conn = psycopg2.connect(url.render_as_string(hide_password=False))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            assert cur.fetchone()[0] is True  # the point of the test
        conn.rollback()
        for replica_role in (False, True):
            for sql in (
                f"UPDATE {schema}.audit_events SET detail = '{{}}'",
                f"DELETE FROM {schema}.audit_events",
                f"TRUNCATE {schema}.audit_events",
                # Even with a retention asked for, recent rows stay.
                f"SELECT set_config('lms.audit_retention_days', '0', true); "
                f"DELETE FROM {schema}.audit_events",
            ):
                with conn.cursor() as cur:
                    if replica_role:
                        # Switches ordinary triggers off; these are ENABLE ALWAYS.
                        cur.execute("SET LOCAL session_replication_role = replica")
                    with pytest.raises(psycopg2.Error, match=REFUSED):
                        cur.execute(sql)
                conn.rollback()
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {schema}.audit_events")
            assert cur.fetchone()[0] > 0
    finally:
        conn.close()


# --- retention --------------------------------------------------------------------------


def test_prune_deletes_only_rows_past_retention(app, make_tenant):
    tenant = make_tenant()
    now = datetime.now(UTC)
    ages = {"old": 400, "month_and_half": 45, "recent": 10}
    with app.app_context(), tenant_scope(tenant):
        for label, days in ages.items():
            db.session.execute(
                insert(AuditEvent).values(
                    action="user.create",
                    target_type="user",
                    target_id=days,
                    created_at=now - timedelta(days=days),
                    detail={"label": label},
                )
            )
        db.session.commit()
    runner = app.test_cli_runner()

    result = runner.invoke(args=["audit", "prune", "--tenant", tenant.slug])
    assert result.exit_code == 0, result.output
    assert "pruned 1 audit event(s) older than 365 days in 1 school(s), 0 failed" in result.output
    assert sorted(e.target_id for e in events(app, tenant, action="user.create")) == [10, 45]

    result = runner.invoke(
        args=["audit", "prune", "--tenant", tenant.slug, "--retention-days", "30"]
    )
    assert result.exit_code == 0, result.output
    assert [e.target_id for e in events(app, tenant, action="user.create")] == [10]
    pruned = events(app, tenant, action="audit.prune")
    assert [e.detail for e in pruned] == [
        {"deleted": 1, "retention_days": 365},
        {"deleted": 1, "retention_days": 30},
    ]
    assert all(e.actor_id is None and e.target_type == "audit" for e in pruned)

    # Below the floor compiled into the trigger: refused before anything runs.
    result = runner.invoke(args=["audit", "prune", "--retention-days", "5"])
    assert result.exit_code != 0 and "5" in result.output
    assert [e.target_id for e in events(app, tenant, action="user.create")] == [10]
    result = runner.invoke(args=["audit", "prune", "--tenant", "no_such_school"])
    assert result.exit_code != 0 and "no tenant" in result.output


def test_retention_setting_is_validated():
    assert Settings.from_env({}).audit_retention_days == 365
    assert Settings.from_env({"AUDIT_RETENTION_DAYS": "730"}).audit_retention_days == 730
    floor = str(AUDIT_RETENTION_FLOOR_DAYS)
    assert Settings.from_env({"AUDIT_RETENTION_DAYS": floor}).audit_retention_days == 30
    for bad in ("29", "0", "-5", "a year"):
        with pytest.raises(SettingsError, match="AUDIT_RETENTION_DAYS"):
            Settings.from_env({"AUDIT_RETENTION_DAYS": bad})
