"""Writes that race the deletion of their lesson answer 404, never 500 (found by the
review of issue 8: an update or a progress write waiting on the delete's locks).

Each race is staged, not hoped for: the delete holds its locks until the contender is
seen waiting for them in pg_stat_activity, then commits.
"""

from __future__ import annotations

import pytest

from tests.conftest import add_user, assert_error, headers_for, staged_race
from tests.test_learning_api import enroll_row, make_course


@pytest.fixture(scope="module")
def school(make_tenant):
    return make_tenant()


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

    deleted, other = staged_race(app, tmp_path, delete, contender)
    assert deleted.status_code == 204
    # A 404 (or, for the batch, the per-item 422 of a lesson that is gone).
    assert other.status_code in (404, 422), other.get_json()
    assert_error(other, other.status_code)
