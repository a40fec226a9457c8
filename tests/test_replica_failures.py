"""Replica failures the client must never see, and write positions that must never
be lost (issue 10, review findings). The "replica" here is a port nothing listens
on, which this process last saw healthy: the state right after a replica dies."""

from __future__ import annotations

import time

import pytest
from flask import g
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from lms_app.caching.safe import breaker
from lms_app.db import read_your_writes
from lms_app.db.reads import read
from lms_app.db.retry import retrying
from lms_app.extensions import db
from lms_app.tenancy.context import tenant_scope
from tests.conftest import dispose, make_app
from tests.servers import free_port
from tests.test_catalog_api import API, make_school, new_course, new_lesson


@pytest.fixture(scope="module")
def school(app, make_tenant):
    school = make_school(app, make_tenant())
    client = app.test_client()
    course = new_course(client, school.headers["instructor"], is_published=True)
    lesson = new_lesson(client, school.headers["instructor"], course["id"], is_published=True)
    r = client.post(f"{API}/courses/{course['id']}/enroll", headers=school.headers["student"])
    assert r.status_code == 201
    school.ids["course"], school.ids["lesson"] = course["id"], lesson["id"]
    return school


def dead_replica_app(database_url, redis_url, path, cache_prefix=None):
    """An app whose one replica died after its last (healthy) status check."""
    dead = make_url(database_url).set(port=free_port()).render_as_string(hide_password=False)
    made = make_app(
        database_url,
        redis_url,
        path,
        cache_prefix,
        database_replica_urls=(dead,),
        replica_check_s=60.0,
        replica_max_lag_s=2.0,
        replica_sticky_s=30.0,
    )
    replicas = made.extensions["lms_replicas"]
    (replica,) = replicas.replicas
    replica.up, replica.checked_at, replica.replay_lsn = True, time.monotonic(), 1 << 61
    replicas._settle()
    return made, replicas


@pytest.fixture
def dead(database_url, redis_url, tmp_path):
    made, replicas = dead_replica_app(database_url, redis_url, tmp_path)
    yield made, replicas
    dispose(made)


def test_a_prepared_read_on_a_replica_that_cannot_be_reached_is_run_on_the_primary(dead, school):
    app, replicas = dead
    r = app.test_client().get(
        f"{API}/courses/{school.ids['course']}/progress", headers=school.headers["student"]
    )
    assert r.status_code == 200, r.get_json()
    assert replicas.counts["primary_after_replica_error"] == 1
    assert not replicas.replicas[0].up and replicas.counts["replica_failures"] == 1


def test_a_session_read_on_a_replica_that_cannot_be_reached_is_run_on_the_primary(dead, school):
    app, replicas = dead
    r = app.test_client().get(f"{API}/users?limit=50", headers=school.headers["admin"])
    assert r.status_code == 200, r.get_json()
    assert replicas.counts["primary_after_replica_error"] == 1


def test_routing_state_never_carries_over_to_the_next_request(dead, school):
    """Requests sharing an app context (tests, scripts): each decides afresh."""
    app, replicas = dead
    client = app.test_client()
    with app.app_context():
        assert client.get(f"{API}/users", headers=school.headers["admin"]).status_code == 200
        assert replicas.counts["primary_after_replica_error"] == 1
        assert client.get(f"{API}/users", headers=school.headers["admin"]).status_code == 200
    # The second request chose again (the replica is out now), rather than inherit
    # the first one's fallback.
    assert replicas.counts["primary_no_healthy_replica"] == 1


def test_a_failed_status_check_does_not_make_a_primary_error_look_like_the_replicas(dead, school):
    app, replicas = dead
    replicas.check_s = 0.1
    replicas.replicas[0].checked_at = time.monotonic() - 10
    replicas._settle()
    runs = []

    def view():
        runs.append(1)
        read(select(1)).all()  # the routing decision: its status check fails
        db.session.execute(text("SELECT 1/0"))  # then an error on the primary

    with app.test_request_context("/x", method="GET"), tenant_scope(school.tenant):
        g.lms_read_only = True
        with pytest.raises(Exception, match="division by zero"):
            retrying(view)()
    assert len(runs) == 1  # not run again as if a replica had failed
    assert replicas.counts["primary_after_replica_error"] == 0


def test_a_write_whose_position_cannot_be_read_still_answers_and_reads_the_primary(
    dead, school, monkeypatch
):
    app, _ = dead
    # A real failure of the position's statement (standing for a pool timeout).
    monkeypatch.setattr(read_your_writes, "_CURRENT_LSN", text("SELECT 1/0"))
    client = app.test_client()
    path = f"{API}/courses/{school.ids['course']}"
    r = client.patch(path, json={"title": "Committed"}, headers=school.headers["instructor"])
    assert r.status_code == 200, r.get_json()
    assert client.get(path, headers=school.headers["admin"]).get_json()["title"] == "Committed"
    with app.test_request_context("/x"), tenant_scope(school.tenant):
        written = read_your_writes.written_lsn(school.tenant, school.ids["instructor"])
    assert written == read_your_writes.UNKNOWN  # so: the primary, for the whole window


def test_a_write_position_reaches_other_processes_while_the_writers_breaker_is_open(
    database_url, redis_url, tmp_path, school
):
    writer, _ = dead_replica_app(database_url, redis_url, tmp_path / "a")
    reader, _ = dead_replica_app(
        database_url, redis_url, tmp_path / "b", writer.config["CACHE_KEY_PREFIX"]
    )
    try:
        with writer.app_context():
            breaker().trip("get", TimeoutError("one slow GET a moment ago"))
        r = writer.test_client().put(
            f"{API}/lessons/{school.ids['lesson']}/progress",
            json={"progress_percentage": 10},
            headers=school.headers["student"],
        )
        assert r.status_code == 200, r.get_json()
        with reader.test_request_context("/x"), tenant_scope(school.tenant):
            seen = read_your_writes.written_lsn(school.tenant, school.ids["student"])
        assert seen > 0
    finally:
        dispose(writer, reader)
