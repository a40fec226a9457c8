"""Courses and lessons carry an ETag (their version, lms_app.web.etags); writes with
If-Match happen only on that version, so two editors never silently overwrite each
other (issue 12)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select, text

from lms_app.catalog.models import Course, Lesson
from lms_app.extensions import db
from lms_app.tenancy.context import tenant_scope
from tests.conftest import assert_error
from tests.test_catalog_api import API, course_row, make_school, new_course, new_lesson


@pytest.fixture(scope="module")
def school(app, make_tenant):
    return make_school(app, make_tenant())


def etag_of(response) -> str:
    tag = response.headers.get("ETag")
    assert tag and tag.startswith('"v') and tag.endswith('"'), tag
    return tag


def lesson_fields(app, school, lesson_id: int) -> dict:
    with app.app_context(), tenant_scope(school.tenant):
        row = db.session.execute(
            select(Lesson.title, Lesson.content, Lesson.is_published, Lesson.version).where(
                Lesson.id == lesson_id
            )
        ).one()
        return row._asdict()


def test_reads_and_writes_carry_the_version_as_etag(client, school):
    staff = school.headers["instructor"]
    created = client.post(f"{API}/courses", json={"title": "Tagged"}, headers=staff)
    assert created.status_code == 201 and etag_of(created) == '"v1"'
    url = f"{API}/courses/{created.get_json()['id']}"
    assert etag_of(client.get(url, headers=staff)) == '"v1"'

    patched = client.patch(url, json={"title": "Tagged again"}, headers=staff)
    assert patched.status_code == 200 and etag_of(patched) == '"v2"'
    # The cached detail was retired by the write: the new version is what GET says.
    assert etag_of(client.get(url, headers=staff)) == '"v2"'
    # A PATCH that changes nothing writes nothing: the version stays.
    same = client.patch(url, json={"title": "Tagged again"}, headers=staff)
    assert same.status_code == 200 and etag_of(same) == '"v2"'

    lesson = client.post(f"{url}/lessons", json={"title": "L"}, headers=staff)
    assert lesson.status_code == 201 and etag_of(lesson) == '"v1"'
    lesson_url = f"{API}/lessons/{lesson.get_json()['id']}"
    assert etag_of(client.get(lesson_url, headers=staff)) == '"v1"'
    edited = client.patch(lesson_url, json={"content": "text"}, headers=staff)
    assert etag_of(edited) == '"v2"'
    assert etag_of(client.get(lesson_url, headers=staff)) == '"v2"'
    # Adding a lesson recounts the course's lessons but is not an edit of the course.
    assert etag_of(client.get(url, headers=staff)) == '"v2"'


def test_a_stale_if_match_is_412_and_changes_nothing(app, client, school):
    staff = school.headers["instructor"]
    course = new_course(client, staff, description="original")
    url = f"{API}/courses/{course['id']}"
    first = etag_of(client.get(url, headers=staff))
    moved = client.patch(url, json={"description": "theirs"}, headers=staff)
    current = etag_of(moved)

    stale = client.patch(url, json={"description": "mine"}, headers={**staff, "If-Match": first})
    assert_error(stale, 412)
    assert stale.headers["ETag"] == current  # what to GET again
    assert_error(client.delete(url, headers={**staff, "If-Match": first}), 412)
    row = course_row(app, school.tenant, course["id"])
    assert (row.description, row.is_archived, row.version) == ("theirs", False, 2)

    # A weak tag never matches (strong comparison), whatever its version.
    weak = {**staff, "If-Match": f"W/{current}"}
    assert_error(client.patch(url, json={"description": "mine"}, headers=weak), 412)
    # The current tag, one of a list, or `*` matches.
    listed = {**staff, "If-Match": f'"v99", {current}'}
    r = client.patch(url, json={"description": "mine"}, headers=listed)
    assert r.status_code == 200 and r.get_json()["description"] == "mine"
    r = client.patch(url, json={"title": "Any"}, headers={**staff, "If-Match": "*"})
    assert r.status_code == 200
    archived = client.delete(url, headers={**staff, "If-Match": etag_of(r)})
    assert archived.status_code == 204
    assert course_row(app, school.tenant, course["id"]).is_archived


def test_lesson_writes_honour_if_match(app, client, school):
    staff = school.headers["instructor"]
    course = new_course(client, staff)
    lesson = new_lesson(client, staff, course["id"], content="v1 text")
    url = f"{API}/lessons/{lesson['id']}"
    old = etag_of(client.get(url, headers=staff))
    client.patch(url, json={"content": "colleague's text"}, headers=staff)

    r = client.patch(url, json={"content": "my text"}, headers={**staff, "If-Match": old})
    assert_error(r, 412)
    assert_error(client.delete(url, headers={**staff, "If-Match": old}), 412)
    assert lesson_fields(app, school, lesson["id"])["content"] == "colleague's text"

    current = etag_of(client.get(url, headers=staff))
    assert client.delete(url, headers={**staff, "If-Match": current}).status_code == 204
    assert client.get(url, headers=staff).status_code == 404


def test_writes_without_if_match_work_as_before(client, school):
    staff = school.headers["instructor"]
    course = new_course(client, staff)
    url = f"{API}/courses/{course['id']}"
    assert client.patch(url, json={"title": "Plain"}, headers=staff).status_code == 200
    lesson = new_lesson(client, staff, course["id"])
    lesson_url = f"{API}/lessons/{lesson['id']}"
    assert client.patch(lesson_url, json={"title": "Plain"}, headers=staff).status_code == 200
    assert client.delete(lesson_url, headers=staff).status_code == 204
    assert client.delete(url, headers=staff).status_code == 204


def test_precondition_comes_after_who_may_write(client, school):
    course = new_course(client, school.headers["instructor"])
    url = f"{API}/courses/{course['id']}"
    stale = {"If-Match": '"v0"'}
    assert_error(
        client.patch(url, json={"title": "x"}, headers=school.headers["other"] | stale), 403
    )
    assert_error(
        client.patch(
            f"{API}/courses/999999",
            json={"title": "x"},
            headers=school.headers["instructor"] | stale,
        ),
        404,
    )


@pytest.mark.parametrize("kind", ["course", "lesson"])
def test_two_editors_racing_exactly_one_wins(app, client, school, kind):
    """Both send the ETag they read; the row lock serialises them: the first moves
    the version, the second gets 412, and the winner's text is what is stored."""
    staff = school.headers["instructor"]
    course = new_course(client, staff, description="start")
    if kind == "course":
        url, field, table = f"{API}/courses/{course['id']}", "description", Course
        row_id = course["id"]
    else:
        lesson = new_lesson(client, staff, course["id"], content="start")
        url, field, table = f"{API}/lessons/{lesson['id']}", "content", Lesson
        row_id = lesson["id"]
    tag = etag_of(client.get(url, headers=staff))
    answers: dict[str, int] = {}

    def edit(text_: str) -> None:
        r = client.patch(url, json={field: text_}, headers={**staff, "If-Match": tag})
        answers[text_] = r.status_code

    editors = [threading.Thread(target=edit, args=(name,)) for name in ("alice", "bob")]
    # Hold the row so both requests are in flight, waiting on it, before either writes.
    with app.app_context(), tenant_scope(school.tenant):
        db.session.execute(select(table.id).where(table.id == row_id).with_for_update())
        for editor in editors:
            editor.start()
        waiting = text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()"
        )
        for _ in range(200):
            # Its own connection: pg_stat_activity is a snapshot per transaction.
            with db.engine.connect() as conn:
                if conn.execute(waiting).scalar() >= 2:
                    break
            threading.Event().wait(0.05)
        else:
            pytest.fail("the two edits never both waited on the row")
        db.session.rollback()
    for editor in editors:
        editor.join(timeout=30)
    assert sorted(answers.values()) == [200, 412], answers
    (winner,) = [name for name, status in answers.items() if status == 200]
    with app.app_context(), tenant_scope(school.tenant):
        stored = db.session.execute(
            select(getattr(table, field), table.version).where(table.id == row_id)
        ).one()
    assert tuple(stored) == (winner, 2)


def test_write_statement_budgets(app, client, school, count_queries):
    """The same counts as the Core write paths they replaced (measured on both):
    the unit of work adds no statement. Each write ends with the generation bump."""
    staff = school.headers["instructor"]
    assert client.get(f"{API}/me", headers=staff).status_code == 200  # school, auth state
    with count_queries() as q:
        course = new_course(client, staff, title="Budget")
    assert q.count == 2, q.statements  # INSERT ... RETURNING, bump
    url = f"{API}/courses/{course['id']}"
    with count_queries() as q:
        assert client.patch(url, json={"title": "Budget 2"}, headers=staff).status_code == 200
    assert q.count == 3, q.statements  # SELECT ... FOR UPDATE, UPDATE (version checked), bump
    with count_queries() as q:
        lesson = new_lesson(client, staff, course["id"])
    assert q.count == 4, q.statements  # course locked, INSERT, recount, bump
    with count_queries() as q:
        r = client.patch(f"{API}/lessons/{lesson['id']}", json={"title": "T"}, headers=staff)
        assert r.status_code == 200
    assert q.count == 3, q.statements  # lesson and course locked, UPDATE, bump
    with count_queries() as q:
        assert client.delete(url, headers=staff).status_code == 204
    assert q.count == 4, q.statements  # SELECT ... FOR UPDATE, UPDATE, audit event, bump


def test_openapi_documents_if_match_412_and_etags(client):
    spec = client.get("/openapi.json").get_json()
    for path, method in [
        ("/api/v1/courses/{course_id}", "patch"),
        ("/api/v1/courses/{course_id}", "delete"),
        ("/api/v1/lessons/{lesson_id}", "patch"),
        ("/api/v1/lessons/{lesson_id}", "delete"),
    ]:
        operation = spec["paths"][path][method]
        assert "412" in operation["responses"], (method, path)
        assert any(p["name"] == "If-Match" and p["in"] == "header" for p in operation["parameters"])
    for path, method, code in [
        ("/api/v1/courses/{course_id}", "get", "200"),
        ("/api/v1/lessons/{lesson_id}", "get", "200"),
        ("/api/v1/courses", "post", "201"),
    ]:
        assert "ETag" in spec["paths"][path][method]["responses"][code]["headers"]
