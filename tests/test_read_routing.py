"""Read routing: plain SELECTs of GET requests go to the autocommit read engine;
writes, locks and everything after them in the same session stay on the primary."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from flask import Flask
from sqlalchemy import event, func, insert, select

from lms_app.catalog.models import Category, Course
from lms_app.db.engines import READ_BIND
from lms_app.extensions import db
from tests.conftest import make_app
from tests.test_catalog_api import API, make_school, new_course


@contextlib.contextmanager
def statements_by_engine(app: Flask) -> Iterator[dict[str, list[str]]]:
    seen: dict[str, list[str]] = {"primary": [], "read": []}
    with app.app_context():
        engines = {"primary": db.engines[None], "read": db.engines[READ_BIND]}
    listeners = {}
    for name, engine in engines.items():

        def on_execute(conn, cursor, statement, *args, _name=name):
            seen[_name].append(statement)

        listeners[name] = on_execute
        event.listen(engine, "before_cursor_execute", on_execute)
    try:
        yield seen
    finally:
        for name, engine in engines.items():
            event.remove(engine, "before_cursor_execute", listeners[name])


def test_get_reads_use_the_read_engine(app, client, make_tenant):
    school = make_school(app, make_tenant())
    course = new_course(client, school.headers["instructor"], is_published=True)
    with statements_by_engine(app) as seen:
        r = client.get(f"{API}/courses/{course['id']}", headers=school.headers["student"])
    assert r.status_code == 200
    assert seen["read"] and not seen["primary"], seen


def test_writes_and_their_reads_use_the_primary(app, client, make_tenant):
    school = make_school(app, make_tenant())
    course = new_course(client, school.headers["instructor"], is_published=True)
    with statements_by_engine(app) as seen:
        r = client.patch(
            f"{API}/courses/{course['id']}",
            json={"title": "Renamed"},
            headers=school.headers["admin"],
        )
    assert r.status_code == 200
    assert seen["primary"] and not seen["read"], seen


def test_read_engine_is_autocommit_and_primary_is_not(app):
    with app.app_context():
        with db.engines[READ_BIND].connect() as conn:
            assert conn.connection.dbapi_connection.autocommit is True
        with db.engine.connect() as conn:
            assert conn.connection.dbapi_connection.autocommit is False


def test_a_get_that_locks_or_writes_stays_on_the_primary(
    make_tenant, database_url, redis_url, tmp_path
):
    """Routing looks at the statement and the session, not at SQL text: FOR UPDATE and
    DML go to the primary, and so does every later read of that session."""
    app = make_app(database_url, redis_url, tmp_path)
    tenant = make_tenant()

    @app.get("/test-routing/<kind>")
    def routed(kind: str):
        from lms_app.tenancy.context import tenant_scope

        with tenant_scope(tenant):
            new_category = insert(Category).values(name="Routed", slug=f"routed-{kind}")
            if kind == "lock":
                db.session.execute(select(Course.id).with_for_update())
            elif kind == "write":
                db.session.execute(new_category)
            elif kind == "writing cte":
                written = new_category.returning(Category.id).cte("written")
                db.session.execute(select(written.c.id))
            else:  # a SELECT whose function writes or locks, marked by its author
                lock = select(func.pg_advisory_xact_lock(42)).execution_options(lms_primary=True)
                db.session.execute(lock)
            db.session.execute(select(Course.id))  # after the lock or write
            db.session.rollback()
        return {"ok": True}

    client = app.test_client()
    for kind in ("lock", "write", "writing cte", "marked"):
        with statements_by_engine(app) as seen:
            assert client.get(f"/test-routing/{kind}").status_code == 200
        assert len(seen["primary"]) == 2 and not seen["read"], (kind, seen)
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def test_the_read_helper_routes_as_the_session_does(make_tenant, database_url, redis_url, tmp_path):
    """lms_app.db.reads.read skips the Session for reads the Session would send to
    the read engine, and only those: after a write in the same request it goes
    through the Session to the primary, like every other statement."""
    from lms_app.db.reads import read

    app = make_app(database_url, redis_url, tmp_path)
    tenant = make_tenant()

    @app.get("/test-read-helper/<kind>")
    def routed(kind: str):
        from lms_app.tenancy.context import tenant_scope

        with tenant_scope(tenant):
            if kind == "after a write":
                db.session.execute(insert(Category).values(name="Helper", slug="helper-cat"))
            read(select(Course.id)).all()
            read(select(Category.id)).all()
            if kind == "locking":
                read(select(Course.id).with_for_update()).all()
            db.session.rollback()
        return {"ok": True}

    client = app.test_client()
    expected = {"plain": (0, 2), "after a write": (3, 0), "locking": (1, 2)}
    for kind, (on_primary, on_reader) in expected.items():
        with statements_by_engine(app) as seen:
            assert client.get(f"/test-read-helper/{kind}").status_code == 200
        assert (len(seen["primary"]), len(seen["read"])) == (on_primary, on_reader), (kind, seen)
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def test_requests_sharing_an_app_context_read_their_own_tenant(app, client, make_tenant):
    """Found in review: a read connection kept on `g` for the request outlived it when
    several requests ran in one app context (tests, scripts), and the second school's
    request read, and cached, the first school's course. Reads now take a connection
    per statement; the same for the read-only flag, set on every request."""
    first, second = make_school(app, make_tenant()), make_school(app, make_tenant())
    mine = new_course(client, first.headers["instructor"], is_published=True, title="First's")
    theirs = new_course(client, second.headers["instructor"], is_published=True, title="Second's")
    assert mine["id"] == theirs["id"]  # both schools start their ids at 1
    with app.app_context():
        for school, title in ((first, "First's"), (second, "Second's")):
            r = client.get(f"{API}/courses/{mine['id']}", headers=school.headers["student"])
            assert r.status_code == 200 and r.get_json()["title"] == title
        # and a write after those reads still writes
        r = client.patch(
            f"{API}/courses/{mine['id']}", json={"title": "Renamed"}, headers=first.headers["admin"]
        )
        assert r.status_code == 200
        r = client.get(f"{API}/courses/{mine['id']}", headers=first.headers["student"])
        assert r.get_json()["title"] == "Renamed"


def test_a_get_mixing_the_read_helper_and_the_session_holds_one_read_connection(
    app, client, make_tenant
):
    """Found in review: a GET that reads through both held two read-pool connections
    at once (a pool deadlock under threads at the pool's size)."""
    school = make_school(app, make_tenant())
    course = new_course(client, school.headers["instructor"], is_published=True)
    with app.app_context():
        pool = db.engines[READ_BIND].pool
    most = [0]
    real_checkout = pool._do_get

    def counting_checkout():
        connection = real_checkout()
        most[0] = max(most[0], pool.checkedout())
        return connection

    pool._do_get = counting_checkout
    try:
        url = f"{API}/courses/{course['id']}/enrollments"
        assert client.get(url, headers=school.headers["admin"]).status_code == 200
    finally:
        del pool._do_get
    assert most[0] == 1
