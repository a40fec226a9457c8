"""The read that is an object graph (the course detail) states how each relation
loads and ends in raiseload("*"): what it did not plan for raises instead of
querying (issue 12). The roster stayed Core (bench/orm_bench.py)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import InvalidRequestError

from lms_app.catalog import queries as catalog
from lms_app.tenancy.context import tenant_scope
from tests.test_catalog_api import API, make_school, new_course, new_lesson


@pytest.fixture(scope="module")
def school(app, make_tenant):
    return make_school(app, make_tenant())


def test_course_detail_loads_its_planned_relations_only(app, client, school, count_queries):
    staff = school.headers["instructor"]
    category = client.post(
        f"{API}/categories",
        json={"name": "Loaders", "slug": "loaders"},
        headers=school.headers["admin"],
    ).get_json()
    course = new_course(client, staff, category_id=category["id"])
    for _ in range(3):
        new_lesson(client, staff, course["id"])
    with app.app_context(), tenant_scope(school.tenant):
        with count_queries() as q:
            loaded = catalog.course_detail_for_staff(course["id"])
        assert q.count == 2, q.statements  # course + category + instructor; the outline
        with count_queries() as q:
            assert loaded.category.slug == "loaders"
            assert loaded.instructor.name == "Ada Instructor"
            assert [lesson.order_index for lesson in loaded.lessons] == [0, 1, 2]
        assert q.count == 0, q.statements
        with pytest.raises(InvalidRequestError, match=r"lazy='raise'"):
            loaded.lessons[0].course  # noqa: B018 (the access is the test)
        with pytest.raises(InvalidRequestError):
            loaded.lessons[0].content  # noqa: B018 (load_only left it out)
        assert catalog.course_detail_for_staff(999_999) is None
