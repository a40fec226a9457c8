"""Writes that race the deletion of their lesson answer 404, never 500 (found by the
review of issue 8: an update or a progress write waiting on the delete's locks).

Each race is staged, not hoped for: the delete holds its locks until the contender is
seen waiting for them in pg_stat_activity, then commits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import event, text

from lms_app.extensions import db
from tests.conftest import add_user, another_process, assert_error, headers_for
from tests.test_learning_api import enroll_row, make_course


@pytest.fixture(scope="module")
def school(make_tenant):
    return make_tenant()


def waiting_on_a_lock(app) -> bool:
    with app.app_context(), db.engine.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


def race_with_delete(app, tmp_path, delete: Callable, contender: Callable) -> tuple[int, object]:
    """Run `delete` in another worker until it holds its locks, run `contender` until
    it waits on them, then let the delete commit; the two responses."""
    locked, release = threading.Event(), threading.Event()

    def hold_after_locking(conn, cursor, statement, parameters, context, executemany):
        if "FOR UPDATE OF" in statement and not release.is_set():
            locked.set()
            release.wait(20)

    with another_process(app, tmp_path) as deleter:
        with deleter.app_context():
            engines = list(db.engines.values())
        for engine in engines:
            event.listen(engine, "after_cursor_execute", hold_after_locking)
        answers: dict[str, object] = {}
        first = threading.Thread(target=lambda: answers.update(delete=delete(deleter)))
        first.start()
        assert locked.wait(20)
        second = threading.Thread(target=lambda: answers.update(other=contender(app)))
        second.start()
        deadline = time.monotonic() + 20
        while not waiting_on_a_lock(app):
            assert time.monotonic() < deadline, "the contender never waited on the delete"
            time.sleep(0.02)
        release.set()
        first.join(20)
        second.join(20)
        for engine in engines:
            event.remove(engine, "after_cursor_execute", hold_after_locking)
    return answers["delete"].status_code, answers["other"]


@pytest.mark.parametrize("write", ["patch lesson", "put progress", "progress batch"])
def test_a_write_racing_the_delete_of_its_lesson_is_a_404(app, tmp_path, school, write):
    teacher = add_user(app, school, "instructor")
    learner = add_user(app, school, "student")
    course_id, (lesson_id,) = make_course(app, school, teacher, lessons=1)
    enroll_row(app, school, learner, course_id)
    staff, student = headers_for(app, school, teacher), headers_for(app, school, learner)

    def delete(worker):
        return worker.test_client().delete(f"/api/v1/lessons/{lesson_id}", headers=staff)

    def contender(worker):
        client = worker.test_client()
        if write == "patch lesson":
            return client.patch(f"/api/v1/lessons/{lesson_id}", json={"title": "x"}, headers=staff)
        if write == "put progress":
            body = {"progress_percentage": 50, "time_spent": 1}
            return client.put(f"/api/v1/lessons/{lesson_id}/progress", json=body, headers=student)
        body = {"updates": [{"lesson_id": lesson_id, "progress_percentage": 50}]}
        return client.post("/api/v1/progress/batch", json=body, headers=student)

    deleted, other = race_with_delete(app, tmp_path, delete, contender)
    assert deleted == 204
    # A 404 (or, for the batch, the per-item 422 of a lesson that is gone).
    assert other.status_code in (404, 422), other.get_json()
    assert_error(other, other.status_code)
