"""Reads from a real streaming replica (issue 10): routing, read-your-writes, lag,
failover and tenancy, against a replica made with pg_basebackup for this module.

The replica is a copy of the whole test cluster, started on a spare port
(tests/streaming_replica.py). The apps here read from it with a short health check
interval, so a test does not wait long for what a process learns about it.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from flask import g
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from lms_app.caching.safe import breaker
from lms_app.db import routing
from lms_app.db.reads import read
from lms_app.extensions import db
from lms_app.tenancy.context import tenant_scope
from tests.conftest import (
    PLATFORM_HEADERS,
    add_user,
    dispose,
    headers_for,
    make_app,
    watching_statements,
)
from tests.streaming_replica import StreamingReplica
from tests.test_catalog_api import API, make_school, new_course, new_lesson

MAX_LAG_S = 2.0


@pytest.fixture(scope="module")
def replica(admin_database_url, database_url) -> Iterator[StreamingReplica]:
    made = StreamingReplica(admin_database_url, make_url(database_url).database)
    try:
        yield made.start()
    finally:
        made.destroy()


def replica_app(database_url, redis_url, path, replica, **settings):
    options = {
        "replica_check_s": 0.1,
        "replica_backoff_s": 0.3,
        "replica_max_lag_s": MAX_LAG_S,
        "replica_sticky_s": 30.0,
        **settings,
    }
    return make_app(database_url, redis_url, path, database_replica_urls=(replica.url,), **options)


@pytest.fixture(scope="module")
def app(database_url, redis_url, tmp_path_factory, replica):
    made = replica_app(database_url, redis_url, tmp_path_factory.mktemp("replicas"), replica)
    yield made
    dispose(made)


@pytest.fixture(scope="module")
def school(app, make_tenant, replica):
    school = make_school(app, make_tenant())
    client = app.test_client()
    owner = school.headers["instructor"]
    course = new_course(client, owner, is_published=True, title="Replicated")
    lessons = [new_lesson(client, owner, course["id"], is_published=True) for _ in range(2)]
    school.ids["course"] = course["id"]
    school.ids["lessons"] = [lesson["id"] for lesson in lessons]
    for role in ("student", "other_student"):
        if role == "other_student":
            school.ids[role] = add_user(app, school.tenant, "student")
            school.headers[role] = headers_for(app, school.tenant, school.ids[role])
        r = client.post(f"{API}/courses/{course['id']}/enroll", headers=school.headers[role])
        assert r.status_code == 201, r.get_json()
    replica.wait_caught_up()
    return school


_BACKGROUND = (".cache_generations", "pg_current_wal_lsn", "pg_is_in_recovery")


@contextlib.contextmanager
def servers_of(app) -> Iterator[Counter]:
    """Statements `app` sends inside the block, by server: "primary" or "replica"."""
    seen: Counter = Counter()
    with app.app_context():
        primary = list(db.engines.values())
    replicas = routing.replica_engines(app)
    kinds = {engine.pool: "primary" for engine in primary}
    kinds |= {engine.pool: "replica" for engine in replicas}

    def count(engine, statement: str) -> None:
        # Not counted: the generation snapshot (read from the primary once a second
        # at most) and the replicas' status checks (every REPLICA_CHECK_SECONDS).
        if not any(m in statement for m in _BACKGROUND):
            seen[kinds[engine.pool]] += 1

    with watching_statements([*primary, *replicas], count):
        yield seen


def caught_up(app, replica) -> None:
    """The replica has replayed everything, and `app` knows it (a process learns a
    replica's position at its next status check, every REPLICA_CHECK_SECONDS)."""
    replica.wait_caught_up()
    with app.app_context():
        app.extensions["lms_replicas"].refresh()


def routing_counts(app) -> Counter:
    with app.app_context():
        return Counter(app.extensions["lms_replicas"].counts)


def progress_of(client, school, role="student") -> dict:
    r = client.get(f"{API}/courses/{school.ids['course']}/progress", headers=school.headers[role])
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def put_progress(client, school, lesson_index: int, pct: int, role="student") -> None:
    lesson = school.ids["lessons"][lesson_index]
    r = client.put(
        f"{API}/lessons/{lesson}/progress",
        json={"progress_percentage": pct},
        headers=school.headers[role],
    )
    assert r.status_code == 200, r.get_json()


def wait_until(condition, timeout_s: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --- routing ---------------------------------------------------------------------


def test_a_read_only_request_reads_from_the_replica_and_a_write_from_the_primary(
    app, school, replica
):
    probe = select(func.pg_is_in_recovery(), func.inet_server_port())
    with app.test_request_context("/probe", method="GET"), tenant_scope(school.tenant):
        g.lms_read_only = True
        assert tuple(read(probe).one()) == (True, replica.port)
    with app.test_request_context("/probe", method="POST"), tenant_scope(school.tenant):
        g.lms_read_only = False
        in_recovery, port = read(probe).one()
        assert not in_recovery and port != replica.port


def test_api_reads_land_on_the_replica_and_writes_on_the_primary(app, school, replica):
    client = app.test_client()
    progress_of(client, school, "other_student")  # warm: auth state, generations
    with servers_of(app) as seen:
        progress_of(client, school, "other_student")
        r = client.get(f"{API}/me/courses", headers=school.headers["other_student"])
        assert r.status_code == 200
    assert seen["replica"] == 2 and seen["primary"] == 0, seen
    with servers_of(app) as seen:
        put_progress(client, school, 0, 10, role="other_student")
    assert seen["replica"] == 0 and seen["primary"] > 0, seen


def test_operators_see_each_replica_and_where_reads_went(app, school, replica):
    client = app.test_client()
    progress_of(client, school, "other_student")
    assert client.get("/platform/replicas").status_code == 401  # operators only
    r = client.get("/platform/replicas", headers=PLATFORM_HEADERS)
    assert r.status_code == 200
    body = r.get_json()
    (status,) = body["replicas"]
    assert status["name"] == f"127.0.0.1:{replica.port}/{make_url(replica.url).database}"
    assert status["up"] is True and status["lag_seconds"] <= MAX_LAG_S
    assert body["routing"][f"replica:{status['name']}"] >= 1
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'lms_replica_routing_total{{decision="replica:{status["name"]}"}}' in metrics
    assert f'lms_replica_lag_seconds{{replica="{status["name"]}"}}' in metrics


def test_no_replica_configured_reads_from_the_primary_read_pool(
    database_url, redis_url, tmp_path, school
):
    plain = make_app(database_url, redis_url, tmp_path)
    try:
        assert routing.replica_engines(plain) == []
        probe = select(func.pg_is_in_recovery())
        with plain.test_request_context("/probe"), tenant_scope(school.tenant):
            g.lms_read_only = True
            assert routing.read_engine() is db.engines["read"]
            assert read(probe).scalar_one() is False
    finally:
        dispose(plain)


# --- read-your-writes and lag ------------------------------------------------------


def test_a_write_is_read_back_at_once_while_the_replica_is_paused(app, school, replica):
    client = app.test_client()
    before = progress_of(client, school)
    caught_up(app, replica)  # earlier writes of the other learner are on the replica
    replica.pause_replay()
    try:
        put_progress(client, school, 1, 100)
        counts = routing_counts(app)
        after = progress_of(client, school)  # the writer: from the primary
        assert after["completed_lessons"] == before["completed_lessons"] + 1
        assert routing_counts(app)["primary_read_your_writes"] > counts["primary_read_your_writes"]

        # Another learner keeps reading from the paused replica, until it is too far
        # behind; then from the primary.
        with servers_of(app) as seen:
            progress_of(client, school, "other_student")
        assert seen["replica"] == 1, seen

        def other_reads_from_primary() -> bool:
            put_progress(client, school, 0, 50)  # the primary moves on meanwhile
            with servers_of(app) as seen:
                progress_of(client, school, "other_student")
            return seen["replica"] == 0

        started = time.monotonic()
        wait_until(other_reads_from_primary, what="the lag threshold")
        assert time.monotonic() - started >= MAX_LAG_S * 0.5
    finally:
        replica.resume_replay()
    replica.wait_caught_up()

    def back_on_replica() -> bool:
        with servers_of(app) as seen:
            progress_of(client, school, "other_student")
        return seen["replica"] == 1

    wait_until(back_on_replica, what="the replica to serve again")


def test_a_write_through_one_process_is_honoured_by_another(
    app, school, replica, database_url, redis_url, tmp_path
):
    """The write position travels through the shared cache, not process memory."""
    prefix = app.config["CACHE_KEY_PREFIX"]
    other = replica_app(database_url, redis_url, tmp_path, replica, cache_prefix=prefix)
    try:
        before = progress_of(other.test_client(), school)
        replica.wait_caught_up()
        replica.pause_replay()
        try:
            put_progress(app.test_client(), school, 0, 100)
            with servers_of(other) as seen:
                after = progress_of(other.test_client(), school)
            assert seen["replica"] == 0 and seen["primary"] >= 1, seen
            assert after["completed_lessons"] == before["completed_lessons"] + 1
            counts = routing_counts(other)
            assert counts["primary_read_your_writes"] == 1, counts
        finally:
            replica.resume_replay()
        replica.wait_caught_up()
    finally:
        dispose(other)


def test_without_the_shared_cache_a_user_reads_from_the_primary(app, school):
    """A write position that cannot be looked up may exist: never guess a replica."""
    client = app.test_client()
    progress_of(client, school, "other_student")
    with app.app_context():
        guard = breaker()
        guard.trip("test", RuntimeError("the cache is out"))
        try:
            with servers_of(app) as seen:
                progress_of(client, school, "other_student")
        finally:
            guard._open_until = 0.0
    assert seen["replica"] == 0 and seen["primary"] > 0, seen


def test_the_catalog_cache_and_overlay_stay_right_with_a_lagging_replica(app, school, replica):
    client = app.test_client()
    owner, learner = school.headers["instructor"], school.headers["other_student"]
    fresh = new_course(client, owner, is_published=True, title="Lag Before")
    replica.wait_caught_up()
    assert "Lag Before" in titles(client, learner)
    replica.pause_replay()
    try:
        r = client.patch(f"{API}/courses/{fresh['id']}", json={"title": "Lag After"}, headers=owner)
        assert r.status_code == 200
        # Another user: the page is filled from the primary, not the lagging replica.
        seen = titles(client, learner)
        assert "Lag After" in seen and "Lag Before" not in seen
        # The learner's own write shows in their overlay at once.
        r = client.post(f"{API}/courses/{fresh['id']}/enroll", headers=learner)
        assert r.status_code == 201
        item = next(c for c in catalog(client, learner) if c["id"] == fresh["id"])
        assert item["is_enrolled"] is True
    finally:
        replica.resume_replay()
    replica.wait_caught_up()


def catalog(client, headers) -> list[dict]:
    r = client.get(f"{API}/courses?limit=50", headers=headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()["items"]


def titles(client, headers) -> set[str]:
    return {c["title"] for c in catalog(client, headers)}


def test_two_schools_through_the_replica_stay_apart(app, make_tenant, school, replica):
    other = make_school(app, make_tenant())
    client = app.test_client()
    new_course(client, other.headers["instructor"], is_published=True, title="Other School")
    caught_up(app, replica)
    for student in (school.headers["student"], other.headers["student"]):
        titles(client, student)  # pages and auth states cached (filled from the primary)
    with servers_of(app) as seen:
        mine, theirs = (
            titles(client, school.headers["student"]),
            titles(client, other.headers["student"]),
        )
    assert seen == {"replica": 2}, seen  # each school's overlay, from the replica
    assert "Other School" in theirs and "Other School" not in mine
    assert "Replicated" in mine and "Replicated" not in theirs


# --- failures ---------------------------------------------------------------------


def test_a_stopped_replica_costs_the_client_nothing(
    database_url, redis_url, tmp_path, school, replica
):
    # A long check interval: the process still believes the replica is up when it
    # stops, so the first read fails on it and must be run again on the primary.
    own = replica_app(database_url, redis_url, tmp_path, replica, replica_check_s=60.0)
    client = own.test_client()
    try:
        with servers_of(own) as seen:
            progress_of(client, school, "other_student")
        assert seen["replica"] >= 1, seen
        users = f"{API}/users?limit=50"
        with servers_of(own) as seen:
            assert client.get(users, headers=school.headers["admin"]).status_code == 200
        assert seen["replica"] == 1, seen  # ORM objects through the Session
        replica.stop()
        try:
            # First a read through the Session (the view runs again on the primary),
            # then reads through lms_app.db.reads (the read runs again in place).
            r = client.get(users, headers=school.headers["admin"])
            assert r.status_code == 200, r.get_json()
            assert len(r.get_json()["items"]) == 5
            assert routing_counts(own)["primary_after_replica_error"] == 1
            roster = f"{API}/courses/{school.ids['course']}/enrollments"
            r = client.get(roster, headers=school.headers["instructor"])
            assert r.status_code == 200 and len(r.get_json()["items"]) == 2
            # Now a read through lms_app.db.reads meets the stopped replica (as if its
            # back-off had ended, on a connection of its own): it runs again in place.
            with own.app_context():
                replica_set = own.extensions["lms_replicas"]
                replica_set.replicas[0].up, replica_set.replicas[0].out_until = True, 0.0
                replica_set._settle()
            assert progress_of(client, school, "other_student")["course_id"]
            assert routing_counts(own)["primary_after_replica_error"] == 2
            for _ in range(3):
                assert progress_of(client, school, "other_student")["course_id"]
                r = client.get(f"{API}/me/courses", headers=school.headers["other_student"])
                assert r.status_code == 200
                assert (
                    client.get(f"{API}/courses", headers=school.headers["student"]).status_code
                    == 200
                )
            counts = routing_counts(own)
            assert counts["primary_after_replica_error"] >= 1
            assert counts["replica_failures"] >= 1
        finally:
            replica.restart()
        with own.app_context():
            replica_set = own.extensions["lms_replicas"]
            replica_set.check_s = 0.1
            replica_set.replicas[0].out_until = 0.0  # the back-off is tested on its own
            replica_set._settle()

        def back() -> bool:
            with servers_of(own) as seen:
                progress_of(client, school, "other_student")
            return seen["replica"] >= 1

        wait_until(back, what="reads to return to the restarted replica")
    finally:
        dispose(own)


def test_a_fresh_worker_learns_the_replicas_before_its_first_request(
    database_url, redis_url, tmp_path, replica
):
    from lms_app.observability.warmup import warm_up

    fresh = replica_app(database_url, redis_url, tmp_path, replica, replica_check_s=60.0)
    try:
        (status,) = fresh.extensions["lms_replicas"].replicas
        assert not status.up
        warm_up(fresh)  # what gunicorn's post_worker_init runs
        assert status.up and status.in_recovery and status.replay_lsn > 0
    finally:
        dispose(fresh)
