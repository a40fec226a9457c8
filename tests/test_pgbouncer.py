"""The API through a real PgBouncer in transaction mode, a pool smaller than the
number of schools: schools interleaving writes and reads never see each other's rows.

lms_app keeps no state on a connection (the tenant schema rides on each statement
through schema_translate_map, never SET search_path), so a pooler may hand any
server connection to any request. Prepared statements are the exception before
PgBouncer 1.21: DB_PREPARED_STATEMENTS=false, as the README says.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import dispose, make_app
from tests.pgbouncer import PgBouncer
from tests.test_catalog_api import API, make_school

SCHOOLS = 3
POOL = 2  # server connections per (database, user): fewer than the schools


@pytest.fixture(scope="module")
def bouncer(database_url) -> Iterator[PgBouncer]:
    made = PgBouncer(database_url, POOL).start()
    yield made
    made.stop()


@pytest.fixture(scope="module")
def bounced_app(bouncer, database_url, redis_url, tmp_path_factory, app):
    pool = replace(app.config["LMS_SETTINGS"].pool, prepared_statements=False)
    made = make_app(
        bouncer.url(make_url(database_url).database),
        redis_url,
        tmp_path_factory.mktemp("bounced"),
        pool=pool,
    )
    yield made
    dispose(made)


def test_schools_interleaving_through_pgbouncer_never_see_each_others_rows(
    app, make_tenant, bounced_app
):
    # Schools are made directly (as a release phase would migrate); the traffic goes
    # through the pooler.
    schools = [make_school(app, make_tenant()) for _ in range(SCHOOLS)]
    client = bounced_app.test_client()
    failures: list[str] = []
    rounds = 6

    def drive(index: int) -> None:
        school = schools[index]
        own = f"School {index} course"
        try:
            for n in range(rounds):
                body = {"title": f"{own} {n}", "is_published": True}
                r = client.post(f"{API}/courses", json=body, headers=school.headers["instructor"])
                if r.status_code != 201:
                    failures.append(f"{index}: create {r.status_code} {r.get_json()}")
                    return
                page = client.get(f"{API}/courses?limit=100", headers=school.headers["student"])
                titles = {c["title"] for c in page.get_json()["items"]}
                if titles != {f"{own} {k}" for k in range(n + 1)}:
                    failures.append(f"{index}: round {n} saw {sorted(titles)}")
                    return
        except Exception as exc:  # reported below, with the school
            failures.append(f"{index}: {type(exc).__name__}")

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(SCHOOLS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    # Every school's writes landed in its own schema, seen through the pooler too.
    for index, school in enumerate(schools):
        r = client.get(f"{API}/courses?limit=100", headers=school.headers["student"])
        assert len(r.get_json()["items"]) == rounds, index
