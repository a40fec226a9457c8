"""Hot reads run as server-side prepared statements (lms_app.db.prepared).

The answers must be the same as on SQLAlchemy's own path, each pooled connection
must keep a bounded set of plans, and whatever the server does to a connection (a
pooler's reset, a statement timeout, a killed backend) must look to the app exactly
as it does on the ordinary path.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import exc, func, select

from lms_app.db import prepared
from lms_app.db.engines import READ_BIND, for_schema
from lms_app.extensions import db
from lms_app.learning import queries as learning
from tests.conftest import another_process
from tests.test_catalog_api import API, make_school, new_course, new_lesson

pytestmark = pytest.mark.usefixtures("app")


@pytest.fixture(scope="module")
def school(app, make_tenant):
    return make_school(app, make_tenant())


@pytest.fixture(scope="module")
def course(app, school):
    client = app.test_client()
    owner, student = school.headers["instructor"], school.headers["student"]
    course = new_course(client, owner, is_published=True)
    lessons = [new_lesson(client, owner, course["id"], is_published=True) for _ in range(3)]
    assert client.post(f"{API}/courses/{course['id']}/enroll", headers=student).status_code == 201
    for lesson, pct in zip(lessons, (100, 40, 100), strict=True):
        r = client.put(
            f"{API}/lessons/{lesson['id']}/progress",
            json={"progress_percentage": pct, "time_spent": 30},
            headers=student,
        )
        assert r.status_code == 200, r.get_json()
    return {**course, "lessons": lessons}


def _reads(app, school, course) -> list:
    client = app.test_client()
    student = school.headers["student"]
    paths = [
        f"{API}/courses/{course['id']}/progress",
        f"{API}/me/courses",
        f"{API}/me/courses?limit=1",
        f"{API}/lessons/{course['lessons'][1]['id']}",
        f"{API}/courses?limit=5",
    ]
    out = []
    for path in paths:
        r = client.get(path, headers=student)
        assert r.status_code == 200, (path, r.get_json())
        out.append(r.get_json())
    return out


def test_prepared_and_ordinary_paths_answer_the_same(app, school, course, tmp_path):
    assert app.config["LMS_SETTINGS"].pool.prepared_statements  # the default
    pool = replace(app.config["LMS_SETTINGS"].pool, prepared_statements=False)
    with another_process(app, tmp_path, pool=pool) as ordinary:
        expected = _reads(ordinary, school, course)
    got = _reads(app, school, course)
    assert got == expected
    progress = got[0]
    assert (progress["completed_lessons"], progress["progress_percentage"]) == (2, 66.67)


def _statements_on(cursor) -> set[str]:
    cursor.execute("SELECT name FROM pg_prepared_statements")
    return {name for (name,) in cursor.fetchall()}


def _course_progress(engine, fairy, school, course):
    text = prepared._text_for(engine, learning.COURSE_PROGRESS, school.tenant.schema_name)
    rows = prepared._execute(engine, fairy, text, (school.ids["student"], course["id"]))
    return text, rows


def test_a_statement_is_prepared_once_per_connection(app, school, course):
    with app.app_context():
        engine = for_schema(db.engines[READ_BIND], school.tenant.schema_name)
        fairy = engine.raw_connection()
        try:
            text, first = _course_progress(engine, fairy, school, course)
            cursor = fairy.cursor()
            assert text.name in _statements_on(cursor)
            cursor.execute(
                "SELECT count(*) FROM pg_prepared_statements WHERE name = %s", (text.name,)
            )
            assert cursor.fetchone()[0] == 1
            _, again = _course_progress(engine, fairy, school, course)
            assert again == first and first[0][0] == course["id"]
            assert list(fairy.info[prepared._NAMES]).count(text.name) == 1
        finally:
            fairy.close()


def test_a_connection_whose_statements_were_dropped_prepares_again(app, school, course):
    """A pooler's DEALLOCATE ALL, or a lost record of what was prepared: the read
    still answers (26000 prepares again; 42P05 means the server has it)."""
    with app.app_context():
        engine = for_schema(db.engines[READ_BIND], school.tenant.schema_name)
        fairy = engine.raw_connection()
        try:
            text, first = _course_progress(engine, fairy, school, course)
            fairy.cursor().execute("DEALLOCATE ALL")
            assert _course_progress(engine, fairy, school, course)[1] == first
            fairy.info[prepared._NAMES].clear()  # the server still has it
            assert _course_progress(engine, fairy, school, course)[1] == first
            assert text.name in _statements_on(fairy.cursor())
        finally:
            fairy.close()


def test_each_connection_keeps_a_bounded_set_of_plans(app, school, course, monkeypatch):
    monkeypatch.setattr(prepared, "PREPARED_PER_CONNECTION", 2)
    statements = [prepared.prepare(select(func.abs(i)), f"bounded_{i}") for i in range(4)]
    with app.app_context():
        engine = for_schema(db.engines[READ_BIND], school.tenant.schema_name)
        fairy = engine.raw_connection()
        try:
            names = []
            for i, stmt in enumerate(statements):
                text = prepared._text_for(engine, stmt, school.tenant.schema_name)
                names.append(text.name)
                assert prepared._execute(engine, fairy, text, ()) == [(i,)]
            on_server = _statements_on(fairy.cursor())
            assert set(names[-2:]) <= on_server
            assert not set(names[:2]) & on_server
        finally:
            fairy.close()


def test_a_statement_timeout_is_raised_as_sqlalchemy_raises_it(app, school):
    slow = prepared.prepare(select(func.pg_sleep(1)), "sleeps")
    with app.app_context():
        engine = for_schema(db.engines[READ_BIND], school.tenant.schema_name)
        fairy = engine.raw_connection()
        try:
            fairy.cursor().execute("SET statement_timeout = 50")
            text = prepared._text_for(engine, slow, school.tenant.schema_name)
            with pytest.raises(exc.OperationalError) as raised:
                prepared._execute(engine, fairy, text, ())
            assert raised.value.orig.pgcode == "57014"
            assert not raised.value.connection_invalidated
            fairy.cursor().execute("RESET statement_timeout")
        finally:
            fairy.close()


def test_a_killed_backend_invalidates_the_connection_and_the_next_read_works(app, school, course):
    student = school.headers["student"]
    client = app.test_client()
    path = f"{API}/courses/{course['id']}/progress"
    assert client.get(path, headers=student).status_code == 200
    with app.app_context():
        engine = for_schema(db.engines[READ_BIND], school.tenant.schema_name)
        fairy = engine.raw_connection()
        pid = fairy.dbapi_connection.get_backend_pid()
        with db.engine.connect() as admin:
            admin.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
        try:
            text = prepared._text_for(engine, learning.COURSE_PROGRESS, school.tenant.schema_name)
            with pytest.raises(exc.DBAPIError) as raised:
                prepared._execute(engine, fairy, text, (school.ids["student"], course["id"]))
            assert raised.value.connection_invalidated
        finally:
            fairy.close()
    assert client.get(path, headers=student).status_code == 200


def test_only_plain_reads_may_be_prepared():
    from lms_app.learning.models import Enrollment

    with pytest.raises(ValueError, match="plain reads"):
        prepared.prepare(select(Enrollment.id).with_for_update(), "locks")
